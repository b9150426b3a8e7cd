import Foundation
import Logging
import NMBridgeCore
import NMCatalog
import NMJournal
import TestSupport
import Testing

@testable import NMQualityControl

/// A journal in a temporary directory with helpers that append what the drivers would.
final class QCFixture: Sendable {
    let directory: String
    let journal: Journal
    let logger = Logger(label: "qc-test")

    init(_ name: String = #function) throws {
        directory = try makeTemporaryDirectory("qc", name)
        journal = try Journal.open(JournalOptions(path: directory + "/journal.db", node: "qc-node", registry: .standard, sync: .normal), logger: logger)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func reopened() throws -> Journal {
        try Journal.open(JournalOptions(path: directory + "/journal.db", node: "qc-node", registry: .standard, sync: .normal), logger: logger)
    }

    static func at(_ text: String) -> Date { Timestamp.parse(text)! }

    @discardableResult
    func measure(_ device: String, _ nuclide: String, _ bq: Double, at time: String, in journal: Journal? = nil) async throws -> Event {
        try await (journal ?? self.journal).append(
            EventDraft(
                time: Self.at(time), device: device, driver: "capintec-crc15r", kind: "dosecal.measurement",
                data: ["nuclide": .string(nuclide), "activity_bq": .double(bq), "reading": .string("\(bq / 1e6) MBq"), "unit": .string("MBq")]))
    }

    /// A stored NM instance as the DICOM receiver journals it.
    @discardableResult
    func store(
        study: String = "1.2.3.4", series: String = "1.2.3.4.1", sop: String = UUID().uuidString, at time: String, pharma: [String: JSONValue]?,
        acquisition: (String, String)? = ("20261129", "113000"), windows: [(String, Double, Double)] = [("TC", 126, 154)],
        modality: String = "NM", description: String = "WB Bone", extra: [String: JSONValue] = [:], in journal: Journal? = nil
    ) async throws -> Event {
        var data: [String: JSONValue] = [
            "sop_instance_uid": .string(sop), "series_uid": .string(series), "study_uid": .string(study), "modality": .string(modality),
            "patient_id": .string("P-1"), "series_description": .string(description), "transfer_syntax": .string("1.2.840.10008.1.2.1"),
            "bytes": .int(1000), "sha256": .string("00"), "path": .string("/x"), "calling_ae": .string("CONSOLE"), "peer": .string("127.0.0.1"),
        ]
        if let (date, tm) = acquisition {
            data["acquisition_date"] = .string(date)
            data["acquisition_time"] = .string(tm)
        }
        if let pharma { data["radiopharmaceutical"] = .object(pharma) }
        data.merge(extra) { _, new in new }
        if !windows.isEmpty {
            data["energy_windows"] = .array(
                windows.map { .object(["name": .string($0.0), "lower_kev": .double($0.1), "upper_kev": .double($0.2)]) })
        }
        return try await (journal ?? self.journal).append(
            EventDraft(time: Self.at(time), device: "spect-1", driver: "dicom", kind: "dicom.instance.stored", data: data))
    }

    /// The receiver's `dicom.study.stable`: the study is judged at this event.
    @discardableResult
    func stable(_ study: String = "1.2.3.4", at time: String, in journal: Journal? = nil) async throws -> Event {
        try await (journal ?? self.journal).append(
            EventDraft(
                time: Self.at(time), device: "spect-1", driver: "dicom", kind: "dicom.study.stable",
                data: [
                    "study_uid": .string(study), "series": 1, "instances": 1, "bytes": 1000, "modalities": .array(["NM"]),
                    "first_instance": .string(time), "last_instance": .string(time),
                ]))
    }

    /// Judges every input event in journal order, appending the findings as the service does.
    func judgeAll(_ settings: DaemonConfiguration.QualityControl, zone: TimeZone = TimeZone(identifier: "UTC")!) async throws -> [Event] {
        var engine = QCEngine(settings: settings, zone: zone, journal: journal)
        let inputs = try await journal.events(EventQuery(filter: EventFilter(kinds: QCEngine.inputKinds), limit: 100_000)).events
        for event in inputs {
            let drafts = try await engine.judge(event)
            if !drafts.isEmpty { try await journal.append(drafts) }
        }
        return try await qcEvents()
    }

    func qcEvents(in journal: Journal? = nil) async throws -> [Event] {
        try await (journal ?? self.journal).events(EventQuery(filter: EventFilter(kinds: ["qc.*"]), limit: 100_000)).events
    }
}

let tcMDP: [String: JSONValue] = [
    "agent": .string("Tc99m MDP"), "nuclide": .string("Tc-99m"), "total_dose_header": .double(700), "total_dose_bq": .double(700e6),
    "total_dose_unit_rule": .string("NM Isotope module: MBq"), "start_time": .string("083000"),
]

func qcSettings(_ sources: [DaemonConfiguration.QualityControl.CheckSource] = [], cursor: String = "/nonexistent") -> DaemonConfiguration.QualityControl {
    var settings = DaemonConfiguration.QualityControl(cursorFile: cursor)
    settings.checkSources = sources
    return settings
}

let cesium = DaemonConfiguration.QualityControl.CheckSource(
    device: "dosecal-1", nuclide: "Cs-137", referenceBq: 7.4e6, referenceDate: QCFixture.at("2020-01-01T00:00:00Z"), serial: "CS137-0042")

@Suite struct QCEngineTests {
    @Test func constancyThenPatientDosesThroughTheDay() async throws {
        let f = try QCFixture()
        try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-01-01T06:30:00Z")  // before the check: missed
        try await f.measure("dosecal-1", "Cs-137", 6.60e6, at: "2026-01-01T07:00:00Z")  // +2.42 %: pass
        try await f.measure("dosecal-1", "Tc-99m", 700e6, at: "2026-01-01T08:00:00Z")  // fine
        try await f.measure("dosecal-1", "Tc-99m", 700e6, at: "2026-01-02T08:00:00Z")  // next day, no check: missed
        try await f.measure("dosecal-1", "Cs-137", 7.20e6, at: "2026-01-03T07:00:00Z")  // +11.7 %: fail
        try await f.measure("dosecal-1", "Tc-99m", 700e6, at: "2026-01-03T08:00:00Z")  // only a failed check: missed
        try await f.measure("dosecal-2", "F-18", 400e6, at: "2026-01-03T08:00:00Z")  // no source configured: missed
        try await f.measure("dosecal-2", "Co-57", 1e8, at: "2026-01-03T08:05:00Z")  // a check source it has no reference for: nothing
        let qc = try await f.judgeAll(qcSettings([cesium]))
        #expect(qc.map(\.kind) == [
            "qc.dosecal.constancy_missing", "qc.dosecal.constancy", "qc.dosecal.constancy_missing", "qc.dosecal.constancy",
            "qc.dosecal.constancy_missing", "qc.dosecal.constancy_missing",
        ])
        #expect(qc.map { $0.data["source_seq"]?.intValue } == [1, 2, 4, 5, 6, 7])
        let pass = qc[1].data
        #expect(pass["result"] == .string("pass"))
        // 2192 days and 7 hours after the reference: 7.4e6 · 2^(−2192.2917 / (30.08 · 365.2422)) = 6 444 109 Bq.
        #expect(pass["expected_bq"]?.doubleValue == 6_444_109)
        #expect(pass["deviation_pct"]?.doubleValue == 2.42)
        #expect(pass["source_serial"] == .string("CS137-0042"))
        #expect(qc[1].severity == .info && qc[1].device == "dosecal-1" && qc[1].time == QCFixture.at("2026-01-01T07:00:00Z"))
        #expect(qc[3].data["result"] == .string("fail") && qc[3].severity == .error)
        #expect(qc[4].data["last_result"] == .string("fail"))
        #expect(qc[4].data["reason"]?.stringValue?.contains("did not pass") == true)
        #expect(qc[5].device == "dosecal-2")
        #expect(qc[5].data["reason"]?.stringValue?.contains("no [[qc.check_source]] is configured for dosecal-2") == true)
        #expect(qc[2].data["local_date"] == .string("2026-01-02"))
    }

    @Test func theDayIsTheSitesDay() async throws {
        // 21:30 UTC on 30 June is 23:30 in Berlin; 22:30 UTC is already 1 July there.
        let source = DaemonConfiguration.QualityControl.CheckSource(
            device: "dosecal-1", nuclide: "Cs-137", referenceBq: 6.6e6, referenceDate: QCFixture.at("2026-06-30T00:00:00Z"), serial: "S")
        for (zone, missed) in [("UTC", false), ("Europe/Berlin", true)] {
            let f = try QCFixture("\(#function)\(zone.filter(\.isLetter))")
            try await f.measure("dosecal-1", "Cs-137", 6.6e6, at: "2026-06-30T21:30:00Z")
            try await f.measure("dosecal-1", "Tc-99m", 700e6, at: "2026-06-30T22:30:00Z")
            let qc = try await f.judgeAll(qcSettings([source]), zone: TimeZone(identifier: zone)!)
            #expect(qc.contains { $0.kind == "qc.dosecal.constancy_missing" } == missed, "\(zone)")
            #expect(qc.last?.data["local_date"] == .string(zone == "UTC" ? "2026-06-30" : "2026-07-01"))
        }
    }

    @Test func reconciliationUptakeAndEnergyWindowForAStudyOfOneSeries() async throws {
        let f = try QCFixture()
        try await f.measure("dosecal-1", "Tc-99m", 500e6, at: "2026-11-29T06:00:00Z")  // 150 min before: outside the window
        let early = try await f.measure("dosecal-1", "Tc-99m", 600e6, at: "2026-11-29T06:31:00Z")  // inside, not the latest
        let syringe = try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-11-29T08:00:00Z")
        try await f.measure("dosecal-1", "F-18", 300e6, at: "2026-11-29T08:10:00Z")  // other nuclide
        let residual = try await f.measure("dosecal-1", "Tc-99m", 20e6, at: "2026-11-29T08:40:00Z")
        try await f.store(at: "2026-11-29T11:40:00Z", pharma: tcMDP)
        try await f.store(at: "2026-11-29T11:40:01Z", pharma: tcMDP)  // same series: judged once
        let first = try await f.stable(at: "2026-11-29T11:41:01Z")
        let qc = try await f.judgeAll(qcSettings())
        #expect(qc.map(\.kind) == ["qc.dosecal.constancy_missing", "qc.dosecal.constancy_missing", "qc.dosecal.constancy_missing",
            "qc.dosecal.constancy_missing", "qc.dosecal.constancy_missing",
            "qc.administration.reconciled", "qc.protocol.uptake_delay", "qc.protocol.energy_window"])
        let series = qc.filter { $0.data["source_seq"]?.intValue == first.seq }
        #expect(series.count == 3)
        let reconciled = series[0]
        #expect(reconciled.data["result"] == .string("pass"), "\(reconciled.dataJSON)")
        #expect(reconciled.device == "dosecal-1")
        #expect(reconciled.data["measurement_seq"]?.intValue == syringe.seq)
        #expect(reconciled.data["residual_seq"]?.intValue == residual.seq)
        #expect(reconciled.data["measured_bq"]?.doubleValue == 678_123_620)
        #expect(reconciled.data["deviation_pct"]?.doubleValue == 3.23)
        #expect(reconciled.data["candidates"] == .int(2), "the 06:31 one (\(early.seq)) and the syringe")
        #expect(reconciled.data["injection_time"] == .string("2026-11-29T08:30:00.000000Z"))
        #expect(reconciled.data["patient_id"] == .string("P-1"))
        let uptake = series[1]
        #expect(uptake.data["result"] == .string("pass"))
        #expect(uptake.data["delay_min"]?.doubleValue == 180)
        #expect(uptake.data["protocol"] == .string("tc99m-bone"))
        let window = series[2]
        #expect(window.data["result"] == .string("pass"), "\(window.dataJSON)")
        #expect(window.data["windows"]?.jsonText.contains("\"width_pct\":20") == true)
    }

    @Test func theReconciliationWindowEdgeIsInclusive() async throws {
        for (measuredAt, found) in [("2026-11-29T06:30:00Z", true), ("2026-11-29T06:29:59Z", false)] {
            let f = try QCFixture("\(#function)\(found)")
            try await f.measure("dosecal-1", "Tc-99m", 740e6, at: measuredAt)
            try await f.store(at: "2026-11-29T11:40:00Z", pharma: tcMDP)
            try await f.stable(at: "2026-11-29T11:41:00Z")
            let reconciled = try #require(try await f.judgeAll(qcSettings()).first { $0.kind == "qc.administration.reconciled" })
            #expect((reconciled.data["result"] != .string("no_measurement")) == found, "\(measuredAt): \(reconciled.dataJSON)")
        }
    }

    @Test func badOrMissingHeaderValuesAreFindingsNotCrashes() async throws {
        let f = try QCFixture()
        try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-11-29T08:00:00Z")
        var suspect = tcMDP
        suspect["total_dose_header"] = .double(740_000_000)
        suspect["total_dose_bq"] = .double(7.4e14)
        suspect["total_dose_suspect"] = .string("740000000 MBq is implausible for a patient dose; the header may hold Bq")
        try await f.store(study: "1.1", series: "1.1", at: "2026-11-29T11:00:00Z", pharma: suspect)
        try await f.store(study: "1.2", series: "1.2", at: "2026-11-29T11:00:01Z", pharma: nil, windows: [])
        var noTime = tcMDP
        noTime["start_time"] = nil
        try await f.store(study: "1.3", series: "1.3", at: "2026-11-29T11:00:02Z", pharma: noTime, windows: [("TC", 131, 149)])
        var garbage = tcMDP
        garbage["start_time"] = .string("8h30")
        garbage["total_dose_bq"] = .string("lots")
        try await f.store(study: "1.4", series: "1.4", at: "2026-11-29T11:00:03Z", pharma: garbage, acquisition: ("2026", "x"))
        var unknown = tcMDP
        unknown["nuclide"] = nil
        try await f.store(study: "1.5", series: "1.5", at: "2026-11-29T11:00:04Z", pharma: unknown)
        try await f.store(study: "1.6", series: "1.6", at: "2026-11-29T11:00:05Z", pharma: tcMDP, modality: "CT")  // not NM/PT: nothing
        for study in ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6"] { try await f.stable(study, at: "2026-11-29T11:02:00Z") }
        let qc = try await f.judgeAll(qcSettings())
        func results(_ series: String, _ kind: String) -> String? {
            qc.first { $0.data["series_uid"] == .string(series) && $0.kind == kind }?.data["result"]?.stringValue
        }
        #expect(results("1.1", "qc.administration.reconciled") == "implausible_header")
        #expect(results("1.2", "qc.administration.reconciled") == "no_header_dose")
        #expect(results("1.2", "qc.protocol.uptake_delay") == nil, "no agent, so no protocol matches")
        #expect(results("1.3", "qc.administration.reconciled") == "no_injection_time")
        #expect(results("1.3", "qc.protocol.uptake_delay") == "unknown")
        #expect(results("1.3", "qc.protocol.energy_window") == "fail")
        #expect(results("1.4", "qc.administration.reconciled") == "no_header_dose")
        #expect(results("1.4", "qc.protocol.uptake_delay") == "unknown")
        #expect(results("1.5", "qc.administration.reconciled") == "no_nuclide")
        #expect(!qc.contains { $0.data["series_uid"] == .string("1.6") })
        let implausible = try #require(qc.first { $0.data["series_uid"] == .string("1.1") })
        #expect(implausible.severity == .notice)
        #expect(implausible.data["finding"]?.stringValue?.contains("740000000") == true)
    }

    @Test func anInjectionBeforeMidnightForAnAcquisitionAfterIt() async throws {
        let f = try QCFixture()
        var late = tcMDP
        late["start_time"] = .string("233000")
        try await f.measure("dosecal-1", "Tc-99m", 740e6, at: "2026-11-29T23:10:00Z")
        try await f.store(at: "2026-11-30T02:10:00Z", pharma: late, acquisition: ("20261130", "020000"))
        try await f.stable(at: "2026-11-30T02:11:00Z")
        let qc = try await f.judgeAll(qcSettings())
        let uptake = try #require(qc.first { $0.kind == "qc.protocol.uptake_delay" })
        #expect(uptake.data["delay_min"]?.doubleValue == 150)
        #expect(uptake.data["injection_time"] == .string("2026-11-29T23:30:00.000000Z"))
        #expect(qc.first { $0.kind == "qc.administration.reconciled" }?.data["result"] == .string("pass"))
    }
}
