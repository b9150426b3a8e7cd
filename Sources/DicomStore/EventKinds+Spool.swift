import NMBridgeCore

extension EventKindRegistry {
    /// The DICOM receiver's write-ahead spool (`[dicom] spool_mb`, docs/dicom.md).
    static let dicomSpoolKinds: [EventKind] = [
        EventKind(
            "dicom.spool.recovered", severity: .notice,
            "At start, before the receiver listens: the records the spool held were put in place (an earlier run stopped before their files were, or before their events were journaled).",
            fields: [
                EventField("recovered_instances", .integer, "Records put in place and journaled now as dicom.instance.stored with recovered = true."),
                EventField("already_journaled", .integer, "Records whose instance was in place and journaled already (nothing done)."),
                EventField("torn", .integer, "Records cut short or failing their checksum, discarded: the spool's sync never covered them, so their senders were never answered success."),
                EventField("unreadable", .integer, "Whole records whose bytes were not a readable instance, discarded."),
                EventField("failed", .integer, "Records that could not be put in place (duplicates = \"reject\" and other bytes in place), journaled as dicom.instance.failed."),
            ]),
    ]
}
