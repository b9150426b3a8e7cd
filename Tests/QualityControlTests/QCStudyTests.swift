import Foundation
import NMBridgeCore
import NMJournal
import Testing

@testable import NMQualityControl

/// Study-level judging: a bone scan's whole-body sweep is the primary, later views are
/// supplementary, whatever order they arrive in (docs/qc.md, "Studies").
@Suite struct QCStudyTests {
    /// One series of the lung-cancer patient's bone scan: injected 08:30 UTC.
    struct View {
        var series: String
        var time: String  // acquisition HHMMSS on 2026-11-29
        var imageType: [String]
        var description: String
        var views: [String] = []
    }

    static let boneStudy = [
        View(series: "9.1", time: "113000", imageType: ["ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"], description: "WB ANT/POST"),  // 3 h
        View(series: "9.2", time: "115000", imageType: ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"], description: "Humerus rotated", views: ["anterior"]),  // 3 h 20
        View(series: "9.3", time: "121000", imageType: ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"], description: "SPECT humerus"),  // 3 h 40
        View(series: "9.4", time: "140000", imageType: ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"], description: "Humerus late", views: ["left lateral"]),  // 5 h 30
    ]

    func store(_ f: QCFixture, _ view: View, at time: String, study: String = "9") async throws {
        var extra: [String: JSONValue] = ["image_type": .array(view.imageType.map(JSONValue.string))]
        if !view.views.isEmpty { extra["view_codes"] = .array(view.views.map { .object(["meaning": .string($0)]) }) }
        try await f.store(
            study: study, series: view.series, at: time, pharma: tcMDP, acquisition: ("20261129", view.time), description: view.description, extra: extra)
    }

    /// What a finding says, without where it sits in the journal.
    static func essence(_ events: [Event]) -> [String] {
        events.map { e in
            var data = e.data
            for key in ["source_seq", "instance_seq", "primary_instance_seq"] { data[key] = nil }
            return e.kind + " " + JSONValue.object(data).jsonText
        }.sorted()
    }

    @Test func staticsAndSPECTAfterTheSweepAreSupplementaryViewsInEitherOrder() async throws {
        var results: [[String]] = []
        for order in [Self.boneStudy, Array(Self.boneStudy.reversed())] {
            let f = try QCFixture("\(#function)\(results.count)")
            for (index, view) in order.enumerated() { try await store(f, view, at: "2026-11-29T14:1\(index):00Z") }
            try await f.stable("9", at: "2026-11-29T14:15:00Z")
            let qc = try await f.judgeAll(qcSettings())
            let uptake = qc.filter { $0.kind == "qc.protocol.uptake_delay" }
            #expect(uptake.count == 1)
            #expect(uptake.first?.data["series_uid"] == .string("9.1") && uptake.first?.data["result"] == .string("pass"))
            #expect(uptake.first?.data["delay_min"]?.doubleValue == 180 && uptake.first?.data["role"] == .string("primary"))
            #expect(qc.filter { $0.kind == "qc.administration.reconciled" }.count == 1, "reconciled once per study")
            let views = qc.filter { $0.kind == "qc.protocol.supplementary_view" }
            #expect(views.map { $0.data["series_uid"]?.stringValue } == ["9.2", "9.3", "9.4"], "in acquisition order")
            #expect(views.map { $0.data["delay_min"]?.doubleValue } == [200, 220, 330])
            #expect(views.map { $0.data["after_primary_min"]?.doubleValue } == [20, 40, 150])
            #expect(views.map { $0.data["view"]?.stringValue } == ["static", "SPECT", "static"])
            #expect(views.allSatisfy { $0.data["primary_series_uid"] == .string("9.1") && $0.severity == .info })
            #expect(views.last?.data["finding"]?.stringValue?.contains("static view \"Humerus late\" (left lateral), acquired 5 h 30 min after injection, 2 h 30 min after the primary") == true)
            #expect(!qc.contains { $0.data["result"] == .string("too_late") })
            // Each acquisition's own energy window is still checked.
            #expect(qc.filter { $0.kind == "qc.protocol.energy_window" }.count == 4)
            results.append(Self.essence(qc))
        }
        #expect(results[0] == results[1], "the reverse order gives the same findings")
    }

    @Test func theReportShowsTheStudyAsOneUnit() async throws {
        let f = try QCFixture()
        for (index, view) in Self.boneStudy.reversed().enumerated() { try await store(f, view, at: "2026-11-29T14:1\(index):00Z") }
        try await f.stable("9", at: "2026-11-29T14:15:00Z")
        let qc = try await f.judgeAll(qcSettings())
        let utc = TimeZone(identifier: "UTC")!
        let report = QCReport(events: qc, day: LocalDay("2026-11-29")!, node: "qc-node", generated: QCFixture.at("2026-11-29T17:00:00Z"), zone: utc)
        let text = report.text
        let headings = text.split(separator: "\n").filter { $0.hasPrefix("    Primary:") || $0.hasPrefix("    Supplementary view:") }.map(String.init)
        #expect(headings == [
            "    Primary: Series 9.1 \"WB ANT/POST\" NM Tc99m MDP whole body, acquired 11:30:00",
            "    Supplementary view: Series 9.2 \"Humerus rotated\" NM Tc99m MDP static, acquired 11:50:00, 3 h 20 min p.i., 20 min after the primary",
            "    Supplementary view: Series 9.3 \"SPECT humerus\" NM Tc99m MDP SPECT, acquired 12:10:00, 3 h 40 min p.i., 40 min after the primary",
            "    Supplementary view: Series 9.4 \"Humerus late\" NM Tc99m MDP static, acquired 14:00:00, 5 h 30 min p.i., 2 h 30 min after the primary",
        ], "\(text)")
        #expect(text.contains("3 supplementary views"), "\(text)")
        #expect(text.contains("supplementary view  SUPPLEMENTARY"), "\(text)")
        let rows = try parseCSV(report.csv)
        let role = try #require(QCReport.csvColumns.firstIndex(of: "role"))
        let primary = try #require(QCReport.csvColumns.firstIndex(of: "primary_series_uid"))
        let views = rows.filter { $0.count == QCReport.csvColumns.count && $0[2] == "qc.protocol.supplementary_view" }
        #expect(views.count == 3 && views.allSatisfy { $0[role] == "supplementary" && $0[primary] == "9.1" })
        #expect(rows.contains { $0.count == QCReport.csvColumns.count && $0[2] == "qc.protocol.uptake_delay" && $0[role] == "primary" })
        #expect(report.html.contains("Supplementary view: Series 9.4 &quot;Humerus late&quot;"))
    }

    @Test func viewsSentHoursApartAreJudgedAsTheyCome() async throws {
        // Each series sent after it was acquired: the study is stable four times.
        let f = try QCFixture()
        for (index, (view, sent)) in zip(Self.boneStudy, ["11:35", "11:55", "12:15", "14:05"]).enumerated() {
            try await store(f, view, at: "2026-11-29T\(sent):00Z")
            try await f.stable("9", at: "2026-11-29T\(sent):\(10 + index)Z")
        }
        let qc = try await f.judgeAll(qcSettings())
        #expect(qc.filter { $0.kind == "qc.protocol.uptake_delay" }.map { $0.data["series_uid"]?.stringValue } == ["9.1"])
        #expect(qc.filter { $0.kind == "qc.protocol.supplementary_view" }.map { $0.data["series_uid"]?.stringValue } == ["9.2", "9.3", "9.4"])
    }

    @Test func aSweepSentAfterItsStudyWasJudgedReplacesAFallbackPrimary() async throws {
        // The static arrives alone and the study is judged on it (the first series); the
        // whole-body sweep, sent later, becomes the primary: its uptake is judged, the
        // static's earlier finding stays, and the replacement is named.
        let f = try QCFixture()
        try await store(f, Self.boneStudy[1], at: "2026-11-29T12:00:00Z")
        try await f.stable("9", at: "2026-11-29T12:01:00Z")
        try await store(f, Self.boneStudy[0], at: "2026-11-29T12:30:00Z")
        try await store(f, Self.boneStudy[3], at: "2026-11-29T14:05:00Z")
        try await f.stable("9", at: "2026-11-29T14:06:00Z")
        let qc = try await f.judgeAll(qcSettings())
        let uptake = qc.filter { $0.kind == "qc.protocol.uptake_delay" }
        #expect(uptake.map { $0.data["series_uid"]?.stringValue } == ["9.2", "9.1"])
        #expect(uptake.last?.data["replaces_primary_series_uid"] == .string("9.2"))
        #expect(qc.filter { $0.kind == "qc.protocol.supplementary_view" }.map { $0.data["series_uid"]?.stringValue } == ["9.4"])
    }

    @Test func judgingAStableEventAgainGivesTheSameFindings() async throws {
        let f = try QCFixture()
        try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-11-29T08:00:00Z")
        for (index, view) in Self.boneStudy.reversed().enumerated() { try await store(f, view, at: "2026-11-29T14:1\(index):00Z") }
        let stable = try await f.stable("9", at: "2026-11-29T14:15:00Z")
        let first = try await f.judgeAll(qcSettings())
        // A restarted engine (after a crash before its cursor was saved) judges it again.
        var engine = QCEngine(settings: qcSettings(), zone: TimeZone(identifier: "UTC")!, journal: f.journal)
        let again = try await engine.judge(stable)
        #expect(again.map { $0.kind + JSONValue.object($0.data).jsonText } == first.filter { $0.data["source_seq"]?.intValue == stable.seq }.map { $0.kind + $0.dataJSON })
    }

    @Test func aStudyWithoutAWholeBodyFallsBackToItsFirstAcquisition() async throws {
        let f = try QCFixture()
        try await store(f, Self.boneStudy[3], at: "2026-11-29T14:05:00Z")
        try await store(f, Self.boneStudy[2], at: "2026-11-29T14:06:00Z")
        try await f.stable("9", at: "2026-11-29T14:07:00Z")
        let qc = try await f.judgeAll(qcSettings())
        let uptake = try #require(qc.first { $0.kind == "qc.protocol.uptake_delay" })
        #expect(uptake.data["series_uid"] == .string("9.3") && uptake.data["delay_min"]?.doubleValue == 220)
        #expect(qc.filter { $0.kind == "qc.protocol.supplementary_view" }.map { $0.data["series_uid"]?.stringValue } == ["9.4"])
    }

    // MARK: Protocol parameters through the engine

    static func boneProtocol() -> DaemonConfiguration.QualityControl.ProtocolRule {
        var rule = DaemonConfiguration.QualityControl.ProtocolRule.boneScan
        rule.activityMinMBq = 300
        rule.activityMaxMBq = 740
        rule.activityMBqPerKg = 9.3
        rule.scanSpeedCmPerMin = 10...15
        rule.collimators = ["LEHR*", "LEUHR*"]
        return rule
    }

    @Test func activityScanSpeedAndCollimatorOfTheSweep() async throws {
        let f = try QCFixture()
        var settings = qcSettings()
        settings.protocols = [Self.boneProtocol()]
        // 70 kg × 9.3 MBq/kg = 651 MBq, ±10 % → 585.9–716.1 MBq; the header says 700 MBq: pass.
        // 2.0 mm/s = 12 cm/min: pass. Detectors LEHR and LEHR: pass.
        try await f.store(
            study: "7", series: "7.1", at: "2026-11-29T11:35:00Z", pharma: tcMDP,
            extra: [
                "image_type": .array(["ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"]), "patient_weight_kg": 70, "scan_velocity_mm_per_s": 2.0,
                "collimators": .array(["LEHR"]),
            ])
        // A 110 kg patient: 1023 MBq clamped to 740, band 666–740; 700 passes. 2.6 mm/s = 15.6 cm/min: too fast. MEGP: fail.
        try await f.store(
            study: "8", series: "8.1", at: "2026-11-29T11:36:00Z", pharma: tcMDP,
            extra: [
                "image_type": .array(["ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"]), "patient_weight_kg": 110, "scan_velocity_mm_per_s": 2.6,
                "collimators": .array(["MEGP"]),
            ])
        try await f.stable("7", at: "2026-11-29T11:37:00Z")
        try await f.stable("8", at: "2026-11-29T11:37:01Z")
        let qc = try await f.judgeAll(settings)
        func finding(_ study: String, _ kind: String) -> [String: JSONValue] {
            qc.first { $0.data["study_uid"] == .string(study) && $0.kind == kind }?.data ?? [:]
        }
        let a = finding("7", "qc.protocol.activity")
        #expect(a["result"] == .string("pass") && a["expected_bq"]?.doubleValue == 651e6, "\(a)")
        #expect(a["low_bq"]?.doubleValue == 585_900_000 && a["high_bq"]?.doubleValue == 716_100_000)
        let b = finding("8", "qc.protocol.activity")
        #expect(b["expected_bq"]?.doubleValue == 740e6 && b["low_bq"]?.doubleValue == 666e6 && b["high_bq"]?.doubleValue == 740e6, "\(b)")
        #expect(finding("7", "qc.protocol.scan_speed")["speed_cm_per_min"]?.doubleValue == 12)
        #expect(finding("7", "qc.protocol.scan_speed")["result"] == .string("pass"))
        #expect(finding("8", "qc.protocol.scan_speed")["result"] == .string("too_fast"))
        #expect(finding("7", "qc.protocol.collimator")["result"] == .string("pass"))
        #expect(finding("8", "qc.protocol.collimator")["result"] == .string("fail"))
        #expect(qc.first { $0.kind == "qc.protocol.collimator" && $0.data["result"] == .string("fail") }?.severity == .error)
    }

    @Test func aDualIsotopeStudyKeepsBothRadiopharmaceuticalsAndChecksEachWindow() async throws {
        let f = try QCFixture()
        var rule = DaemonConfiguration.QualityControl.ProtocolRule(name: "in111-tc99m")
        rule.nuclides = ["In-111"]
        rule.photopeaksByNuclide = ["Tc-99m": [140], "In-111": [171, 245]]
        var settings = qcSettings()
        settings.protocols = [rule]
        let indium: [String: JSONValue] = [
            "agent": "In-111 pentetreotide", "nuclide": "In-111", "total_dose_header": 185, "total_dose_bq": 185e6, "start_time": "083000",
        ]
        try await f.store(
            study: "5", series: "5.1", at: "2026-11-29T11:35:00Z", pharma: tcMDP,
            windows: [("TC", 126, 154), ("IN1", 154, 188), ("IN2", 220.5, 269.5)],
            extra: ["radiopharmaceuticals": .array([.object(tcMDP), .object(indium)])])
        try await f.stable("5", at: "2026-11-29T11:36:00Z")
        let qc = try await f.judgeAll(settings)
        let windows = qc.filter { $0.kind == "qc.protocol.energy_window" }
        #expect(windows.map { $0.data["nuclide"]?.stringValue } == ["Tc-99m", "In-111"])
        // Tc 126–154: 20 %; In 154–188 centred 171 (19.9 %), 220.5–269.5 centred 245 (20 %).
        #expect(windows.allSatisfy { $0.data["result"] == .string("pass") }, "\(windows.map(\.dataJSON))")
        let reconciled = qc.filter { $0.kind == "qc.administration.reconciled" }
        #expect(reconciled.map { $0.data["nuclide"]?.stringValue } == ["Tc-99m", "In-111"])
    }

    @Test func aPETSeriesWith511keVWindowPasses() async throws {
        let f = try QCFixture()
        var rule = DaemonConfiguration.QualityControl.ProtocolRule(name: "fdg-pet")
        rule.modalities = ["PT"]
        rule.photopeaksKeV = [511]
        rule.windowWidthPct = 30...50
        rule.windowCenterTolerancePct = 10
        var settings = qcSettings()
        settings.protocols = [rule]
        let fdg: [String: JSONValue] = ["agent": "Fluorodeoxyglucose", "nuclide": "F-18", "total_dose_bq": 250e6, "start_time": "100000"]
        // 425–650 keV: centre 537.5 (5.2 % above 511), width 41.9 %.
        try await f.store(study: "6", series: "6.1", at: "2026-11-29T11:35:00Z", pharma: fdg, windows: [], modality: "PT", extra: [
            "energy_windows": .array([.object(["lower_kev": 425, "upper_kev": 650])])
        ])
        try await f.stable("6", at: "2026-11-29T11:36:00Z")
        let qc = try await f.judgeAll(settings)
        let window = try #require(qc.first { $0.kind == "qc.protocol.energy_window" })
        #expect(window.data["result"] == .string("pass"), "\(window.dataJSON)")
        #expect(window.data["view"] == .string("PET"))
    }
}
