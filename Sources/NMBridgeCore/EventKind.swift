/// The type of one field in an event's `data`.
public enum FieldType: String, Sendable {
    case string, integer, number, boolean, object, array, timestamp
}

/// One documented field of an event kind's `data`.
public struct EventField: Sendable {
    public var name: String
    public var type: FieldType
    /// SI unit when the field is a quantity (also part of the name: `activity_bq`).
    public var unit: String?
    public var required: Bool
    public var summary: String

    public init(_ name: String, _ type: FieldType, unit: String? = nil, required: Bool = true, _ summary: String) {
        self.name = name
        self.type = type
        self.unit = unit
        self.required = required
        self.summary = summary
    }
}

/// A registered event kind: its name, default severity and data fields.
public struct EventKind: Sendable {
    public var name: String
    public var defaultSeverity: Severity
    public var summary: String
    public var fields: [EventField]

    public init(_ name: String, severity: Severity = .info, _ summary: String, fields: [EventField] = []) {
        self.name = name
        self.defaultSeverity = severity
        self.summary = summary
        self.fields = fields
    }
}

/// The registry of event kinds. A kind is registered with its fields before it is used;
/// `experimental.*` is the escape hatch for kinds still being designed.
///
/// `docs/events.md` is rendered from this registry (`nmbridge kinds --markdown`) and a
/// test checks that the file matches, so the documentation cannot drift.
public struct EventKindRegistry: Sendable {
    public private(set) var kinds: [EventKind]
    private var index: [String: Int]

