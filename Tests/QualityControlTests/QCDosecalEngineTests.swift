import Foundation
import NMBridgeCore
import NMJournal
import Testing

@testable import NMQualityControl

/// The engine's side of dose-calibrator QA: what a measurement is taken for, read from a real
/// journal (docs/qc.md, "Dose calibrator QA").
@Suite struct QCDosecalEngineTests {
    typealias Settings = DaemonConfiguration.QualityControl

    /// Cs-137 7.4 MBq (2020-01-01), also read on the Tc-99m setting at 1.10 per becquerel,
    /// between 06:00 and 10:00.
    static var cesiumOnTc: Settings.CheckSource {
        var reading = Settings.SettingReading(setting: "Tc-99m")
        reading.factor = 1.10
        reading.minutesOfDay = 360...600
        var source = cesium
        source.readings = [reading]
        return source
    }

    @Test func aCs137ReadingOnTheTc99mSettingIsConstancyAndNeverTheSyringe() async throws {
        let f = try QCFixture()
        // 2026-11-29 07:00: the source is 6 310 533 Bq; on the Tc-99m setting 6 941 587 Bq. 7.0 MBq: +0.84 %.
        try await f.measure("dosecal-1", "Tc-99m", 7.0e6, at: "2026-11-29T07:00:00Z")
        let syringe = try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-11-29T08:00:00Z")
        try await f.measure("dosecal-1", "Tc-99m", 7.0e6, at: "2026-11-29T08:20:00Z")  // the source again, after the syringe
        try await f.measure("dosecal-1", "Tc-99m", 7.0e6, at: "2026-11-29T08:35:00Z")  // and after the injection: not the residual
        let residual = try await f.measure("dosecal-1", "Tc-99m", 20e6, at: "2026-11-29T08:40:00Z")
        try await f.measure("dosecal-1", "Tc-99m", 7.0e6, at: "2026-11-29T14:00:00Z")  // outside 06:00–10:00: a patient dose
        try await f.store(at: "2026-11-29T11:40:00Z", pharma: tcMDP)
        try await f.stable(at: "2026-11-29T11:41:00Z")
        let qc = try await f.judgeAll(qcSettings([Self.cesiumOnTc]))
        #expect(qc.map(\.kind) == [
            "qc.dosecal.constancy", "qc.dosecal.constancy", "qc.dosecal.constancy",
            "qc.administration.reconciled", "qc.protocol.uptake_delay", "qc.protocol.energy_window",
        ])
        let first = qc[0].data
        #expect(first["result"] == .string("pass"))
        #expect(first["setting"] == .string("Tc-99m") && first["source_nuclide"] == .string("Cs-137") && first["nuclide"] == .string("Tc-99m"))
        #expect(first["expected_bq"]?.doubleValue == 6_941_587)
        #expect(first["deviation_pct"]?.doubleValue == 0.84)
        #expect(first["source_serial"] == .string("CS137-0042"))
        let reconciled = qc[3].data
        #expect(reconciled["measurement_seq"]?.intValue == syringe.seq, "\(qc[3].dataJSON)")
        #expect(reconciled["residual_seq"]?.intValue == residual.seq)
        #expect(reconciled["candidates"] == .int(1))
        #expect(reconciled["measured_bq"]?.doubleValue == 678_123_620)
        #expect(reconciled["result"] == .string("pass"))
    }

    @Test func mo99AssayPairsWithTheEluateInEitherOrder() async throws {
        let f = try QCFixture()
        let assay = try await f.measure("dosecal-1", "Mo-99", 1.0e6, at: "2026-11-30T06:58:00Z")
        let eluate = try await f.measure("dosecal-1", "Tc-99m", 20e9, at: "2026-11-30T07:00:00Z")
        try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-11-30T07:10:00Z")  // a patient dose, not a second eluate
        let eluate2 = try await f.measure("dosecal-1", "Tc-99m", 20e9, at: "2026-12-01T07:00:00Z")  // eluate first this time
        let assay2 = try await f.measure("dosecal-1", "Mo-99", 0.5e6, at: "2026-12-01T07:02:00Z")
        try await f.measure("dosecal-1", "Tc-99m", 700e6, at: "2026-12-01T07:20:00Z")  // the assay is taken already
        let qc = try await f.judgeAll(qcSettings()).filter { $0.kind == "qc.generator.mo99" }
        #expect(qc.count == 2)
        let first = qc[0].data
        #expect(first["mo99_seq"]?.intValue == assay.seq && first["tc99m_seq"]?.intValue == eluate.seq)
        #expect(first["ratio_kbq_per_mbq"]?.doubleValue == 0.04998)  // hand-computed in QCDosecalRulesTests
        #expect(first["ratio_at_expiry_kbq_per_mbq"]?.doubleValue == 0.17596)
        #expect(first["result"] == .string("expires_early") && qc[0].severity == .warning)
        let usable = try #require(first["usable_until"]?.stringValue.flatMap(Timestamp.parse))
        #expect(abs(usable.timeIntervalSince(QCFixture.at("2026-11-30T17:28:41.354Z"))) < 0.01)  // 10.478154 h after 07:00
        #expect(first["expiry_time"] == .string("2026-11-30T19:00:00.000000Z"))
        #expect(qc[0].data["source_seq"]?.intValue == eluate.seq)
        let second = qc[1].data
        #expect(second["mo99_seq"]?.intValue == assay2.seq && second["tc99m_seq"]?.intValue == eluate2.seq)
        #expect(second["result"] == .string("pass") && qc[1].data["source_seq"]?.intValue == assay2.seq)
        // The 0.5 MBq read 2 min after elution is 500 175 Bq at elution: 0.025009 kBq/MBq.
        #expect(second["ratio_kbq_per_mbq"]?.doubleValue == 0.02501)
    }

    /// A patient injected while a linearity test is open on the same calibrator: the vial's
    /// readings (far above any syringe, on the same Tc-99m setting) are QA, never the syringe.
    @Test func aLinearityVialIsNeverTheSyringe() async throws {
        let f = try QCFixture()
        try await f.journal.append(
            EventDraft(time: QCFixture.at("2026-11-29T06:59:00Z"), device: "dosecal-1", driver: "api", kind: "qc.dosecal.linearity_started",
                       data: ["nuclide": "Tc-99m", "by": "physicist"]))
        try await f.measure("dosecal-1", "Tc-99m", 30e9, at: "2026-11-29T07:00:00Z")  // the vial, first reading of the test
        let syringe = try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-11-29T08:00:00Z")
        // The vial again, decayed by 1 h 05 min (6.01 h half-life): between the syringe and the injection.
        try await f.measure("dosecal-1", "Tc-99m", 30e9 * exp(-M_LN2 * 65.0 / 60 / 6.0067), at: "2026-11-29T08:05:00Z")
        try await f.store(at: "2026-11-29T11:40:00Z", pharma: tcMDP)
        try await f.stable(at: "2026-11-29T11:41:00Z")
        let qc = try await f.judgeAll(qcSettings())
        let reconciled = try #require(qc.first { $0.kind == "qc.administration.reconciled" })
        #expect(reconciled.data["measurement_seq"]?.intValue == syringe.seq, "\(reconciled.dataJSON)")
        #expect(reconciled.data["result"] == .string("pass"), "\(reconciled.dataJSON)")
    }

    @Test func linearitySeriesBetweenTheMarkers() async throws {
        let f = try QCFixture()
        let start = try await f.journal.append(
            EventDraft(time: QCFixture.at("2026-03-02T07:59:00Z"), device: "dosecal-1", driver: "api", kind: "qc.dosecal.linearity_started",
                       data: ["nuclide": "Tc-99m", "by": "physicist"]))
        let t0 = QCFixture.at("2026-03-02T08:00:00Z")
        for (index, reading) in QCDosecalRulesTests.vial.enumerated() {
            try await f.measure("dosecal-1", "Tc-99m", reading.bq, at: Timestamp.format(t0.addingTimeInterval(reading.hours * 3600)))
            if index == 1 { try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-03-02T15:00:00Z") }  // a patient dose meanwhile
        }
        let finish = try await f.journal.append(
            EventDraft(time: QCFixture.at("2026-03-04T08:05:00Z"), device: "dosecal-1", driver: "api", kind: "qc.dosecal.linearity_finished",
                       data: ["by": "physicist"]))
        let qc = try await f.judgeAll(qcSettings()).filter { $0.kind == "qc.dosecal.linearity" }
        #expect(qc.count == 1)
        let data = try #require(qc.first?.data)
        #expect(data["result"] == .string("pass"), "\(qc[0].dataJSON)")
        #expect(data["source_seq"]?.intValue == finish.seq && data["started_seq"]?.intValue == start.seq)
        #expect(data["excluded"] == .int(1))
        #expect(data["max_deviation_pct"]?.doubleValue == 4.21)
        #expect(abs((data["fitted_start_bq"]?.doubleValue ?? 0) - 29_751_786_514) < 100)
        guard case .array(let points)? = data["readings"] else { Issue.record("no readings"); return }
        #expect(points.count == 5)
        #expect(points[1]["deviation_pct"]?.doubleValue == 2.85)
        #expect(data["local_date"] == .string("2026-03-04"))
    }

    @Test func accuracyAndDueTests() async throws {
        let f = try QCFixture()
        var settings = qcSettings([cesium])
        settings.referenceSources = [
            .init(nuclide: "Co-57", activityBq: 1.85e8, referenceDate: QCFixture.at("2026-01-01T00:00:00Z"), serial: "CO-7"),
            .init(nuclide: "Cs-137", activityBq: 9.25e6, referenceDate: QCFixture.at("2020-01-01T00:00:00Z"), serial: "CS-REF"),
        ]
        settings.dosecal.tracksDueDates = true
        try await f.measure("dosecal-1", "Cs-137", 6.3e6, at: "2026-04-11T07:00:00Z")  // the check source: constancy
        try await f.measure("dosecal-1", "Co-57", 1.43e8, at: "2026-04-11T07:10:00Z")  // 143 348 464 Bq expected at 00:00: pass
        try await f.measure("dosecal-1", "Cs-137", 7.9e6, at: "2026-04-11T07:20:00Z")  // closer to the 9.25 MBq reference: accuracy
        try await f.measure("dosecal-1", "Cs-137", 6.3e6, at: "2026-04-12T07:00:00Z")
        try await f.measure("dosecal-1", "Cs-137", 6.3e6, at: "2026-04-12T08:00:00Z")
        let qc = try await f.judgeAll(settings)
        #expect(qc.map(\.kind) == [
            "qc.dosecal.test_due", "qc.dosecal.test_due", "qc.dosecal.constancy", "qc.dosecal.accuracy", "qc.dosecal.accuracy",
            "qc.dosecal.test_due", "qc.dosecal.constancy", "qc.dosecal.constancy",
        ])
        #expect(qc[0].data["test"] == .string("accuracy") && qc[0].data["last_pass_date"] == nil)
        #expect(qc[1].data["test"] == .string("linearity"))
        #expect(qc[3].data["source_serial"] == .string("CO-7") && qc[3].data["result"] == .string("pass"))
        #expect(qc[4].data["source_serial"] == .string("CS-REF") && qc[4].data["result"] == .string("pass"), "\(qc[4].dataJSON)")
        // The next day only linearity is due: two sources passed accuracy yesterday.
        #expect(qc[5].data["test"] == .string("linearity") && qc[5].data["local_date"] == .string("2026-04-12"))
    }

    @Test func theReportShowsTheQASectionsAndSignatures() async throws {
        let f = try QCFixture()
        try await f.measure("dosecal-1", "Mo-99", 1.0e6, at: "2026-11-30T06:58:00Z")
        try await f.measure("dosecal-1", "Tc-99m", 20e9, at: "2026-11-30T07:00:00Z")
        try await f.journal.append(
            EventDraft(time: QCFixture.at("2026-11-30T06:00:00Z"), device: "dosecal-2", driver: "api", kind: "qc.dosecal.linearity_started", data: ["nuclide": "Tc-99m", "by": "p"]))
        let t0 = QCFixture.at("2026-11-30T06:10:00Z")
        for reading in QCDosecalRulesTests.vial.prefix(3) {
            try await f.measure("dosecal-2", "Tc-99m", reading.bq, at: Timestamp.format(t0.addingTimeInterval(reading.hours * 3600)))
        }
        try await f.journal.append(
            EventDraft(time: QCFixture.at("2026-11-30T19:00:00Z"), device: "dosecal-2", driver: "api", kind: "qc.dosecal.linearity_finished", data: ["by": "p"]))
        try await f.journal.append(
            EventDraft(time: QCFixture.at("2026-11-30T19:05:00Z"), driver: "api", kind: "qc.review.signed",
                       data: ["local_date": "2026-11-30", "signer": "<physicist>", "via": "unix", "uid": 1000]))
        var settings = qcSettings([cesium])
        settings.dosecal.linearityMinReadings = 3
        let qc = try await f.judgeAll(settings)
        // The vial's readings are QA, not patient doses: no constancy_missing on dosecal-2.
        #expect(qc.filter { $0.driver == "qc" }.map(\.kind) == ["qc.generator.mo99", "qc.dosecal.linearity"])
        let all = try await f.journal.events(EventQuery(limit: 10_000)).events
        let day = try #require(LocalDay("2026-11-30"))
        let report = QCReport(events: all, day: day, node: "n", generated: QCFixture.at("2026-11-30T20:00:00Z"), zone: TimeZone(identifier: "UTC")!)
        #expect(report.signatures.count == 1)
        #expect(!report.findings.contains { $0.kind == "qc.review.signed" })
        let text = report.text
        for expected in ["Mo-99 breakthrough", "EXPIRES EARLY", "0.0500", "0.1760", "Linearity dosecal-2: PASS", "signed by <physicist> (unix) at 19:05:00"] {
            #expect(text.contains(expected), "\(expected)\n\(text)")
        }
        let html = report.html
        #expect(html.contains("Signed by <b>&lt;physicist&gt;</b>"))
        #expect(html.contains("<h2>Mo-99 breakthrough</h2>") && html.contains("<h2>Linearity</h2>") && html.contains("linearity: measured (points)"))
    }

    @Test func theLinearityPlotDrawsEveryReading() throws {
        let start = QCFixture.at("2026-03-02T08:00:00Z")
        let readings = QCDosecalRulesTests.vial.enumerated().map { (time: start.addingTimeInterval($0.element.hours * 3600), bq: $0.element.bq, seq: Int64($0.offset + 1)) }
        let fit = try #require(QCRules.linearity(readings, halfLifeSeconds: 6.0067 * 3600, tests: Settings.DosecalTests()))
        let points: [JSONValue] = fit.points.map { p in
            .object(["time": .string(Timestamp.format(p.time)), "measured_bq": .double(p.measuredBq), "expected_bq": .double(p.expectedBq), "deviation_pct": .double(p.deviationPct)])
        }
        let event = Event(
            seq: 9, journal: UUID(), time: start, node: "n", device: "dosecal-1", driver: "qc", kind: "qc.dosecal.linearity", severity: .info,
            dataJSON: JSONValue.object([
                "local_date": "2026-03-04", "source_seq": 8, "result": "pass", "readings": .array(points), "max_deviation_pct": 4.21,
                "investigate_pct": 5, "fail_pct": 10,
            ]).jsonText, raw: nil)
        let svg = LinearityChart(finding: try #require(QCFinding(event)), zone: TimeZone(identifier: "UTC")!).svg
        #expect(svg.components(separatedBy: "<circle").count - 1 == 5)
        #expect(svg.contains("<polyline class=\"trend-line\""))
        // 30 GBq down to 112 MBq: decades from 100 MBq to 100 GBq.
        #expect(svg.contains("100.00 MBq") && svg.contains("100.00 GBq"))
        #expect(svg.components(separatedBy: "class=\"point pass\"").count - 1 == 5, "every reading within ±5 %")
    }
}
