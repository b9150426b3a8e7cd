import Foundation
import NMBridgeCore
import Testing

@testable import NMJournal

/// Retention per event kind (`[[journal.retention]]`): high-rate telemetry expires sooner while
/// the records regulations ask to keep (dosecal.*, qc.*, dicom.*: 3 years) stay, and
/// `journal.truncated` says what each run deleted.
@Suite struct RetentionByKindTests {
    @Test func shortTelemetryRetentionKeepsDosageAndQCRecords() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        let now = Date()
        let tenDays = now.addingTimeInterval(-10 * 86_400)
        let twoYears = now.addingTimeInterval(-730 * 86_400)
        let fourYears = now.addingTimeInterval(-1461 * 86_400)
        // seq 1–2: four years old (a measurement and a device event); 3–5: two years old;
        // 6–9: ten days old; 10: now.
        try await journal.append([
            draft(1, kind: "dosecal.measurement", time: fourYears), draft(2, kind: "device.connected", time: fourYears),
            draft(3, kind: "dosecal.measurement", time: twoYears), draft(4, kind: "qc.dosecal.constancy", time: twoYears),
            draft(5, kind: "gantry.state", time: twoYears),
            draft(6, kind: "gantry.state", time: tenDays), draft(7, kind: "gantry.state", time: tenDays),
            draft(8, kind: "dicom.instance.stored", time: tenDays), draft(9, kind: "device.connected", time: tenDays),
            draft(10, kind: "gantry.state", time: now),
        ])
        var settings = DaemonConfiguration.Journal(path: dir + "/journal.db")
        settings.retentionRules = [.init(kinds: ["gantry.*"], days: 7)]
        let policy = RetentionPolicy(settings)
        let expectedRules: [RetentionPolicy.KindRule] = [
            RetentionPolicy.KindRule(kinds: ["gantry.*"], maxAge: 7 * 86_400),
            RetentionPolicy.KindRule(kinds: ["dosecal.*", "qc.*", "dicom.*"], maxAge: 1096 * 86_400),
        ]
        #expect(policy.kindRules == expectedRules)
        let truncated = try await journal.applyRetention(policy, now: now)
        let kept = try await journal.events(EventQuery(limit: 100)).events.filter { $0.kind != "journal.truncated" }
        // Telemetry older than 7 days went, the records younger than 3 years stayed, the rest
        // (device.*) follows retention_days = 365.
        #expect(kept.map(\.seq) == [3, 4, 8, 9, 10])
        #expect(truncated.count == 3)
        let byRule = Dictionary(uniqueKeysWithValues: truncated.map { ($0.data["rule"]?.stringValue ?? "", $0.data) })
        let gantry = try #require(byRule["gantry.*"])
        #expect(gantry["kinds"] == .object(["gantry.state": .int(3)]))
        #expect(gantry["from_seq"] == .int(5) && gantry["to_seq"] == .int(7) && gantry["count"] == .int(3) && gantry["reason"] == .string("age"))
        let records = try #require(byRule["dosecal.*,qc.*,dicom.*"])
        #expect(records["kinds"] == .object(["dosecal.measurement": .int(1)]) && records["from_seq"] == .int(1))
        let rest = try #require(byRule["retention_days"])
        #expect(rest["kinds"] == .object(["device.connected": .int(1)]) && rest["to_seq"] == .int(2))
        #expect(truncated.allSatisfy { $0.data["oldest_seq"] == .int(3) })
        // The markers continue the seq after the last event.
        #expect(truncated.map(\.seq) == [11, 12, 13])
    }

    @Test func aRuleForARecordKindReplacesTheThreeYearDefault() throws {
        var settings = DaemonConfiguration.Journal(path: "/x")
        settings.retentionDays = 4000
        #expect(settings.effectiveRetentionRules == [.init(kinds: ["dosecal.*", "qc.*", "dicom.*"], days: 4000)], "never shorter than retention_days")
        settings.retentionRules = [.init(kinds: ["qc.*"], days: 1826)]  // a jurisdiction asking for 5 years of QC records
        #expect(settings.effectiveRetentionRules == [.init(kinds: ["qc.*"], days: 1826), .init(kinds: ["dosecal.*", "dicom.*"], days: 4000)])
        settings.retentionDays = nil
        settings.retentionRules = []
        #expect(settings.effectiveRetentionRules == [.init(kinds: ["dosecal.*", "qc.*", "dicom.*"], days: nil)])
    }
}
