import Foundation
import NMBridgeCore
import NMJournal
import Testing

@testable import NMQualityControl

@Suite struct QCServiceTests {
    /// Runs the service on `journal` until it has judged everything up to the journal's
    /// last input event, then shuts it down the way the daemon does (followers closed).
    func runUntilJudged(_ f: QCFixture, _ journal: Journal, _ settings: DaemonConfiguration.QualityControl, expecting count: Int) async throws
        -> [Event]
    {
        let service = QualityControlService(journal: journal, settings: settings, zone: TimeZone(identifier: "UTC")!, logger: f.logger)
        let running = Task { try await service.run() }
        var qc: [Event] = []
        for _ in 0..<900 {  // a hang guard (90 s), not a performance limit
            qc = try await f.qcEvents(in: journal)
            if qc.count >= count { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        journal.closeFollowers()
        try await running.value
        return qc
    }

    @Test func restartsResumeWithoutDuplicatesOrGaps() async throws {
        let f = try QCFixture()
        let settings = qcSettings([cesium], cursor: f.directory + "/qc-cursor.json")
        try await f.measure("dosecal-1", "Cs-137", 6.60e6, at: "2026-01-01T07:00:00Z")
        try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-01-02T08:00:00Z")  // missed
        let first = try await runUntilJudged(f, f.journal, settings, expecting: 2)
        #expect(first.map(\.kind) == ["qc.dosecal.constancy", "qc.dosecal.constancy_missing"])
        let cursorText = try String(contentsOfFile: settings.cursorFile, encoding: .utf8)
        #expect(cursorText.contains("\"journal\":\"\(f.journal.id.uuidString.lowercased())\""))

        // A crash after the findings were journaled but before the cursor was saved: the
        // cursor file is older than the findings. Events arrive while the service is down.
        try "{\"journal\":\"\(f.journal.id.uuidString.lowercased())\",\"seq\":0}\n".write(toFile: settings.cursorFile, atomically: true, encoding: .utf8)
        let second = try f.reopened()
        try await f.measure("dosecal-1", "Tc-99m", 700e6, at: "2026-01-02T09:00:00Z", in: second)  // missed
        try await f.measure("dosecal-1", "Cs-137", 6.45e6, at: "2026-01-03T07:00:00Z", in: second)  // pass
        let after = try await runUntilJudged(f, second, settings, expecting: 4)

        // Without a cursor file at all, the last finding names where to resume.
        try FileManager.default.removeItem(atPath: settings.cursorFile)
        let third = try f.reopened()
        try await f.measure("dosecal-1", "Tc-99m", 650e6, at: "2026-01-03T08:00:00Z", in: third)  // fine: checked today
        try await f.measure("dosecal-2", "F-18", 300e6, at: "2026-01-03T08:00:00Z", in: third)  // missed: no source
        let last = try await runUntilJudged(f, third, settings, expecting: 5)

        let sources = last.compactMap { $0.data["source_seq"]?.intValue }
        #expect(sources == [1, 2, 5, 6, 10], "each judged once, in order: \(last.map(\.dataJSON))")
        #expect(after.count == 4)
        #expect(last.map(\.kind) == [
            "qc.dosecal.constancy", "qc.dosecal.constancy_missing", "qc.dosecal.constancy_missing", "qc.dosecal.constancy",
            "qc.dosecal.constancy_missing",
        ])
    }

    @Test func aCursorOfAnotherJournalIsIgnored() async throws {
        let f = try QCFixture()
        let settings = qcSettings([cesium], cursor: f.directory + "/qc-cursor.json")
        try "{\"journal\":\"00000000-0000-0000-0000-000000000000\",\"seq\":99}\n".write(toFile: settings.cursorFile, atomically: true, encoding: .utf8)
        try await f.measure("dosecal-1", "Cs-137", 6.60e6, at: "2026-01-01T07:00:00Z")
        let qc = try await runUntilJudged(f, f.journal, settings, expecting: 1)
        #expect(qc.map(\.kind) == ["qc.dosecal.constancy"])
    }
}
