import NMBridgeCore

extension EventKindRegistry {
    /// The shipper's events: lag and catching up.
    public static let shipperKinds: [EventKind] = [
        EventKind(
            "shipper.lagging", severity: .warning,
            "The PostgreSQL shipper fell behind: the oldest unshipped event is older than `lag_alert_s`, or more than `lag_alert_events` wait (docs/shipper.md). Journaled once per episode.",
            fields: [
                EventField("lag_events", .integer, "Events journaled but not yet shipped."),
                EventField("lag_s", .number, unit: "s", "Age of the oldest unshipped event."),
                EventField("shipped_seq", .integer, "The last seq committed to PostgreSQL (0 before the first)."),
                EventField("server", .string, "The PostgreSQL URL, without password."),
                EventField("error", .string, required: false, "The last error talking to PostgreSQL, if that is why."),
            ]),
        EventKind(
            "shipper.caught_up", severity: .notice, "The PostgreSQL shipper caught up after a `shipper.lagging` episode.",
            fields: [
                EventField("shipped_seq", .integer, "The last seq committed to PostgreSQL."),
                EventField("lagging_s", .number, unit: "s", "How long the episode lasted."),
                EventField("max_lag_events", .integer, "The largest backlog seen during the episode."),
            ]),
    ]
}
