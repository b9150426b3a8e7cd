import NMBridgeCore

extension EventKindRegistry {
    /// The journal's own events: retention runs and what they deleted.
    public static let journalKinds: [EventKind] = [
        EventKind(
            "journal.truncated", severity: .notice, "Retention deleted the oldest events.",
            fields: [
                EventField("from_seq", .integer, "First deleted seq."),
                EventField("to_seq", .integer, "Last deleted seq."),
                EventField("count", .integer, "Number of deleted events."),
                EventField("reason", .string, "\"age\" (older than `retention_days` or its kind's `[[journal.retention]]` rule) or \"size\" (over `max_size_mb`)."),
                EventField("kinds", .object, required: false, "Age deletions: deleted events per kind, e.g. {\"gantry.state\": 8640}."),
                EventField("rule", .string, required: false, "Age deletions: the `[[journal.retention]]` kinds (globs) or \"retention_days\" that deleted them."),
                EventField("oldest_seq", .integer, "The oldest seq still in the journal."),
                EventField(
                    "unshipped_from_seq", .integer, required: false,
                    "With `[shipper] retention_may_drop_unshipped = true`: the first deleted seq that had not been shipped to PostgreSQL."),
                EventField("unshipped_to_seq", .integer, required: false, "The last deleted seq that had not been shipped."),
                EventField("unshipped_count", .integer, required: false, "How many deleted events had not been shipped (they are lost for the department table)."),
            ]),
    ]
}