    public init(_ kinds: [EventKind]) {
        self.kinds = kinds
        self.index = Dictionary(kinds.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The kind registered under `name`.
    public func kind(named name: String) -> EventKind? {
        index[name].map { kinds[$0] }
    }

    /// Whether an event of this kind may be journaled.
    public func accepts(_ name: String) -> Bool {
        if index[name] != nil { return true }
        // Kinds end up in SSE `event:` lines and SQL GLOBs: plain characters only.
        return name.hasPrefix("experimental.") && name.utf8.count > "experimental.".utf8.count && name.utf8.count <= 100
            && name.utf8.allSatisfy { c in
                (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x5F || c == 0x2D
            }
    }

    /// Problems with `data` for `kind`: a missing required field or a field of the wrong
    /// type. Empty when the event is well formed. Extra fields are allowed.
    public func problems(kind name: String, data: [String: JSONValue]) -> [String] {
        guard let kind = kind(named: name) else {
            return accepts(name) ? [] : ["event kind \"\(name)\" is not registered (see docs/events.md)"]
        }
        var problems: [String] = []
        for field in kind.fields {
            guard let value = data[field.name], value != .null else {
                if field.required { problems.append("\(name): missing field \"\(field.name)\"") }
                continue
            }
            let ok: Bool =
                switch field.type {
                case .string: value.stringValue != nil
                case .timestamp: value.stringValue.flatMap(Timestamp.parse) != nil
                case .integer: value.intValue != nil
                case .number: value.doubleValue != nil
                case .boolean: if case .bool = value { true } else { false }
                case .object: value.objectValue != nil
                case .array: if case .array = value { true } else { false }
                }
            if !ok {
                problems.append("\(name): field \"\(field.name)\" should be \(field.type.rawValue), got \(value.typeName)")
            }
        }
        return problems
    }
}

extension EventKindRegistry {
    /// The kinds nmbridge journals today.
    public static let standard = EventKindRegistry([
        // daemon.*
        EventKind(
            "daemon.started", "The daemon started and its journal is open.",
            fields: [
                EventField("version", .string, "nmbridge version."),
                EventField("pid", .integer, "Process id."),
                EventField("devices", .integer, "Number of configured devices."),
                EventField("demo", .boolean, "Whether the daemon runs in demo mode."),
            ]),
        EventKind(
            "daemon.stopping", "The daemon is shutting down (SIGTERM or SIGINT).",
            fields: [EventField("reason", .string, "Why it stops, e.g. \"SIGTERM\".")]),
        // device.*
        EventKind(
            "device.connected", "The link to a device is up.",
            fields: [
                EventField("reason", .string, "What brought it up (opened, reconnected, plugged in)."),
                EventField("identity", .object, required: false, "Transport identity: path, USB vendor/product/serial, peer address."),
            ]),
        EventKind(
            "device.disconnected", severity: .warning, "The link to a device is down.",
            fields: [EventField("reason", .string, "Why: unplugged, I/O error, driver crashed, shutdown.")]),
        EventKind(
            "device.stale", severity: .warning,
            "A device has produced nothing for longer than its `stale_after_s` (judged outside the driver).",
            fields: [
                EventField("silent_s", .number, unit: "s", "Seconds since the device was last heard from."),
                EventField("stale_after_s", .number, unit: "s", "The configured limit."),
                EventField("last_seen", .timestamp, required: false, "When it was last heard from (absent if never)."),
            ]),
        EventKind(
            "device.recovered", "A stale device is heard from again.",
            fields: [EventField("stale_s", .number, unit: "s", "How long it was stale.")]),
        EventKind(
            "device.usb_reset", severity: .warning,
            "The driver reset a USB-serial adapter that stopped answering while its port stayed open (a wedged adapter).",
            fields: [
                EventField("reason", .string, "Why, e.g. \"5 consecutive reply timeouts\"."),
                EventField(
                    "usb", .object,
                    "The adapter, the fields known: `port_path` (bus-port path, e.g. \"1-2.3\"), `vendor_id`, `product_id`, `serial_number`, `bus`, `address`; `syspath` of the tty when it has no USB device."),
                EventField("result", .string, "\"reset\" or \"failed\"."),
                EventField("error", .string, required: false, "Why it failed, with libusb's error name (e.g. `LIBUSB_ERROR_ACCESS`)."),
            ]),
        EventKind(
            "device.protocol_error", severity: .warning,
            "Bytes from a device that could not be understood (rate-limited per device).",
            fields: [
                EventField("error", .string, "What was wrong: checksum, unparseable line, impossible value."),
                EventField("bytes_hex", .string, required: false, "The offending bytes in hex."),
                EventField("suppressed", .integer, required: false, "Similar errors not journaled since the last one."),
            ]),
        // driver.*
        EventKind(
            "driver.crashed", severity: .error,
            "A driver threw or returned unexpectedly; the supervisor will restart it.",
            fields: [
                EventField("error", .string, "The error the driver reported."),
                EventField("attempt", .integer, "Consecutive crashes, starting at 1."),
                EventField("restart_in_s", .number, unit: "s", "Back-off before the restart (capped exponential)."),
            ]),
        EventKind(
            "driver.restarted", "The supervisor restarted a crashed driver.",
            fields: [
                EventField("attempt", .integer, "Consecutive crashes before this restart."),
                EventField("down_s", .number, unit: "s", "Seconds between the crash and the restart."),
            ]),
        // journal.*
        EventKind(
            "journal.truncated", severity: .notice, "Retention deleted the oldest events.",
            fields: [
                EventField("from_seq", .integer, "First deleted seq."),
                EventField("to_seq", .integer, "Last deleted seq."),
                EventField("count", .integer, "Number of deleted events."),
                EventField("reason", .string, "\"age\" (older than `retention_days`) or \"size\" (over `max_size_mb`)."),
                EventField("oldest_seq", .integer, "The oldest seq still in the journal."),
                EventField(
                    "unshipped_from_seq", .integer, required: false,
                    "With `[shipper] retention_may_drop_unshipped = true`: the first deleted seq that had not been shipped to PostgreSQL."),
                EventField("unshipped_to_seq", .integer, required: false, "The last deleted seq that had not been shipped."),
                EventField("unshipped_count", .integer, required: false, "How many deleted events had not been shipped (they are lost for the department table)."),
            ]),
        // shipper.*
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
        // dosecal.*
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
        // dicom.*
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
        // gantry.*
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
        // qc.*
        EventKind(
            "qc.dosecal.constancy",
            "A check-source measurement compared with its decay-corrected reference (docs/qc.md). Severity: info (pass), warning (investigate), error (fail). The envelope's time and device are the measurement's.",
            fields: qcCommon + [
                EventField("result", .string, "\"pass\", \"investigate\" (beyond `investigate_pct`) or \"fail\" (beyond `fail_pct`)."),
                EventField("deviation_pct", .number, unit: "%", "(measured − expected) / expected × 100."),
                EventField("measured_bq", .number, unit: "Bq", "The measured activity."),
                EventField("expected_bq", .number, unit: "Bq", "The reference activity decayed to the measurement time."),
                EventField("nuclide", .string, "The check source's nuclide."),
                EventField("source_serial", .string, "The check source's serial number."),
                EventField("reference_bq", .number, unit: "Bq", "The certified activity."),
                EventField("reference_date", .string, "When the certified activity held (RFC 3339)."),
                EventField("investigate_pct", .number, unit: "%", "The limit used for investigate."),
                EventField("fail_pct", .number, unit: "%", "The limit used for fail."),
                EventField("calibration_number", .string, required: false, "The calibrator setting used."),
            ]),
        EventKind(
            "qc.dosecal.constancy_missing", severity: .warning,
            "A patient dose was measured on a calibrator that had no passing constancy check yet that (site-local) day. The envelope's time and device are the measurement's.",
            fields: qcCommon + [
                EventField("nuclide", .string, "The patient dose's nuclide."),
                EventField("measured_bq", .number, unit: "Bq", "The patient dose's activity."),
                EventField("reason", .string, "Why: no check that day, only an investigate/fail result, or no check source configured."),
                EventField("last_result", .string, required: false, "The day's last constancy result on this calibrator, if any."),
            ]),
        EventKind(
            "qc.administration.reconciled",
            "The administered activity in the header of a study's primary series compared with the dose calibrator, one per radiopharmaceutical, judged when the study is stable (docs/qc.md, Studies). Severity: info (pass), warning (fail), notice (not comparable). The envelope's time is the `dicom.study.stable` event's; the device is the calibrator matched, else the DICOM sender.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"fail\", or why no comparison was made: \"no_measurement\", \"no_header_dose\", \"implausible_header\", \"no_injection_time\", \"no_nuclide\"."),
                EventField("finding", .string, "The result in words, naming the values."),
                EventField("nuclide", .string, required: false, "Canonical nuclide from the header."),
                EventField("injection_time", .string, required: false, "Radiopharmaceutical start (date)time as an instant (RFC 3339)."),
                EventField("header_bq", .number, unit: "Bq", required: false, "Radionuclide Total Dose, normalized to Bq per SOP class."),
                EventField("measured_bq", .number, unit: "Bq", required: false, "Dose calibrator activity decayed to the injection time, minus the residual."),
                EventField("deviation_pct", .number, unit: "%", required: false, "(header − measured) / measured × 100."),
                EventField("tolerance_pct", .number, unit: "%", required: false, "The limit used."),
                EventField("measurement_seq", .integer, required: false, "The matched `dosecal.measurement`."),
                EventField("measurement_time", .string, required: false, "When it was measured."),
                EventField("measurement_bq", .number, unit: "Bq", required: false, "The activity as measured (before decay correction)."),
                EventField("candidates", .integer, required: false, "Measurements of that nuclide in the window (more than 1: the latest was taken)."),
                EventField("residual_seq", .integer, required: false, "The residual measurement subtracted, if any."),
                EventField("residual_bq", .number, unit: "Bq", required: false, "The residual decayed back to the injection time."),
            ]),
        EventKind(
            "qc.protocol.uptake_delay",
            "Acquisition time minus injection time of the study's primary series against the matched protocol's window, once per study. Severity: info (pass), warning otherwise.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"too_early\", \"too_late\" or \"unknown\" (a time is missing)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("delay_min", .number, unit: "min", required: false, "Acquisition minus injection."),
                EventField("min_min", .number, unit: "min", "The protocol's shortest delay."),
                EventField("max_min", .number, unit: "min", "The protocol's longest delay."),
                EventField("injection_time", .string, required: false, "RFC 3339."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.protocol.energy_window",
            "NM/PET energy windows of each series of a study against the matched protocol's photopeaks (per radiopharmaceutical when the protocol gives them by nuclide). Severity: info (pass), warning otherwise.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"fail\" or \"missing\" (no window for a photopeak)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("windows", .array, "Per photopeak: {photopeak_kev, name, lower_kev, upper_kev, center_kev, width_pct, result}."),
                EventField("finding", .string, "The result in words."),
                EventField("nuclide", .string, required: false, "The radiopharmaceutical's nuclide, when the protocol gives photopeaks by nuclide (`unknown` result: none for it)."),
            ]),
        // Study-level protocol findings (issue 15).
        EventKind(
            "qc.protocol.supplementary_view",
            "A series of a study that is not its primary acquisition (a static spot view, a SPECT/CT, a later sweep): recorded with its times, never judged for uptake delay. Judged when the study is stable.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"supplementary\"."),
                EventField("primary_series_uid", .string, "The study's primary series."),
                EventField("primary_instance_seq", .integer, "The primary's first `dicom.instance.stored`."),
                EventField("primary_series_description", .string, required: false, "Its description."),
                EventField("primary_acquisition_time", .string, required: false, "RFC 3339."),
                EventField("protocol", .string, required: false, "The `[[qc.protocol]]` of the view, else of the primary."),
                EventField("injection_time", .string, required: false, "RFC 3339."),
                EventField("delay_min", .number, unit: "min", required: false, "Acquisition minus injection."),
                EventField("after_primary_min", .number, unit: "min", required: false, "Acquisition minus the primary's acquisition (negative: before it)."),
                EventField("view_codes", .array, required: false, "Code meanings of the View Code Sequence."),
                EventField("finding", .string, "The view in words."),
            ]),
        EventKind(
            "qc.protocol.activity",
            "The administered activity (header Radionuclide Total Dose) of a study's primary series against the protocol's range, weight-based when the protocol gives MBq/kg and the header a weight. Severity: info (pass), warning otherwise.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"too_low\", \"too_high\" or \"unknown\" (no usable dose; or weight-based without a weight or fixed limit)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("nuclide", .string, required: false, "The radiopharmaceutical judged."),
                EventField("activity_bq", .number, unit: "Bq", required: false, "The header's total dose."),
                EventField("low_bq", .number, unit: "Bq", required: false, "The lowest activity that passes."),
                EventField("high_bq", .number, unit: "Bq", required: false, "The highest activity that passes."),
                EventField("expected_bq", .number, unit: "Bq", required: false, "Weight × MBq/kg clamped to the protocol's limits."),
                EventField("weight_kg", .number, unit: "kg", required: false, "Patient's Weight."),
                EventField("activity_min_bq", .number, unit: "Bq", required: false, "The protocol's `activity_min_mbq`."),
                EventField("activity_max_bq", .number, unit: "Bq", required: false, "The protocol's `activity_max_mbq`."),
                EventField("activity_mbq_per_kg", .number, unit: "MBq/kg", required: false, "The protocol's `activity_mbq_per_kg`."),
                EventField("tolerance_pct", .number, unit: "%", required: false, "The protocol's `activity_tolerance_pct` (weight-based)."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.protocol.scan_speed",
            "The whole-body scan speed of a series (Scan Velocity) against the protocol's range. Severity: info (pass), warning otherwise.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"too_slow\", \"too_fast\" or \"unknown\" (no Scan Velocity)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("speed_cm_per_min", .number, unit: "cm/min", required: false, "The scan speed."),
                EventField("scan_velocity_mm_per_s", .number, unit: "mm/s", required: false, "Scan Velocity (0018,1300) as in the header."),
                EventField("min_cm_per_min", .number, unit: "cm/min", "The protocol's slowest speed."),
                EventField("max_cm_per_min", .number, unit: "cm/min", "The protocol's fastest speed."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.protocol.collimator",
            "The collimators of an NM series against the protocol's names. Severity: info (pass), error (fail), warning (unknown).",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"fail\" or \"unknown\" (no Collimator/Grid Name in the header)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("collimators", .array, "The names in the header."),
                EventField("allowed", .array, "The protocol's `collimator` patterns."),
                EventField("finding", .string, "The result in words."),
            ]),
        // qc.camera.* (camera QC, docs/qc.md "Camera QC")
        EventKind(
            "qc.camera.uniformity",
            "A flood of one detector head judged by NEMA NU 1 integral and differential uniformity (docs/qc.md). Severity: info (pass), warning (investigate), error (fail), notice (low_counts, not_judged). The envelope's time is the instance's arrival, its device the `[[qc.camera]]` id.",
            fields: qcCommon + qcCamera + [
                EventField("head", .integer, required: false, "Detector head (Detector Vector value); absent when the file could not be read."),
                EventField("result", .string, "\"pass\", \"investigate\" (a limit or the baseline), \"fail\", \"low_counts\" (beyond a limit, but counting noise alone comes close to it), \"not_judged\" (unreadable or compressed image; `finding` says why)."),
                EventField("ufov", .object, required: false, "{integral_pct, differential_pct} over the useful field of view (smoothed)."),
                EventField("cfov", .object, required: false, "{integral_pct, differential_pct} over the central field of view (UFOV scaled by 75 %)."),
                EventField("pixel_mm", .number, unit: "mm", required: false, "Pixel size after rebinning (NEMA: 6.4 mm ± 30 %)."),
                EventField("rebin_factor", .integer, required: false, "Original pixels summed per rebinned pixel along a row."),
                EventField("pixel_size_ok", .boolean, required: false, "Whether the rebinned pixel is within 6.4 mm ± 30 %."),
                EventField("mean_counts", .number, required: false, "Mean counts per rebinned UFOV pixel (before smoothing)."),
                EventField("total_counts", .number, required: false, "All counts of the head's image."),
                EventField("expected_noise_pct", .number, unit: "%", required: false, "The UFOV integral uniformity counting noise alone gives at this count density."),
                EventField("low_counts", .boolean, required: false, "expected_noise_pct ≥ low_counts_fraction × the UFOV integral investigate limit."),
                EventField("ufov_pixels", .integer, required: false, "Rebinned pixels in the UFOV; also cfov_pixels, edge_pixels_dropped."),
                EventField("limits", .object, required: false, "{ufov_integral_pct, cfov_integral_pct, ufov_differential_pct, cfov_differential_pct}: each {investigate, fail}."),
                EventField("baseline_median_pct", .number, unit: "%", required: false, "Median UFOV integral uniformity of the head's latest passing floods (`baseline_floods` of them)."),
                EventField("baseline_deviation_pp", .number, required: false, "UFOV integral uniformity minus the baseline, percentage points."),
                EventField("map", .object, required: false, "The smoothed flood for the report: rows, columns, low, high, pixels_b64 (1 byte a pixel: 0 outside the UFOV, 1–255 from low to high), cfov_b64 (0/1), min_at, max_at, cfov_min_at, cfov_max_at ([row, column])."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.camera.cor",
            "The centre of rotation of one head from a SPECT acquisition of a point source: fit of x(θ) = A cos θ + B sin θ + C to the centroids (docs/qc.md). Severity as for uniformity.",
            fields: qcCommon + qcCamera + [
                EventField("head", .integer, required: false, "Detector head."),
                EventField("result", .string, "\"pass\", \"investigate\", \"fail\" or \"not_judged\"."),
                EventField("offset_px", .number, required: false, "C minus the matrix centre ((columns − 1) / 2), pixels."),
                EventField("offset_mm", .number, unit: "mm", required: false, "The same in mm (Pixel Spacing)."),
                EventField("residual_px", .number, required: false, "RMS of the fit's residuals, pixels; also residual_mm."),
                EventField("residual_mm", .number, unit: "mm", required: false, "RMS of the fit's residuals."),
                EventField("axial_drift_px", .number, required: false, "Range of the point's row position over the orbit, pixels."),
                EventField("axial_drift_mm", .number, unit: "mm", required: false, "The same in mm."),
                EventField("projections", .integer, required: false, "Projections of this head."),
                EventField("limits", .object, required: false, "{offset_px, axial_drift_px}: each {investigate, fail}."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.camera.qc_missing", severity: .warning,
            "A patient study (first instance of a series) acquired on a camera without a passing flood of every head earlier that site-local day.",
            fields: qcCommon + qcCamera + [
                EventField("result", .string, "Always \"missed\"."),
                EventField("reason", .string, "Why: no flood that day, or floods that did not pass."),
                EventField("heads_missing", .array, "Heads without a passing flood."),
                EventField("last_result", .string, required: false, "The day's last flood result, if any."),
                EventField("patient_id", .string, required: false, "Patient ID."),
                EventField("accession_number", .string, required: false, "Accession number."),
            ]),
    ] + dicomSpoolKinds)

    /// Fields every qc.* event has.
    static let qcCommon = [
        EventField("source_seq", .integer, "The journal event that was judged (the QC service's cursor)."),
        EventField("local_date", .string, "The site-local date the finding belongs to (`[daemon] time_zone`), YYYY-MM-DD."),
    ]

    /// Fields of the qc.camera.* events.
    static let qcCamera = [
        EventField("camera", .string, "The `[[qc.camera]]` id."),
        EventField("sop_instance_uid", .string, required: false, "The judged instance."),
        EventField("series_uid", .string, required: false, "Its series; also study_uid, series_description, station_name."),
        EventField("acquisition_time", .string, required: false, "Acquisition (else series, else study) date/time, RFC 3339."),
    ]

    /// Fields of the per-series qc.* events.
    static let qcSeries = [
        EventField("study_uid", .string, required: false, "Study Instance UID."),
        EventField("series_uid", .string, required: false, "Series Instance UID."),
        EventField("patient_id", .string, required: false, "Patient ID."),
        EventField("accession_number", .string, required: false, "Accession number."),
        EventField("series_description", .string, required: false, "Series description."),
        EventField("agent", .string, required: false, "Radiopharmaceutical."),
        EventField("modality", .string, required: false, "NM or PT."),
        EventField("role", .string, required: false, "\"primary\" or \"supplementary\": the series' place in its study."),
        EventField("view", .string, required: false, "Kind of acquisition from Image Type: whole body, static, SPECT, gated SPECT, dynamic, gated planar, PET, series."),
        EventField("image_type", .array, required: false, "Image Type (0008,0008)."),
        EventField("acquisition_time", .string, required: false, "RFC 3339."),
        EventField("instance_seq", .integer, required: false, "The series' first `dicom.instance.stored` (`source_seq` is the `dicom.study.stable` judged)."),
        EventField("replaces_primary_series_uid", .string, required: false, "A primary chosen only as the first series, replaced by this one (docs/qc.md)."),
    ]
}

extension EventKindRegistry {
    /// The registry as the Markdown of `docs/events.md`.
    public func markdown() -> String {
        var out = """
            # Event kinds

            <!-- Generated by `nmbridge kinds --markdown` from EventKindRegistry.standard.
                 A test fails when this file and the registry disagree. Do not edit by hand. -->

            Every event is one JSON object (the *envelope*):

            | field | type | meaning |
            |---|---|---|
            | `seq` | integer | Position in the journal: strictly increasing, no gaps within one journal id. Use it as your cursor. |
            | `journal` | string (UUID) | Journal id, fixed when the journal is created. A different id is a different history: reset your cursor. |
            | `time` | string | When it happened, RFC 3339 UTC with microseconds (`2026-11-29T07:00:00.123456Z`). |
            | `node` | string | The host that journaled it (`[daemon] node`). |
            | `device` | string or null | The configured device id; null for daemon-wide events. |
            | `driver` | string or null | The driver that produced it. |
            | `kind` | string | One of the kinds below, or `experimental.*`. |
            | `severity` | string | `debug`, `info`, `notice`, `warning`, `error` or `critical`. |
            | `data` | object | Kind-specific fields below. Quantities carry their SI unit in the name (`activity_bq`, `angle_deg`, `position_mm`); the device's own text goes alongside. Fields may be added; consumers ignore unknown ones. |
            | `raw` | string or null | The bytes the event was decoded from, lower-case hex. |

            Kinds named `experimental.*` may be journaled without registration and may change at any time.

            """
        var family = ""
        for kind in kinds {
            let prefix = String(kind.name.split(separator: ".").first ?? "")
            if prefix != family {
                family = prefix
                out += "\n## \(family).*\n"
            }
            out += "\n### `\(kind.name)`\n\n\(kind.summary) Default severity: `\(kind.defaultSeverity.rawValue)`.\n"
            if kind.fields.isEmpty {
                out += "\nNo data fields.\n"
                continue
            }
            out += "\n| field | type | unit | required | meaning |\n|---|---|---|---|---|\n"
            for f in kind.fields {
                out += "| `\(f.name)` | \(f.type.rawValue) | \(f.unit ?? "") | \(f.required ? "yes" : "no") | \(f.summary) |\n"
            }
        }
        return out
    }
}
