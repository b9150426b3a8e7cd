import NMBridgeCore

extension EventKindRegistry {
    /// What the Modbus gantry driver reports.
    public static let gantryKinds: [EventKind] = [
        EventKind(
            "gantry.state", "Gantry values that changed beyond their deadband; the first read after start reports all.",
            fields: [
                EventField(
                    "values", .object,
                    "Changed values by resource name: numbers in the profile's unit (named in the field, `rotation_angle_deg`), state names, booleans, text, and bitfields as arrays of set flag names.")
            ]),
        EventKind(
            "gantry.motion", "Gantry motion started or stopped (the `[gantry] motion` resource entered or left a moving state).",
            fields: [
                EventField("state", .string, "\"started\" or \"stopped\"."),
                EventField("motion_state", .string, required: false, "The motion resource's new state name."),
                EventField("positions", .object, required: false, "The `[gantry] positions` at that moment (`*_deg`, `*_mm`)."),
            ]),
        EventKind(
            "gantry.acquisition", "Acquisition started, paused, resumed or stopped on the gantry.",
            fields: [
                EventField("state", .string, "\"started\", \"paused\", \"resumed\" or \"stopped\"."),
                EventField("acquisition_state", .string, required: false, "The acquisition resource's new state name."),
            ]),
        EventKind(
            "gantry.fault.raised", severity: .error, "A fault bit was set (also when it is already set at the first read).",
            fields: [
                EventField("fault", .string, "The bit's name from the profile (`bit5` for an unnamed bit), or a bool resource's name."),
                EventField("resource", .string, required: false, "The fault resource."),
                EventField("word", .string, required: false, "The fault register and its value in hex (`fault_word=0x10`)."),
            ]),
        EventKind(
            "gantry.fault.cleared", "A fault bit was cleared.",
            fields: [
                EventField("fault", .string, "The bit's name from the profile, or a bool resource's name."),
                EventField("resource", .string, required: false, "The fault resource."),
            ]),
    ]
}
