import Foundation
import NMBridgeCore

extension EventKindRegistry {
    /// Dose-calibrator QA beyond daily constancy, the generator's Mo-99 breakthrough and the
    /// reviewer's sign-off (docs/qc.md, "Dose calibrator QA").
    static let dosecalQAKinds: [EventKind] = [
        EventKind(
            "qc.dosecal.accuracy",
            "A certified reference source measured on its own setting, against its certificate decayed to the measurement (docs/qc.md). Severity: info (pass), warning (investigate), error (fail). The envelope's time and device are the measurement's.",
            fields: qcCommon + dosecalInstrument + [
                EventField("result", .string, "\"pass\", \"investigate\" (beyond `accuracy_investigate_pct`) or \"fail\" (beyond `accuracy_fail_pct`)."),
                EventField("nuclide", .string, "The reference source's nuclide (the setting)."),
                EventField("measured_bq", .number, unit: "Bq", "The measured activity."),
                EventField("expected_bq", .number, unit: "Bq", "The certified activity decayed to the measurement time."),
                EventField("deviation_pct", .number, unit: "%", "(measured − expected) / expected × 100."),
                EventField("source_serial", .string, "The reference source's serial number."),
                EventField("certificate_bq", .number, unit: "Bq", "The certified activity."),
                EventField("certificate_date", .string, "When the certified activity held (RFC 3339)."),
                EventField("uncertainty_pct", .number, unit: "%", required: false, "The certificate's uncertainty."),
                EventField("investigate_pct", .number, unit: "%", "The limit used for investigate."),
                EventField("fail_pct", .number, unit: "%", "The limit used for fail."),
            ]),
        EventKind(
            "qc.dosecal.linearity",
            "A linearity test by the decay method: the readings of one Tc-99m vial between `nmbridge qc linearity start` and `finish`, fitted to the expected decay (docs/qc.md). Severity: info (pass), warning (investigate, incomplete), error (fail). The envelope's time is the finish marker's.",
            fields: qcCommon + dosecalInstrument + [
                EventField("result", .string, "\"pass\", \"investigate\", \"fail\", or \"incomplete\" (fewer than `linearity_min_readings`)."),
                EventField("nuclide", .string, "The vial's nuclide (the setting)."),
                EventField("readings", .array, "Each reading: {time, seq, measured_bq, expected_bq, deviation_pct}."),
                EventField("max_deviation_pct", .number, unit: "%", "The largest |deviation| from the fitted decay."),
                EventField("fitted_start_bq", .number, unit: "Bq", "The fitted activity at the first reading."),
                EventField("span", .number, "Highest over lowest reading."),
                EventField("start_time", .string, "The first reading (RFC 3339)."),
                EventField("end_time", .string, "The last reading (RFC 3339)."),
                EventField("excluded", .integer, "Readings of that setting in the test's time that did not follow the vial's decay (patient doses)."),
                EventField("investigate_pct", .number, unit: "%", "The limit used for investigate."),
                EventField("fail_pct", .number, unit: "%", "The limit used for fail."),
                EventField("started_seq", .integer, "The `qc.dosecal.linearity_started` marker."),
            ]),
        EventKind(
            "qc.dosecal.linearity_started",
            "`nmbridge qc linearity start DEVICE`: the next readings of a high-activity Tc-99m vial on this calibrator form a linearity test. Journaled by the API. The device is the calibrator.",
            fields: [
                EventField("nuclide", .string, "The setting of the series (Tc-99m unless given)."),
                EventField("by", .string, "Who started it (unix user of the API client, or the TCP token's name)."),
            ]),
        EventKind(
            "qc.dosecal.linearity_finished",
            "`nmbridge qc linearity finish DEVICE`: the series ends; the QC service judges it (`qc.dosecal.linearity`). Journaled by the API.",
            fields: [
                EventField("by", .string, "Who finished it."),
            ]),
        EventKind(
            "qc.generator.mo99",
            "Mo-99 breakthrough of a Tc-99m eluate: a reading on the Mo-99 setting (the eluate in its canister) paired with the eluate's Tc-99m reading on the same calibrator within `mo99_pair_window_min` (docs/qc.md). Severity: info (pass), warning (expires_early), error (fail). The envelope's time is the later reading's.",
            fields: qcCommon + dosecalInstrument + [
                EventField("result", .string, "\"pass\" (within the limit until expiry), \"expires_early\" (within it at elution, beyond it at expiry), \"fail\" (beyond it at elution)."),
                EventField("mo99_bq", .number, unit: "Bq", "Mo-99 at the Tc-99m reading (canister factor applied)."),
                EventField("tc99m_bq", .number, unit: "Bq", "The eluate's Tc-99m reading."),
                EventField("ratio_kbq_per_mbq", .number, unit: "kBq/MBq", "kBq Mo-99 per MBq Tc-99m at the Tc-99m reading (elution)."),
                EventField("ratio_at_expiry_kbq_per_mbq", .number, unit: "kBq/MBq", "The ratio projected to the eluate's expiry."),
                EventField("expiry_time", .string, "Elution plus `eluate_shelf_life_h` (RFC 3339)."),
                EventField("usable_until", .string, "When the ratio reaches the limit (RFC 3339), if before the expiry."),
                EventField("limit_kbq_per_mbq", .number, unit: "kBq/MBq", "The limit used (10 CFR 35.204: 0.15)."),
                EventField("mo99_seq", .integer, "The Mo-99 reading."),
                EventField("tc99m_seq", .integer, "The Tc-99m reading."),
                EventField("canister_factor", .number, "The factor applied to the Mo-99 reading."),
            ]),
        EventKind(
            "qc.dosecal.test_due", severity: .warning,
            "A calibrator test is due: its last passing result is older than its interval, or there is none. Journaled at the calibrator's first measurement of a site-local day (docs/qc.md).",
            fields: qcCommon + dosecalInstrument + [
                EventField("test", .string, "\"accuracy\" or \"linearity\"."),
                EventField("interval_days", .number, unit: "days", "The configured interval."),
                EventField("last_pass_date", .string, required: false, "The site-local day of the last passing test, if any."),
                EventField("due_date", .string, required: false, "The day the test fell due (none: never done)."),
            ]),
        EventKind(
            "qc.review.signed",
            "`nmbridge qc sign`: a person reviewed the day's QC sheet. Journaled by the API, naming the reviewer as the server saw them.",
            fields: [
                EventField("local_date", .string, "The site-local day reviewed, YYYY-MM-DD."),
                EventField("signer", .string, "The unix user of the API client (socket peer credentials), or the TCP token's name."),
                EventField("via", .string, "\"unix\" (peer credentials) or \"tcp\" (bearer token)."),
                EventField("uid", .integer, required: false, "The unix user id of the socket peer."),
                EventField("comment", .string, required: false, "The reviewer's remark."),
            ]),
    ]

    /// The instrument's identity on QC findings and measurements (`[[device]]`
    /// `instrument_model`, `instrument_serial`, or what the instrument reports).
    static let dosecalInstrument = [
        EventField("instrument_model", .string, required: false, "The calibrator's model."),
        EventField("instrument_serial", .string, required: false, "The calibrator's serial number."),
    ]
}
