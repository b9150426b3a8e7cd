import Foundation
import NMBridgeCore
import Testing

@testable import NMQualityControl

/// Hand-computed cases for the calibrator tests beyond constancy (docs/qc.md, "Dose calibrator
/// QA"). The numbers were worked out outside this code with A = A0 · 2^(−Δt/T½), Cs-137 30.08 y
/// (a year of 365.2422 d), Tc-99m 6.0067 h, Mo-99 65.924 h, Co-57 271.74 d.
@Suite struct QCDosecalRulesTests {
    typealias Settings = DaemonConfiguration.QualityControl
    func at(_ text: String) -> Date { Timestamp.parse(text)! }

    func cesium(readings: [Settings.SettingReading]) -> Settings.CheckSource {
        var source = Settings.CheckSource(device: "dosecal-1", nuclide: "Cs-137", referenceBq: 7.4e6, referenceDate: at("2020-01-01T00:00:00Z"), serial: "CS-1")
        source.readings = readings
        return source
    }

    @Test func mo99IsKnownWithItsHalfLife() throws {
        let mo = try #require(Radionuclide.named("MO99"))
        #expect(mo.name == "Mo-99" && mo.halfLifeSeconds == 65.924 * 3600)
        #expect(Radionuclide.named("99Mo")?.name == "Mo-99")
    }

