import NMBridgeCore

extension EventKindRegistry {
    /// What the DICOM receiver reports: associations, stored instances, studies.
    public static let dicomKinds: [EventKind] = [
        EventKind(
            "dicom.association.accepted", "A DICOM sender opened an association.",
            fields: [
                EventField("calling_ae", .string, "The sender's AE title."),
                EventField("called_ae", .string, "Our AE title as the sender called it."),
                EventField("peer", .string, "The sender's IP address."),
                EventField("contexts_accepted", .integer, "Presentation contexts accepted."),
                EventField("contexts_proposed", .integer, "Presentation contexts proposed."),
                EventField("max_pdu", .integer, "The largest PDU the sender receives (0: unlimited)."),
                EventField("tls", .boolean, required: false, "Whether the association came over DICOM TLS."),
            ]),
        EventKind(
            "dicom.association.rejected", severity: .warning, "An association was refused (A-ASSOCIATE-RJ).",
            fields: [
                EventField("calling_ae", .string, "The sender's AE title."),
                EventField("called_ae", .string, "The AE title it called."),
                EventField("peer", .string, "The sender's IP address."),
                EventField("result", .integer, "1 permanent, 2 transient."),
                EventField("source", .integer, "1 service user, 3 service provider (presentation)."),
                EventField("reason", .integer, "3 calling AE not recognized, 7 called AE not recognized, 2 (source 3) local limit exceeded."),
                EventField("why", .string, "The reason in words."),
            ]),
        EventKind(
            "dicom.association.released", "An association ended with a release.",
            fields: [
                EventField("calling_ae", .string, "The sender's AE title."),
                EventField("peer", .string, "The sender's IP address."),
                EventField("instances", .integer, "Instances stored."),
                EventField("failed", .integer, "C-STORE requests answered with a failure."),
                EventField("bytes", .integer, "Dataset bytes received."),
                EventField("duration_s", .number, unit: "s", "From accept to release."),
            ]),
        EventKind(
            "dicom.association.aborted", severity: .warning, "An association ended without release (A-ABORT, timeout, closed connection, protocol error); a partial instance is removed.",
            fields: [
                EventField("calling_ae", .string, "The sender's AE title."),
                EventField("peer", .string, "The sender's IP address."),
                EventField("reason", .string, "Why."),
                EventField("instances", .integer, "Instances stored before."),
                EventField("failed", .integer, "C-STORE failures before."),
                EventField("bytes", .integer, "Dataset bytes received."),
                EventField("duration_s", .number, unit: "s", "From accept to the end."),
            ]),
        EventKind(
            "dicom.instance.stored", "An instance was stored durably (file and directory fsynced) before the C-STORE success was sent.",
            fields: [
                EventField("sop_instance_uid", .string, "SOP Instance UID."),
                EventField("sop_class_uid", .string, required: false, "SOP Class UID."),
                EventField("study_uid", .string, required: false, "Study Instance UID."),
                EventField("series_uid", .string, required: false, "Series Instance UID."),
                EventField("patient_id", .string, required: false, "Patient ID."),
                EventField("patient_name", .string, required: false, "Patient's name as sent (PN)."),
                EventField("accession_number", .string, required: false, "Accession number."),
                EventField("modality", .string, required: false, "Modality (NM, PT, CT…)."),
                EventField("study_date", .string, required: false, "Study date (DA), `study_time` (TM); also series_, acquisition_ date/time when sent."),
                EventField("series_description", .string, required: false, "Series description; also study_description, station_name, manufacturer, model, timezone_offset (0008,0201)."),
                EventField("number_of_frames", .integer, required: false, "Number of frames."),
                EventField("transfer_syntax", .string, "The transfer syntax of the stored dataset."),
                EventField("bytes", .integer, "Size of the stored Part-10 file."),
                EventField("sha256", .string, "SHA-256 of the stored file."),
                EventField("path", .string, "Where it was stored."),
                EventField("calling_ae", .string, "The sender's AE title."),
                EventField("peer", .string, "The sender's IP address."),
                EventField(
                    "radiopharmaceutical", .object, required: false,
                    "NM/PT: agent, radionuclide, nuclide (canonical), total_dose_header, total_dose_bq, total_dose_unit_rule, total_dose_suspect (a value of the wrong unit, flagged, never rescaled), half_life_s, start_time, start_datetime."),
                EventField("energy_windows", .array, required: false, "NM: [{name, lower_kev, upper_kev}], one per range of each Energy Window Information Sequence item; PET: the top-level Energy Window Range Sequence (0054,0013), without a name."),
                // Study-level QC metadata (issue 15).
                EventField(
                    "radiopharmaceuticals", .array, required: false,
                    "NM/PT: every Radiopharmaceutical Information Sequence item (at most 16), each shaped like `radiopharmaceutical` (which is the first)."),
                EventField("image_type", .array, required: false, "Image Type (0008,0008), upper case, e.g. [\"ORIGINAL\", \"PRIMARY\", \"WHOLE BODY\", \"EMISSION\"]."),
                EventField("view_codes", .array, required: false, "View Code Sequence (0054,0220), top level and per detector: [{code_value, coding_scheme, meaning, detector}]."),
                EventField("collimators", .array, required: false, "Collimator/Grid Name (0018,1180), top level and per Detector Information Sequence item, distinct."),
                EventField("collimator_types", .array, required: false, "Collimator Type (0018,1181), distinct (PARA, FANB…)."),
                EventField("scan_velocity_mm_per_s", .number, unit: "mm/s", required: false, "Scan Velocity (0018,1300), as DICOM gives it (mm/s; 1 mm/s = 6 cm/min)."),
                EventField("patient_weight_kg", .number, unit: "kg", required: false, "Patient's Weight (0010,1030)."),
                EventField("patient_size_m", .number, unit: "m", required: false, "Patient's Size (0010,1020)."),
                EventField("duplicate", .string, required: false, "Set when identical bytes were already stored (nothing changed)."),
                EventField(
                    "recovered", .boolean, required: false,
                    "Set when the file was put in place before a crash and its event is journaled at the next start (its sender was not answered success)."),
            ]),
        EventKind(
            "dicom.study.stable", "A study has had no new instance for `stable_after_s` (also across a daemon restart).",
            fields: [
                EventField("study_uid", .string, "Study Instance UID."),
                EventField("series", .integer, "Series received."),
                EventField("instances", .integer, "Instances stored (identical re-sends not counted)."),
                EventField("bytes", .integer, "Their size."),
                EventField("modalities", .array, "Modalities seen."),
                EventField("first_instance", .string, "When the first instance was stored."),
                EventField("last_instance", .string, "When the last one was."),
                EventField("patient_id", .string, required: false, "Patient ID."),
                EventField("accession_number", .string, required: false, "Accession number."),
            ]),
        EventKind(
            "dicom.instance.replaced", severity: .notice, "A stored instance was replaced by different bytes with the same UIDs.",
            fields: [
                EventField("sop_instance_uid", .string, "SOP Instance UID."),
                EventField("path", .string, "The file."),
                EventField("old_sha256", .string, "SHA-256 of the replaced file."),
                EventField("new_sha256", .string, "SHA-256 of the new file."),
            ]),
        EventKind(
            "dicom.storage.recovered", severity: .notice,
            "At start, before the receiver listens: what an earlier run left in the storage root's .incoming folder was dealt with.",
            fields: [
                EventField("removed_partial", .integer, "Partial transfers removed (never answered success, never in place)."),
                EventField("removed_bytes", .integer, "Their size."),
                EventField("recovered_instances", .integer, "Instances in place without their event, journaled now as dicom.instance.stored with recovered = true."),
                EventField("already_journaled", .integer, "Instances in place whose event was journaled (only a leftover name removed)."),
                EventField("unreadable", .integer, "Files in .incoming that were not readable instances, removed."),
            ]),
        EventKind(
            "dicom.instance.failed", severity: .error, "A C-STORE was answered with a failure status; nothing was stored.",
            fields: [
                EventField("sop_instance_uid", .string, "SOP Instance UID from the command."),
                EventField("status", .string, "The DIMSE status sent (0xA700 out of resources, 0xA900 dataset does not match, 0xC000 cannot understand)."),
                EventField("error", .string, "What went wrong, naming the file or the values."),
                EventField("calling_ae", .string, "The sender's AE title."),
                EventField("peer", .string, "The sender's IP address."),
                EventField("transfer_syntax", .string, "The presentation context's transfer syntax."),
            ]),
    ] + dicomSpoolKinds  // EventKinds+Spool.swift
}
