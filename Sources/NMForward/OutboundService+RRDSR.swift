import DicomStore
import Foundation
import NMBridgeCore
import NMJournal

extension OutboundService {
    /// A report built from the journal, or why none can be.
    enum ReportBuild {
        case report(RadiationDoseReport, image: Event)
        case skipped(String)
    }

    /// The events of one `qc.administration.reconciled`: `dicom.rrdsr.created` and the jobs
    /// that send it, or `dicom.rrdsr.skipped`. Administrations without a calibrator
    /// measurement (no match) are not reported.
    func rrdsrEvents(for event: Event) async throws -> [EventDraft] {
        guard event.data["measured_bq"]?.doubleValue != nil else { return [] }
        let study = event.data["study_uid"]?.stringValue
        switch try await buildReport(for: event) {
        case .skipped(let reason):
            logger.notice("no RRDSR for a reconciled administration", metadata: ["outbound.source_seq": "\(event.seq)", "reason": "\(reason)"])
            var data: [String: JSONValue] = ["source_seq": .int(event.seq), "reason": .string(reason)]
            if let study { data["study_uid"] = .string(study) }
            return [EventDraft(driver: "outbound", kind: "dicom.rrdsr.skipped", data: data)]
        case .report(let report, let image):
            let written: RadiationDoseReport.Written
            do {
                written = try report.write(storage: dicom.storage)
            } catch {
                throw OutboundFailure("cannot write the RRDSR of journal event \(event.seq): \(error)")
            }
            var data: [String: JSONValue] = [
                "source_seq": .int(event.seq), "study_uid": .string(study ?? ""), "series_uid": .string(report.seriesInstance),
                "sop_instance_uid": .string(report.sopInstance), "sop_class_uid": .string(RadiationDoseReport.sopClass),
                "path": .string(written.path), "bytes": .int(Int64(written.bytes)), "sha256": .string(written.sha256),
                "nuclide": event.data["nuclide"] ?? .string(report.radionuclide.meaning), "administered_bq": .double(report.administeredBq.rounded()),
                "injection_time": .string(Timestamp.format(report.injection)),
            ]
            for key in ["patient_id", "accession_number"] { if let value = image.data[key] { data[key] = value } }
            var drafts = [EventDraft(device: event.device, driver: "outbound", kind: "dicom.rrdsr.created", data: data)]
            for match in router.rrdsrDestinations(for: image) {
                var job: [String: JSONValue] = [
                    "destination": .string(match.destination), "what": .string("rrdsr"), "path": .string(written.path),
                    "sop_instance_uid": .string(report.sopInstance), "sop_class_uid": .string(RadiationDoseReport.sopClass),
                    "source_seq": .int(event.seq), "route": .string(match.route),
                ]
                if let study { job["study_uid"] = .string(study) }
                drafts.append(EventDraft(driver: "outbound", kind: "dicom.forward.queued", data: job))
            }
            return drafts
        }
    }

