import Foundation
import NMBridgeCore
import Testing

@testable import NMQualityControl

/// Hand-computed cases: the expected numbers were worked out with A = A0 · 2^(−Δt/T½)
/// outside this code (half-lives of Radionuclide.known, a year of 365.2422 days).
@Suite struct QCRulesTests {
    typealias Settings = DaemonConfiguration.QualityControl
    let utc = TimeZone(identifier: "UTC")!
    let berlin = TimeZone(identifier: "Europe/Berlin")!

    func at(_ text: String) -> Date { Timestamp.parse(text)! }

    func source(_ nuclide: String = "Cs-137", _ bq: Double = 7.4e6, _ date: String = "2020-01-01T00:00:00Z") -> Settings.CheckSource {
        .init(device: "dosecal-1", nuclide: nuclide, referenceBq: bq, referenceDate: at(date), serial: "S1")
    }

    @Test func constancyDecaysTheReferenceOverYears() throws {
        // Cs-137 7.4 MBq on 2020-01-01; 2192 days later: 7.4e6 · 2^(−2192 / (30.08 · 365.2422)) = 6 444 227 Bq.
        let settings = Settings(cursorFile: "")
        let check = try #require(QCRules.constancy(measuredBq: 6.60e6, at: at("2026-01-01T00:00:00Z"), sources: [source()], settings: settings))
        #expect(abs(check.expectedBq - 6_444_227) < 1)
        #expect(abs(check.deviationPct - 2.4170) < 0.001)  // (6.60 − 6.444227) / 6.444227
        #expect(check.result == "pass")
    }

