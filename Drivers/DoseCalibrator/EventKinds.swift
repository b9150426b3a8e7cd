import NMBridgeCore

extension EventKindRegistry {
    /// What the dose-calibrator drivers report.
    public static let dosecalKinds: [EventKind] = [
        EventKind(
            "dosecal.measurement", "A settled dose calibrator reading.",
            fields: [
                EventField("nuclide", .string, "Canonical nuclide name, e.g. \"Tc-99m\"."),
                EventField("activity_bq", .number, unit: "Bq", "Activity in becquerel."),
                EventField("reading", .string, "The device's own text, e.g. \"20.00 mCi\"."),
                EventField("unit", .string, "The device's unit (µCi, mCi, Ci, kBq, MBq, GBq)."),
                EventField("chamber", .integer, required: false, "Chamber number on multi-chamber calibrators."),
                EventField("calibration_number", .string, required: false, "The calibrator setting used."),
                EventField("device_time", .string, required: false, "The device's own time stamp, as sent."),
            ]),
        EventKind(
            "dosecal.reading", severity: .debug, "Every poll of a dose calibrator (off by default).",
            fields: [
                EventField("nuclide", .string, "Canonical nuclide name."),
                EventField("activity_bq", .number, unit: "Bq", "Activity in becquerel."),
                EventField("reading", .string, "The device's own text."),
            ]),
    ]
}
