import Foundation
import NMBridgeCore
import NMCatalog
import Testing

@testable import NMJournal

/// Retention with a PostgreSQL shipper: unshipped events are kept unless the admin allows
/// dropping them, and then `journal.truncated` names exactly the unshipped ones dropped.
@Suite struct RetentionShippingTests {
    /// Ten events from ten days ago, then two recent ones: age retention (1 day) wants 1…10 gone.
    func journalWithOldEvents(_ dir: String) async throws -> Journal {
        let journal = try openJournal(dir)
        let old = Date().addingTimeInterval(-10 * 86_400)
        try await journal.append((1...10).map { draft($0, time: old) })
        try await journal.append((11...12).map { draft($0) })
        return journal
    }

    @Test func keepsEveryUnshippedEvent() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try await journalWithOldEvents(dir)
        // Nothing shipped yet (the server was never reached): nothing may go.
        let none = try await journal.applyRetention(RetentionPolicy(maxAge: 86_400, shippedThrough: 0))
        #expect(none.isEmpty)
        #expect(try await journal.bounds().oldest == 1)
        // Shipped through 4: exactly 1…4 go, 5…10 stay although they are too old.
        let truncated = try await journal.applyRetention(RetentionPolicy(maxAge: 86_400, shippedThrough: 4))
        #expect(truncated.count == 1)
        let data = try #require(truncated.first).data
        #expect(data["from_seq"] == .int(1) && data["to_seq"] == .int(4) && data["count"] == .int(4))
        #expect(data["unshipped_count"] == nil, "nothing unshipped was dropped")
        #expect(try await journal.bounds().oldest == 5)
        // Size retention is held back the same way (a tiny limit would drop everything).
        let bySize = try await journal.applyRetention(RetentionPolicy(maxBytes: 1, shippedThrough: 6))
        #expect(bySize.first?.data["to_seq"] == .int(6))
        #expect(try await journal.bounds().oldest == 7)
    }

    @Test func dropsUnshippedOnlyWhenAllowedAndSaysWhich() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try await journalWithOldEvents(dir)
        let truncated = try await journal.applyRetention(RetentionPolicy(maxAge: 86_400, shippedThrough: 3, mayDropUnshipped: true))
        let data = try #require(truncated.first).data
        #expect(data["from_seq"] == .int(1) && data["to_seq"] == .int(10))
        #expect(data["unshipped_from_seq"] == .int(4))
        #expect(data["unshipped_to_seq"] == .int(10))
        #expect(data["unshipped_count"] == .int(7))
        #expect(EventKindRegistry.standard.problems(kind: "journal.truncated", data: data).isEmpty)
        #expect(try await journal.bounds().oldest == 11)
    }
}