    @Test func constancyDecaysCo57OverDays() throws {
        // Co-57 185 MBq, 100 days later: 185e6 · 2^(−100 / 271.74) = 143 348 464 Bq.
        let settings = Settings(cursorFile: "")
        let check = try #require(
            QCRules.constancy(
                measuredBq: 1.30e8, at: at("2026-04-11T00:00:00Z"), sources: [source("Co-57", 1.85e8, "2026-01-01T00:00:00Z")], settings: settings))
        #expect(abs(check.expectedBq - 143_348_464) < 1)
        #expect(abs(check.deviationPct - (-9.3118)) < 0.001)
        #expect(check.result == "investigate")  // beyond ±5 %, within ±10 %
    }

    @Test func constancyLimitsAreInclusive() throws {
        var settings = Settings(cursorFile: "")
        settings.investigatePct = 5
        settings.failPct = 10
        let reference = source("Cs-137", 1e7, "2026-01-01T00:00:00Z")
        let now = at("2026-01-01T00:00:00Z")  // no decay
        func result(_ measured: Double) -> String? { QCRules.constancy(measuredBq: measured, at: now, sources: [reference], settings: settings)?.result }
        #expect(result(1.05e7) == "pass")
        #expect(result(0.95e7) == "pass")
        #expect(result(1.0501e7) == "investigate")
        #expect(result(1.10e7) == "investigate")
        #expect(result(0.8999e7) == "fail")
    }

    @Test func administeredActivityIsDecayCorrectedAndTheResidualSubtracted() {
        // Tc-99m: 740 MBq at 08:00, injected 08:30 → 740 · 2^(−0.5/6.0067) = 698.512 MBq;
        // residual 20 MBq at 08:40 → 20 · 2^(1/6/6.0067) = 20.388 MBq at 08:30; net 678.124 MBq.
        let result = QCRules.administered(
            headerBq: 700e6, injection: at("2026-11-29T08:30:00Z"), measuredBq: 740e6, measuredAt: at("2026-11-29T08:00:00Z"), residualBq: 20e6,
            residualAt: at("2026-11-29T08:40:00Z"), halfLifeSeconds: 6.0067 * 3600, tolerancePct: 10)
        #expect(abs(result.measuredBq - 678_123_620) < 1)
        #expect(abs(result.residualBq! - 20_388_375) < 1)
        #expect(abs(result.deviationPct - 3.2260) < 0.001)
        #expect(result.pass)
    }

    @Test func administeredActivityOverDays() {
        // I-131 capsule 3.7 GBq measured three days before the administration: 2855.42 MBq.
        let result = QCRules.administered(
            headerBq: 2.8e9, injection: at("2026-11-04T09:00:00Z"), measuredBq: 3.7e9, measuredAt: at("2026-11-01T09:00:00Z"), residualBq: nil,
            residualAt: nil, halfLifeSeconds: 8.0252 * 86_400, tolerancePct: 1)
        #expect(abs(result.measuredBq - 2_855_419_696) < 1)
        #expect(abs(result.deviationPct - (-1.9409)) < 0.001)
        #expect(!result.pass)
    }

    @Test func energyWindowEdges() {
        var rule = Settings.ProtocolRule.boneScan  // 140 keV, 15–20 %, centre ±2 %
        rule.photopeaksKeV = [140]
        func judge(_ lower: Double, _ upper: Double) -> String {
            QCRules.energyWindows([.init(name: "TC", lowerKeV: lower, upperKeV: upper)], against: rule)[0].result
        }
        #expect(judge(126, 154) == "pass")  // 20 %
        #expect(judge(129.5, 150.5) == "pass")  // 15 %
        #expect(judge(126.4, 154.6) == "pass")  // 20.14 %: rounded header values (slack 0.1 point)
        #expect(judge(125, 155) == "fail")  // 21.4 %
        #expect(judge(131, 149) == "fail")  // 12.9 %
        #expect(judge(130, 160) == "fail")  // centre 145: 3.6 % off
        #expect(judge(150, 180) == "missing")  // does not hold 140
        let scatter = QCRules.energyWindows(
            [.init(name: "SC", lowerKeV: 110, upperKeV: 125), .init(name: "TC", lowerKeV: 126, upperKeV: 154)], against: rule)
        #expect(scatter[0].window?.name == "TC")
        rule.photopeaksKeV = [171, 245]  // In-111: both peaks need a window
        let indium = QCRules.energyWindows([.init(name: "P1", lowerKeV: 154, upperKeV: 188)], against: rule)
        #expect(indium.map(\.result) == ["pass", "missing"])
    }

    @Test func protocolsMatchOnEveryGivenCriterion() {
        var thyroid = Settings.ProtocolRule(name: "thyroid")
        thyroid.descriptions = ["*thyroid*"]
        thyroid.modalities = ["NM"]
        let protocols = [thyroid, .boneScan]
        let bone = QCRules.SeriesFacts(modality: "NM", descriptions: ["WB Bone ANT"], agent: "Tc99m Medronate", nuclide: "Tc-99m")
        #expect(QCRules.matchingProtocol(bone, in: protocols)?.name == "tc99m-bone")
        let neck = QCRules.SeriesFacts(modality: "NM", descriptions: ["", "Thyroid scan"], agent: "Pertechnetate", nuclide: "Tc-99m")
        #expect(QCRules.matchingProtocol(neck, in: protocols)?.name == "thyroid")
        let pet = QCRules.SeriesFacts(modality: "PT", descriptions: ["WB"], agent: "FDG", nuclide: "F-18")
        #expect(QCRules.matchingProtocol(pet, in: protocols) == nil)
        let noAgent = QCRules.SeriesFacts(modality: "NM", descriptions: ["bone"], agent: nil, nuclide: "Tc-99m")
        #expect(QCRules.matchingProtocol(noAgent, in: protocols) == nil, "a criterion given must be met")
    }

    @Test func dicomDatesAndTimesInTheSiteZone() throws {
        #expect(DicomDateTime.instant(date: "20261129", time: "083000", zone: utc) == at("2026-11-29T08:30:00Z"))
        #expect(DicomDateTime.instant(date: "20261129", time: "0830", zone: berlin) == at("2026-11-29T07:30:00Z"))
        #expect(DicomDateTime.instant(date: "2026.11.29", time: "08:30:00.5", zone: utc) == at("2026-11-29T08:30:00.5Z"))
        #expect(DicomDateTime.instant(date: "20260701", time: "083000", zone: berlin) == at("2026-07-01T06:30:00Z"))  // CEST
        #expect(DicomDateTime.instant(date: "20261129", time: "083000", offset: "-0500", zone: berlin) == at("2026-11-29T13:30:00Z"))
        #expect(DicomDateTime.instant(dateTime: "20261129083000.25+0100", zone: utc) == at("2026-11-29T07:30:00.25Z"))
        #expect(DicomDateTime.instant(dateTime: "2026112908", zone: berlin) == at("2026-11-29T07:00:00Z"))
        for bad in ["", "2026", "20261329", "20260230", "2026112", "abcdefgh"] {
            #expect(DicomDateTime.instant(date: bad, time: "083000", zone: utc) == nil, "\(bad)")
        }
        for bad in ["", "8", "083", "250000", "086000", "083000.1234567", "08:30:xx"] {
            #expect(DicomDateTime.instant(date: "20261129", time: bad, zone: utc) == nil, "\(bad)")
        }
        for bad in ["20261129083000+01", "20261129083000+2500", "20261129", "x"] {
            #expect(DicomDateTime.instant(dateTime: bad, zone: utc) == nil, "\(bad)")
        }
    }

    @Test func daylightSavingTimeChangesTheWallClockNotTheDelay() throws {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST. Injected 01:30, imaged 04:30 on
        // the wall clock: 2 h later, not 3.
        let injection = try #require(DicomDateTime.instant(date: "20260329", time: "013000", zone: berlin))
        let acquisition = try #require(DicomDateTime.instant(date: "20260329", time: "043000", zone: berlin))
        #expect(acquisition.timeIntervalSince(injection) == 7200)
        // The site-local day: 23:30 UTC on 30 June is already 1 July in Berlin.
        #expect(LocalDay(containing: at("2026-06-30T23:30:00Z"), zone: berlin).description == "2026-07-01")
        #expect(LocalDay(containing: at("2026-06-30T23:30:00Z"), zone: berlin).start(in: berlin) == at("2026-06-30T22:00:00Z"))
    }
}