    @Test func aCheckSourceOnTheTc99mSettingIsRecognizedByItsFactor() throws {
        // Cs-137 7.4 MBq on 2020-01-01 is 6 444 227 Bq on 2026-01-01; on the Tc-99m setting it
        // reads 1.10 times that: 7 088 650 Bq. 7.0 MBq is −1.2506 %.
        var reading = Settings.SettingReading(setting: "Tc-99m")
        reading.factor = 1.10
        let settings = Settings(cursorFile: "")
        let check = try #require(
            QCRules.settingCheck(
                setting: "Tc-99m", calibrationNumber: nil, measuredBq: 7.0e6, at: at("2026-01-01T00:00:00Z"), minuteOfDay: 0,
                sources: [cesium(readings: [reading])], settings: settings))
        #expect(abs(check.expectedBq - 7_088_650) < 1)
        #expect(abs(check.deviationPct - (-1.2506)) < 0.001)
        #expect(check.result == "pass")
        // Outside the ±25 % band (a patient dose of 740 MBq, or 9 MBq: +27 %): not the source.
        for other in [740e6, 9.0e6] {
            #expect(
                QCRules.settingCheck(
                    setting: "Tc-99m", calibrationNumber: nil, measuredBq: other, at: at("2026-01-01T00:00:00Z"), minuteOfDay: 0,
                    sources: [cesium(readings: [reading])], settings: settings) == nil)
        }
        // Another setting, or outside the time window: not the source either.
        #expect(
            QCRules.settingCheck(
                setting: "F-18", calibrationNumber: nil, measuredBq: 7.0e6, at: at("2026-01-01T00:00:00Z"), minuteOfDay: 0,
                sources: [cesium(readings: [reading])], settings: settings) == nil)
        reading.minutesOfDay = 360...600
        #expect(
            QCRules.settingCheck(
                setting: "Tc-99m", calibrationNumber: nil, measuredBq: 7.0e6, at: at("2026-01-01T00:00:00Z"), minuteOfDay: 14 * 60,
                sources: [cesium(readings: [reading])], settings: settings) == nil)
        #expect(
            QCRules.settingCheck(
                setting: "Tc-99m", calibrationNumber: nil, measuredBq: 7.0e6, at: at("2026-01-01T00:00:00Z"), minuteOfDay: 7 * 60,
                sources: [cesium(readings: [reading])], settings: settings) != nil)
    }

    @Test func aReferenceReadingOnTheSettingDecaysWithTheSource() throws {
        // 8.0 MBq read on the Tc-99m setting on 2025-01-01; 365 days later
        // 8.0e6 · 2^(−365 / (30.08 · 365.2422)) = 7 817 880 Bq; 7.9 MBq is +1.0504 %.
        var reading = Settings.SettingReading(setting: "Tc-99m")
        reading.referenceReadingBq = 8.0e6
        reading.referenceDate = at("2025-01-01T00:00:00Z")
        let check = try #require(
            QCRules.settingCheck(
                setting: "Tc-99m", calibrationNumber: nil, measuredBq: 7.9e6, at: at("2026-01-01T00:00:00Z"), minuteOfDay: 0,
                sources: [cesium(readings: [reading])], settings: Settings(cursorFile: "")))
        #expect(abs(check.expectedBq - 7_817_880) < 1)
        #expect(abs(check.deviationPct - 1.0504) < 0.001)
    }

    @Test func accuracyAgainstTheDecayedCertificate() throws {
        // Co-57 185 MBq certified 2026-01-01; 100 days later 143 348 464 Bq; 130 MBq is −9.3118 %:
        // investigate (beyond ±5 %, within ±10 %).
        let co57 = Settings.ReferenceSource(nuclide: "Co-57", activityBq: 1.85e8, referenceDate: at("2026-01-01T00:00:00Z"), serial: "CO-7")
        let tests = Settings.DosecalTests()
        let check = try #require(QCRules.accuracy(measuredBq: 1.30e8, at: at("2026-04-11T00:00:00Z"), sources: [co57], tests: tests))
        #expect(abs(check.expectedBq - 143_348_464) < 1)
        #expect(abs(check.deviationPct - (-9.3118)) < 0.001)
        #expect(check.result == "investigate")
        #expect(QCRules.accuracy(measuredBq: 1.43e8, at: at("2026-04-11T00:00:00Z"), sources: [co57], tests: tests)?.result == "pass")
        #expect(QCRules.accuracy(measuredBq: 1.25e8, at: at("2026-04-11T00:00:00Z"), sources: [co57], tests: tests)?.result == "fail")
    }

    /// A 30 GBq Tc-99m vial read at 0, 6, 12, 24 and 48 h, the readings off the true decay by
    /// the factors 1.00, 1.02, 0.99, 1.00, 0.95. The log fit puts A0 at 30 GBq times their
    /// geometric mean 0.991726 = 29.7518 GBq; each deviation is factor / 0.991726 − 1.
    static let vial: [(hours: Double, bq: Double)] = [
        (0, 30_000_000_000), (6, 15_311_833_784), (12, 7_436_490_174), (24, 1_880_807_608), (48, 112_018_847),
    ]

    @Test func linearityFitsTheDecayOverTwoDays() throws {
        let start = at("2026-03-02T08:00:00Z")
        let readings = Self.vial.enumerated().map { (time: start.addingTimeInterval($0.element.hours * 3600), bq: $0.element.bq, seq: Int64($0.offset + 1)) }
        let fit = try #require(QCRules.linearity(readings, halfLifeSeconds: 6.0067 * 3600, tests: Settings.DosecalTests()))
        #expect(abs(fit.fittedStartBq - 29_751_786_514) < 100)  // the readings above are rounded to 1 Bq
        let expected = [0.8343, 2.8510, -0.1741, 0.8343, -4.2074]
        for (point, deviation) in zip(fit.points, expected) {
            #expect(abs(point.deviationPct - deviation) < 0.001, "\(point)")
        }
        #expect(abs(fit.maxDeviationPct - 4.2074) < 0.001)
        #expect(fit.result == "pass")  // within ±5 %
        #expect(abs(fit.span - 30e9 / 112_018_847) < 0.01)
        var strict = Settings.DosecalTests()
        strict.linearityInvestigatePct = 2
        strict.linearityFailPct = 4
        #expect(QCRules.linearity(readings, halfLifeSeconds: 6.0067 * 3600, tests: strict)?.result == "fail")
        #expect(QCRules.linearity(Array(readings.prefix(3)), halfLifeSeconds: 6.0067 * 3600, tests: Settings.DosecalTests())?.result == "incomplete")
    }

    @Test func linearitySeriesLeavesOutReadingsOffTheVialsDecay() {
        let start = at("2026-03-02T08:00:00Z")
        var readings = Self.vial.enumerated().map { (time: start.addingTimeInterval($0.element.hours * 3600), bq: $0.element.bq, seq: Int64($0.offset + 1)) }
        readings.insert((time: start.addingTimeInterval(7 * 3600), bq: 740e6, seq: 99), at: 2)  // a patient dose that morning
        let series = QCRules.linearitySeries(readings, halfLifeSeconds: 6.0067 * 3600, bandPct: 20)
        #expect(series.map(\.seq) == [1, 2, 3, 4, 5])
    }

    @Test func mo99RatioAtElutionAndAtExpiry() throws {
        // 1.0 MBq Mo-99 read 2 min before 20 GBq Tc-99m: 999 649.6 Bq at elution, 0.049982 kBq/MBq;
        // the ratio grows by exp((ln2/6.0067 − ln2/65.924) · 12) = 3.520405 in 12 h: 0.175959,
        // over 0.15, which it reaches 10.478 h after elution.
        let elution = at("2026-11-30T07:00:00Z")
        let result = try #require(
            QCRules.breakthrough(
                mo99Bq: 1.0e6, mo99At: elution.addingTimeInterval(-120), tc99mBq: 20e9, tc99mAt: elution, shelfLifeHours: 12, limitKBqPerMBq: 0.15))
        #expect(abs(result.ratioAtElution - 0.0499825) < 1e-6)
        #expect(abs(result.ratioAtExpiry - 0.1759586) < 1e-6)
        #expect(abs(result.hoursToLimit - 10.4782) < 0.001)
        #expect(result.result == "expires_early")
        let half = try #require(
            QCRules.breakthrough(
                mo99Bq: 0.5e6, mo99At: elution.addingTimeInterval(-120), tc99mBq: 20e9, tc99mAt: elution, shelfLifeHours: 12, limitKBqPerMBq: 0.15))
        #expect(abs(half.ratioAtExpiry - 0.0879793) < 1e-6)
        #expect(half.result == "pass")
        let high = try #require(
            QCRules.breakthrough(
                mo99Bq: 4.0e6, mo99At: elution.addingTimeInterval(-120), tc99mBq: 20e9, tc99mAt: elution, shelfLifeHours: 12, limitKBqPerMBq: 0.15))
        #expect(abs(high.ratioAtElution - 0.1999299) < 1e-6)
        #expect(high.result == "fail" && high.hoursToLimit == 0)
    }
}
