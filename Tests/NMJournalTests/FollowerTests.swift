import Foundation
import NMBridgeCore
import Testing

@testable import NMJournal

@Suite struct FollowerTests {
    @Test func followsBacklogThenLiveWithoutSkippingUnderConcurrentAppends() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        for i in 0..<1500 { try await journal.append(draft(i)) }
        let total = 6000
        let appender = Task {
            for i in 1500..<total {
                try await journal.append(draft(i))
                if i % 500 == 0 { try await Task.sleep(for: .milliseconds(5)) }
            }
        }
        var seen: [Int64] = []
        for try await event in journal.follow(after: 700) {
            seen.append(event.seq)
            if event.seq == Int64(total) { break }
        }
        try await appender.value
        #expect(seen == Array(701...Int64(total)))
        #expect(journal.statistics.liveSubscribers == 0, "breaking out of the loop ends the subscription")
    }

    @Test func filteredFollowerSeesOnlyMatchingEventsInOrder() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        let appender = Task {
            for i in 0..<900 { try await journal.append(draft(i, device: i % 3 == 0 ? "gantry-1" : "dosecal-1")) }
        }
        var seen: [Int] = []
        for try await event in journal.follow(after: 0, filter: EventFilter(devices: ["gantry-1"])) {
            seen.append(Int(event.data["i"]?.intValue ?? -1))
            if seen.count == 300 { break }
        }
        try await appender.value
        #expect(seen == Array(stride(from: 0, to: 900, by: 3)))
    }

    @Test func queriesCanMatchATopLevelDataField() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        for i in 0..<30 {
            try await journal.append(EventDraft(kind: "experimental.sample", data: ["series_uid": .string("1.2.\(i % 3)"), "i": .int(Int64(i))]))
        }
        let page = try await journal.events(EventQuery(before: 20, dataEquals: ["series_uid": "1.2.1"]))
        #expect(page.events.compactMap { $0.data["i"]?.intValue } == [1, 4, 7, 10, 13, 16])
        let hostile = try await journal.events(EventQuery(dataEquals: ["series_uid') OR 1=1 --": "x"]))
        #expect(hostile.events.isEmpty, "a key that is not an identifier matches nothing")
    }

    @Test func aSlowFollowerIsCutOffAsLaggedButNeverSlowsAppends() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir, buffer: 32)
        var strict = journal.follow(after: 0, onOverflow: .fail).makeAsyncIterator()
        var lossless = journal.follow(after: 0, onOverflow: .catchUp).makeAsyncIterator()
        // Both reach the live feed (the journal is empty) ...
        try await journal.append(draft(0))
        #expect(try await strict.next()?.seq == 1)
        #expect(try await lossless.next()?.seq == 1)
        // ... then neither reads while 200 events are appended in separate commits.
        for i in 1...200 { try await journal.append(draft(i)) }
        #expect(journal.lastSeq == 201)
        await #expect(throws: Lagged.self) {
            while try await strict.next() != nil {}
        }
        var rest: [Int64] = []
        while rest.count < 200, let event = try await lossless.next() { rest.append(event.seq) }
        #expect(rest == Array(2...201), "the catch-up follower goes back to the file and loses nothing")
        #expect(journal.statistics.laggedSubscribers >= 2)
    }

    @Test func retentionByAgeDeletesAPrefixAndExpiresOldCursors() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        let now = Date()
        for i in 0..<50 { try await journal.append(draft(i, time: now.addingTimeInterval(-10 * 86_400))) }
        for i in 50..<60 { try await journal.append(draft(i, time: now.addingTimeInterval(-3600))) }
        let truncated = try await journal.applyRetention(RetentionPolicy(maxAge: 7 * 86_400), now: now)
        let marker = try #require(truncated.first)
        #expect(truncated.count == 1)
        #expect(marker.seq == 61)
        #expect(marker.kind == "journal.truncated")
        #expect(marker.data["from_seq"] == .int(1))
        #expect(marker.data["to_seq"] == .int(50))
        #expect(marker.data["count"] == .int(50))
        #expect(marker.data["reason"] == .string("age"))
        #expect(try await journal.bounds().oldest == 51)

        var expired = journal.follow(after: 10).makeAsyncIterator()
        let error = await #expect(throws: CursorExpired.self) { _ = try await expired.next() }
        #expect(error?.oldestSeq == 51)
        #expect(error?.description.contains("51") == true)

        var fromEdge = journal.follow(after: 50).makeAsyncIterator()
        #expect(try await fromEdge.next()?.seq == 51, "a cursor right before the oldest event is still valid")
        #expect(try await journal.append(draft(99)).seq == 62, "seq continues after the marker")
    }

    @Test func retentionThatDeletesEverythingStillContinuesTheSeq() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        for i in 0..<20 { try await journal.append(draft(i, time: Date().addingTimeInterval(-30 * 86_400))) }
        let markers = try await journal.applyRetention(RetentionPolicy(maxAge: 86_400))
        #expect(markers.map(\.seq) == [21])
        #expect(markers.first?.data["to_seq"] == .int(20))
        #expect(try await journal.bounds().oldest == 21)
        #expect(try await journal.append(draft(99)).seq == 22)
        let reopened = try openJournal(dir)
        #expect(try await reopened.append(draft(100)).seq == 23)
    }

    @Test func retentionBySizeKeepsTheFileUnderTheLimit() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        let padding = String(repeating: "x", count: 400)
        for batch in 0..<20 {
            try await journal.append((0..<100).map { i in
                EventDraft(device: "d", kind: "experimental.big", data: ["i": .int(Int64(batch * 100 + i)), "pad": .string(padding)])
            })
        }
        let before = try await journal.usedBytes()
        let limit = before / 2
        let truncated = try await journal.applyRetention(RetentionPolicy(maxBytes: limit))
        #expect(truncated.count == 1)
        #expect(truncated.first?.data["reason"] == .string("size"))
        #expect(try await journal.usedBytes() <= limit)
        let bounds = try await journal.bounds()
        #expect(truncated.first?.data["to_seq"]?.intValue == (bounds.oldest ?? 0) - 1)
        let remaining = try await journal.events(EventQuery(limit: 10_000)).events.map(\.seq)
        #expect(remaining == Array((bounds.oldest ?? 0)...bounds.last), "no holes")
    }

    @Test func closingFollowersEndsTheirIteration() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        try await journal.append(draft(1))
        let follower = Task {
            var count = 0
            for try await _ in journal.follow(after: 0) { count += 1 }
            return count
        }
        try await Task.sleep(for: .milliseconds(100))
        journal.closeFollowers()
        #expect(try await follower.value == 1)
    }
}
