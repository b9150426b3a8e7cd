import Foundation
import Logging
import NMBridgeCore
import Synchronization

/// Studies that are still receiving: `dicom.study.stable` is journaled once a study has had
/// no new instance for the quiet time. The pending studies are kept in
/// `<storage>/.studies.json` (rewritten atomically at each change), so a study half
/// received before a restart still gets its event after it.
final class StudyTracker: Sendable {
    struct Study: Codable, Sendable, Equatable {
        var device: String
        var patientID: String?
        var accessionNumber: String?
        var modalities: Set<String>
        var series: Set<String>
        var instances: Int
        var bytes: Int
        var first: Date
        var last: Date
    }

    let path: String
    let quiet: TimeInterval
    private let studies: Mutex<[String: Study]>

    init(storage: String, quiet: TimeInterval, logger: Logger) {
        path = storage + "/.studies.json"
        self.quiet = quiet
        var saved: [String: Study] = [:]
        if let data = try? Data(contentsOf: URL(fileURLWithPath: path)) {
            do {
                saved = try JSONDecoder().decode([String: Study].self, from: data)
            } catch {
                logger.error("pending studies unreadable, their dicom.study.stable events are lost", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
        studies = Mutex(saved)
    }

    /// Counts a stored instance.
    func add(study: String, series: String, device: String, fields: [String: JSONValue], bytes: Int, at time: Date = Date()) {
        studies.withLock { studies in
            var entry = studies[study] ?? Study(
                device: device, patientID: fields["patient_id"]?.stringValue, accessionNumber: fields["accession_number"]?.stringValue,
                modalities: [], series: [], instances: 0, bytes: 0, first: time, last: time)
            if let modality = fields["modality"]?.stringValue { entry.modalities.insert(modality) }
            entry.series.insert(series)
            entry.instances += 1
            entry.bytes += bytes
            entry.last = time
            studies[study] = entry
            save(studies)  // under the lock: saves never interleave, the newest is the last
        }
    }

    /// Removes and returns the studies quiet since `quiet` seconds before `now`.
    func takeStable(now: Date = Date()) -> [(uid: String, study: Study)] {
        studies.withLock { studies in
            let stable = studies.filter { now.timeIntervalSince($0.value.last) >= quiet }.sorted { $0.value.last < $1.value.last }
            for (uid, _) in stable { studies[uid] = nil }
            if !stable.isEmpty { save(studies) }
            return stable.map { (uid: $0.key, study: $0.value) }
        }
    }

    private func save(_ studies: [String: Study]) {
        guard let data = try? JSONEncoder().encode(studies) else { return }
        let temporary = path + ".tmp"
        if (try? data.write(to: URL(fileURLWithPath: temporary))) != nil { rename(temporary, path) }
    }

    static func event(uid: String, study: Study) -> [String: JSONValue] {
        var data: [String: JSONValue] = [
            "study_uid": .string(uid), "series": .int(Int64(study.series.count)), "instances": .int(Int64(study.instances)),
            "bytes": .int(Int64(study.bytes)), "modalities": .array(study.modalities.sorted().map(JSONValue.string)),
            "first_instance": .string(Timestamp.format(study.first)), "last_instance": .string(Timestamp.format(study.last)),
        ]
        if let patient = study.patientID { data["patient_id"] = .string(patient) }
        if let accession = study.accessionNumber { data["accession_number"] = .string(accession) }
        return data
    }
}
