import DicomStore
import Foundation
import Logging
import NMBridgeCore
import NMCatalog
import NMJournal
import TestSupport
import Testing

@testable import NMForward

/// The outbound queue is rebuilt from the journal at start; its snapshot file lets a start
/// read only the queue's events since the snapshot, with the same result as reading all.
@Suite struct OutboundSnapshotTests {
    static func service(_ dir: String, journal: Journal) -> OutboundService {
        var dicom = DaemonConfiguration.Dicom(storage: dir + "/dicom")
        dicom.outbound = .init(cursorFile: dir + "/dicom/.outbound-cursor.json")
        dicom.outbound.destinations = [.init(name: "pacs", aeTitle: "PACS", host: "127.0.0.1", port: 104, callingAE: "NMBRIDGE")]
        return OutboundService(journal: journal, dicom: dicom, qualityControl: nil, zone: .gmt, node: "test", logger: Logger(label: "test"))
    }

    static func queued(_ n: Int, source: Int) -> EventDraft {
        EventDraft(
            driver: "outbound", kind: "dicom.forward.queued",
            data: [
                "destination": .string("pacs"), "what": .string("instance"), "path": .string("/x/\(n).dcm"),
                "sop_instance_uid": .string("1.2.\(n)"), "sop_class_uid": .string("1.2.840.10008.5.1.4.1.1.20"),
                "source_seq": .int(Int64(source)), "route": .string("all"),
            ])
    }

    static func ended(_ kind: String, job: Int64) -> EventDraft {
        EventDraft(
            driver: "outbound", kind: kind,
            data: ["job": .int(job), "destination": .string("pacs"), "sop_instance_uid": .string("1"), "status": .string("0x0000"),
                "attempts": .int(1), "transfer_syntax": .string("1.2.840.10008.1.2.1"), "reason": .string("test")])
    }

    @Test func aSnapshotGivesTheSameQueueAsTheWholeJournalAndABadOneIsNotUsed() async throws {
        let dir = try makeTemporaryDirectory("outbound", #function)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try Journal.open(JournalOptions(path: dir + "/journal.db", node: "test", registry: .standard, sync: .normal), logger: Logger(label: "test"))
        defer { journal.closeFollowers() }
        let service = Self.service(dir, journal: journal)
        try FileManager.default.createDirectory(atPath: dir + "/dicom", withIntermediateDirectories: true)  // the receiver makes it

        // 300 jobs, two thirds of them ended; then a snapshot at start.
        let first = try await journal.append((0..<300).map { Self.queued($0, source: $0 + 1) })
        try await journal.append(first.enumerated().filter { $0.offset % 3 != 0 }.map { Self.ended($0.offset % 2 == 0 ? "dicom.forward.delivered" : "dicom.forward.gave_up", job: $0.element.seq) })
        let start = try await service.rebuild()
        #expect(start.state.open.count == 100)
        #expect(FileManager.default.fileExists(atPath: service.snapshotFile))
        // More jobs, and ends for some jobs the snapshot holds as open.
        let second = try await journal.append((300..<350).map { Self.queued($0, source: $0 + 1) })
        try await journal.append(first.enumerated().filter { $0.offset % 3 == 0 && $0.offset < 90 }.map { Self.ended("dicom.forward.dropped", job: $0.element.seq) })
        try await journal.append([Self.ended("dicom.forward.delivered", job: second[0].seq)])

        let fromSnapshot = try await service.rebuild()
        try FileManager.default.removeItem(atPath: service.snapshotFile)
        let fromJournal = try await service.rebuild()
        #expect(fromSnapshot.state == fromJournal.state)
        #expect(fromJournal.state.open.count == 100 - 30 + 49)
        #expect(fromJournal.state.lastSource == 350)
        #expect(fromSnapshot.cursor == fromJournal.cursor)
        #expect(service.queue.waiting == 119)

        // A damaged snapshot (a job line cut) is not used: the whole journal is read instead.
        var text = try String(contentsOfFile: service.snapshotFile, encoding: .utf8)
        text.removeLast(40)
        try text.write(toFile: service.snapshotFile, atomically: true, encoding: .utf8)
        #expect(service.loadSnapshot() == nil)
        #expect(try await service.rebuild().state == fromJournal.state)
        // One of another journal (a new history) is ignored.
        try text.replacingOccurrences(of: journal.id.uuidString.lowercased(), with: UUID().uuidString.lowercased())
            .write(toFile: service.snapshotFile, atomically: true, encoding: .utf8)
        #expect(service.loadSnapshot() == nil)
    }
}