    /// Builds the report of a reconciled administration from the journal: the image it was
    /// judged on (identity, codes), the calibrator measurements (pre and residual).
    func buildReport(for event: Event) async throws -> ReportBuild {
        let data = event.data
        guard let administered = data["measured_bq"]?.doubleValue, administered > 0 else {
            return .skipped("the administration has no measured activity")
        }
        guard let injection = data["injection_time"]?.stringValue.flatMap(Timestamp.parse) else {
            return .skipped("the administration has no injection time")
        }
        guard let instanceSeq = data["instance_seq"]?.intValue, let image = try await journalEvent(instanceSeq, kind: "dicom.instance.stored"),
            let path = image.data["path"]?.stringValue
        else {
            return .skipped("the image the administration was judged on is not in the journal (instance_seq)")
        }
        let header: Dataset
        do {
            header = try RadiationDoseReport.readHeader(path: path)
        } catch {
            return .skipped("cannot read the image \(path): \(error)")
        }
        let nuclide = data["nuclide"]?.stringValue
        let codes = RadiationDoseReport.codes(in: header, nuclide: nuclide)
        guard let agent = codes.agent else {
            return .skipped(
                "the image carries no Radiopharmaceutical Code Sequence (0054,0304) and its agent name \(codes.agentName.map { "\"\($0)\"" } ?? "(none)") is not one nmbridge can code")
        }
        guard let radionuclide = codes.radionuclide else {
            return .skipped("the image carries no Radionuclide Code Sequence (0054,0300) and \(nuclide ?? "the nuclide") has no code here")
        }
        let halfLife = nuclide.flatMap(Radionuclide.named)?.halfLifeSeconds ?? header.number(Tag(0x0018, 0x1075))
        guard let halfLife, halfLife > 0 else { return .skipped("no half-life is known for \(nuclide ?? "the nuclide")") }
        guard let study = header.string(Tag(0x0020, 0x000D)) else { return .skipped("the image has no Study Instance UID") }
        let journalID = journal.id.uuidString.lowercased()
        var report = RadiationDoseReport(
            image: header, sopInstance: RadiationDoseReport.derivedUID("rrdsr", journalID, String(event.seq)),
            seriesInstance: RadiationDoseReport.derivedUID("rrdsr-series", study),
            administrationEventUID: RadiationDoseReport.derivedUID("administration", journalID, String(event.seq)), agent: agent,
            radionuclide: radionuclide, halfLifeSeconds: halfLife, administeredBq: administered, injection: injection,
            procedure: RadiationDoseReport.procedure(in: header), created: event.time, zone: zone, node: node, aeTitle: dicom.aeTitle)
        report.route = codes.route
        report.seriesNumber = settings.rrdsrSeriesNumber
        if let seq = data["measurement_seq"]?.intValue, let measurement = try await journalEvent(seq, kind: "dosecal.measurement"),
            let bq = measurement.data["activity_bq"]?.doubleValue
        {
            report.pre = RadiationDoseReport.Measurement(
                bq: bq, time: measurement.time, device: measurement.device ?? "dose calibrator", driver: measurement.driver)
        }
        if let seq = data["residual_seq"]?.intValue, let residual = try await journalEvent(seq, kind: "dosecal.measurement"),
            let bq = residual.data["activity_bq"]?.doubleValue
        {
            report.post = RadiationDoseReport.Measurement(bq: bq, time: residual.time, device: residual.device ?? "dose calibrator", driver: residual.driver)
        }
        return .report(report, image: image)
    }

    /// The journal event `seq`, if it is of `kind`.
    func journalEvent(_ seq: Int64, kind: String) async throws -> Event? {
        let page = try await journal.events(EventQuery(after: seq - 1, filter: EventFilter(kinds: [kind]), limit: 1))
        return page.events.first.flatMap { $0.seq == seq ? $0 : nil }
    }

    /// `nmbridge rrdsr STUDY_UID`: the RRDSR of the study's latest reconciled administration
    /// (or of the `qc.administration.reconciled` event `seq`), built now. The same
    /// administration always gives the same bytes (its UIDs and dates come from the journal).
    public func rrdsr(study: String, seq: Int64? = nil) async throws -> (bytes: [UInt8], summary: JSONValue) {
        let candidates = try await journal.events(
            EventQuery(filter: EventFilter(kinds: ["qc.administration.reconciled"]), limit: 64, newestFirst: true, dataEquals: ["study_uid": study])
        ).events.filter { $0.data["measured_bq"]?.doubleValue != nil && (seq == nil || $0.seq == seq) }
        guard let event = candidates.first else {
            throw ActionError(
                notFound: true,
                message: "no reconciled administration with a calibrator measurement for study \(study)\(seq.map { " at seq \($0)" } ?? "") (see qc.administration.reconciled)")
        }
        switch try await buildReport(for: event) {
        case .skipped(let reason):
            throw ActionError(notFound: false, message: "no RRDSR for study \(study): \(reason)")
        case .report(let report, _):
            let summary: JSONValue = [
                "study_uid": .string(study), "source_seq": .int(event.seq), "sop_instance_uid": .string(report.sopInstance),
                "series_uid": .string(report.seriesInstance), "agent": .string(report.agent.description),
                "radionuclide": .string(report.radionuclide.description), "administered_bq": .double(report.administeredBq.rounded()),
                "injection_time": .string(Timestamp.format(report.injection)), "route": report.route.map { .string($0.description) } ?? .null,
                "pre_bq": report.pre.map { .double($0.bq.rounded()) } ?? .null, "post_bq": report.post.map { .double($0.bq.rounded()) } ?? .null,
                "administrations": .int(Int64(candidates.count)),
            ]
            return (report.partTen(), summary)
        }
    }
}

/// A failure of the outbound service that names what it was doing.
struct OutboundFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
