import NMBridgeCore

extension EventKindRegistry {
    /// The outbound queue's events (dicom.forward.*) and the RRDSRs (dicom.rrdsr.*):
    /// every job's life is in the journal, which is also what the queue is rebuilt from.
    public static let forwardKinds: [EventKind] = [
        EventKind(
            "dicom.forward.queued",
            "A job was queued: an instance or an RRDSR to send to one destination. The event's seq is the job's id (`job` in the later events).",
            fields: [
                EventField("destination", .string, "The `[[dicom.destination]]` name."),
                EventField("what", .string, "\"instance\" or \"rrdsr\"."),
                EventField("path", .string, "The stored Part-10 file to send."),
                EventField("sop_instance_uid", .string, "SOP Instance UID."),
                EventField("sop_class_uid", .string, "SOP Class UID."),
                EventField("study_uid", .string, required: false, "Study Instance UID (jobs of one study and destination are delivered in order)."),
                EventField("source_seq", .integer, "The event that caused the job (`dicom.instance.stored`, `dicom.study.stable`, `dicom.rrdsr.created`)."),
                EventField("route", .string, required: false, "The `[[dicom.route]]` that matched."),
                EventField("retry_of", .integer, required: false, "Set when the job re-queues a given-up or dropped job (`nmbridge outbound retry`)."),
            ]),
        EventKind(
            "dicom.forward.delivered", "The destination answered the C-STORE with success, a warning, or \"duplicate\" (it already holds the instance).",
            fields: [
                EventField("job", .integer, "The job's `dicom.forward.queued` seq."),
                EventField("destination", .string, "The destination."),
                EventField("sop_instance_uid", .string, "SOP Instance UID."),
                EventField("status", .string, "The C-STORE status, e.g. \"0x0000\"."),
                EventField("attempts", .integer, "Associations that tried to send it."),
                EventField("transfer_syntax", .string, "The transfer syntax it was sent in."),
                EventField("duplicate", .boolean, required: false, "Set when the destination said it already had the instance (0x0111)."),
            ]),
        EventKind(
            "dicom.forward.attempt_failed", severity: .warning,
            "An association to a destination failed (refused, unreachable, aborted, timed out, or a transient status); its waiting jobs are retried after the back-off.",
            fields: [
                EventField("destination", .string, "The destination."),
                EventField("error", .string, "What went wrong, naming the peer."),
                EventField("waiting", .integer, "Jobs waiting for the destination."),
                EventField("failures", .integer, "Consecutive failed attempts."),
                EventField("retry_in_s", .number, unit: "s", "Seconds until the next attempt."),
            ]),
        EventKind(
            "dicom.forward.gave_up", severity: .error,
            "A job was given up: the destination rejected it (a failure status, or no accepted presentation context), or it stayed undelivered for `give_up_after_h`.",
            fields: [
                EventField("job", .integer, "The job's `dicom.forward.queued` seq."),
                EventField("destination", .string, "The destination."),
                EventField("sop_instance_uid", .string, "SOP Instance UID."),
                EventField("reason", .string, "Why, in words (status and its meaning, or the age)."),
                EventField("status", .string, required: false, "The C-STORE failure status, when the destination answered one."),
                EventField("attempts", .integer, "Associations that tried to send it."),
            ]),
        EventKind(
            "dicom.forward.retried", severity: .notice,
            "An operator asked for a job to be sent again (`nmbridge outbound retry`): a waiting job is tried at once; a given-up or dropped one is queued again as a new job.",
            fields: [
                EventField("job", .integer, "The job."),
                EventField("destination", .string, "The destination."),
                EventField("requested_by", .string, "Who asked (\"api\")."),
            ]),
        EventKind(
            "dicom.forward.dropped", severity: .notice, "An operator removed a waiting job from the queue (`nmbridge outbound drop`); it will not be sent.",
            fields: [
                EventField("job", .integer, "The job."),
                EventField("destination", .string, "The destination."),
                EventField("sop_instance_uid", .string, "SOP Instance UID."),
                EventField("requested_by", .string, "Who asked (\"api\")."),
            ]),
        EventKind(
            "dicom.rrdsr.created",
            "A Radiopharmaceutical Radiation Dose SR (TID 10021) was written for a reconciled administration, beside the study's instances.",
            fields: [
                EventField("source_seq", .integer, "The `qc.administration.reconciled` it reports."),
                EventField("study_uid", .string, "Study Instance UID (the images' own)."),
                EventField("series_uid", .string, "The RRDSR's Series Instance UID."),
                EventField("sop_instance_uid", .string, "The RRDSR's SOP Instance UID."),
                EventField("sop_class_uid", .string, "1.2.840.10008.5.1.4.1.1.88.68."),
                EventField("path", .string, "The Part-10 file."),
                EventField("bytes", .integer, "Its size."),
                EventField("sha256", .string, "Its SHA-256."),
                EventField("nuclide", .string, "The radionuclide."),
                EventField("administered_bq", .number, unit: "Bq", "Administered activity (the calibrator's measurement decayed to the injection, residual subtracted)."),
                EventField("injection_time", .string, "Radiopharmaceutical start, RFC 3339."),
                EventField("patient_id", .string, required: false, "Patient ID (from the images)."),
                EventField("accession_number", .string, required: false, "Accession number."),
            ]),
        EventKind(
            "dicom.rrdsr.skipped", severity: .notice,
            "A reconciled administration got no RRDSR: something the template requires is not known (e.g. the images carry no coded radiopharmaceutical); nothing is invented.",
            fields: [
                EventField("source_seq", .integer, "The `qc.administration.reconciled` event."),
                EventField("study_uid", .string, required: false, "Study Instance UID."),
                EventField("reason", .string, "What is missing."),
            ]),
    ]
}
