import ArgumentParser
import DicomStore
import Foundation
import NMBridgeCore
import NMCatalog
import NMForward
import NMJournal

/// The outbound queue's rebuild at start, from a journal holding JOBS forwarded jobs (each a
/// `dicom.forward.queued` and its end; OPEN of them still waiting): reading the whole
/// journal (the snapshot removed: what every start did before the snapshot) against reading
/// from the snapshot, which a start then finds, after SINCE more jobs.
///
/// Output: `{"bench":"outbound-rebuild","impl":"whole journal"|"snapshot","jobs":N,
///   "events_read":…,"ms":…,"waiting":…}`
struct OutboundRebuild: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbound-rebuild", abstract: "Times the outbound queue's rebuild: the whole journal against its snapshot.")

    @Option(help: "Forwarded jobs in the journal.")
    var jobs: Int = 200_000

    @Option(help: "Jobs still waiting.")
    var open: Int = 1000

    @Option(help: "Jobs forwarded after the snapshot.")
    var since: Int = 1000

    @Option(help: "Directory for the journal (created if missing).")
    var dir: String

    func measure() async throws {
        try FileManager.default.createDirectory(atPath: dir + "/dicom", withIntermediateDirectories: true)
        let journal = try Journal.open(
            JournalOptions(path: dir + "/journal.db", node: "bench", registry: .standard, sync: .normal), logger: benchLogger())
        defer { journal.closeFollowers() }
        var dicom = DaemonConfiguration.Dicom(storage: dir + "/dicom")
        dicom.outbound = .init(cursorFile: dir + "/dicom/.outbound-cursor.json")
        dicom.outbound.destinations = [.init(name: "pacs", aeTitle: "PACS", host: "127.0.0.1", port: 104, callingAE: "NMBRIDGE")]
        let service = OutboundService(journal: journal, dicom: dicom, qualityControl: nil, zone: .gmt, node: "bench", logger: benchLogger())

        try await fill(journal, from: 0, count: jobs, open: open)
        try? FileManager.default.removeItem(atPath: service.snapshotFile)
        try await report("whole journal", service)
        try await fill(journal, from: jobs, count: since, open: 0)
        try await report("snapshot", service)
    }

    func report(_ impl: String, _ service: OutboundService) async throws {
        let clock = ContinuousClock()
        let started = clock.now
        let rebuilt = try await service.rebuild()
        let ms = started.duration(to: clock.now) / .milliseconds(1)
        print(
            #"{"bench":"outbound-rebuild","impl":"\#(impl)","jobs":\#(jobs),"events_read":\#(rebuilt.eventsRead),"ms":\#(ms),"waiting":\#(service.queue.waiting)}"#)
    }

    /// `count` jobs from number `from` on, all but `open` of them ended, in batches.
    func fill(_ journal: Journal, from: Int, count: Int, open: Int) async throws {
        for start in stride(from: from, to: from + count, by: 5000) {
            let numbers = start..<min(from + count, start + 5000)
            let queued = try await journal.append(
                numbers.map { n in
                    EventDraft(
                        driver: "outbound", kind: "dicom.forward.queued",
                        data: [
                            "destination": .string("pacs"), "what": .string("instance"), "path": .string("/srv/dicom/1.2.3/1.2.3.4/1.2.3.4.\(n).dcm"),
                            "sop_instance_uid": .string("1.2.3.4.\(n)"), "sop_class_uid": .string("1.2.840.10008.5.1.4.1.1.20"),
                            "study_uid": .string("1.2.3"), "source_seq": .int(Int64(n + 1)), "route": .string("all"),
                        ])
                })
            let ends = zip(numbers, queued).filter { $0.0 >= from + open }.map { _, event in
                EventDraft(
                    driver: "outbound", kind: "dicom.forward.delivered",
                    data: [
                        "job": .int(event.seq), "destination": .string("pacs"), "sop_instance_uid": event.data["sop_instance_uid"] ?? .null,
                        "status": .string("0x0000"), "attempts": .int(1), "transfer_syntax": .string("1.2.840.10008.1.2.1"),
                    ])
            }
            if !ends.isEmpty { try await journal.append(ends) }
        }
    }
}
