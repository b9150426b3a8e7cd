import Foundation
import NMBridgeCore

// The dose-calibrator tests beyond constancy as pure functions (docs/qc.md, "Dose calibrator
// QA"): check-source readings on another setting, accuracy, linearity by the decay method and
// the Mo-99 breakthrough of a Tc-99m eluate. The engine finds their inputs
// (QCEngine+Dosecal.swift); QCDosecalRulesTests checks them by hand-computed cases.
extension QCRules {
    /// Judges a deviation against investigate/fail limits (inclusive).
    static func result(deviationPct: Double, investigatePct: Double, failPct: Double) -> String {
        abs(deviationPct) > failPct ? "fail" : abs(deviationPct) > investigatePct ? "investigate" : "pass"
    }

    // MARK: Check sources on another setting

    /// A check-source reading recognized on a setting that is not the source's own nuclide.
    public struct SettingCheck: Sendable, Equatable {
        public var source: Settings.CheckSource
        public var reading: Settings.SettingReading
        /// What the source should read on that setting at the measurement time.
        public var expectedBq: Double
        public var deviationPct: Double
        public var result: String
    }

    /// Whether a reading on `setting` (the nuclide the instrument reported, or its calibration
    /// number) is one of the calibrator's check sources: the setting is configured for a source,
    /// the time lies in its window, and the reading lies within the band around the expected
    /// reading. Among several, the closest expectation wins.
    public static func settingCheck(
        setting: String, calibrationNumber: String?, measuredBq: Double, at time: Date, minuteOfDay: Int,
        sources: [Settings.CheckSource], settings: Settings
    ) -> SettingCheck? {
        var found: [SettingCheck] = []
        for source in sources {
            guard let nuclide = Radionuclide.named(source.nuclide) else { continue }
            let sourceBq = nuclide.decay(source.referenceBq, over: time.timeIntervalSince(source.referenceDate))
            for reading in source.readings where reading.setting == setting || (calibrationNumber != nil && reading.setting == calibrationNumber) {
                if let window = reading.minutesOfDay, !window.contains(minuteOfDay) { continue }
                guard let expected = reading.expectedReading(sourceBq: sourceBq, at: time, halfLifeSeconds: nuclide.halfLifeSeconds), expected > 0
                else { continue }
                let deviation = (measuredBq - expected) / expected * 100
                guard abs(deviation) <= reading.bandPct else { continue }
                found.append(
                    SettingCheck(
                        source: source, reading: reading, expectedBq: expected, deviationPct: deviation,
                        result: result(deviationPct: deviation, investigatePct: settings.investigatePct, failPct: settings.failPct)))
            }
        }
        return found.min { abs($0.deviationPct) < abs($1.deviationPct) }
    }

    // MARK: Accuracy

    public struct Accuracy: Sendable, Equatable {
        public var source: Settings.ReferenceSource
        public var expectedBq: Double
        public var deviationPct: Double
        public var result: String
    }

    /// A reading of a certified reference source on its own setting against its certificate
    /// decayed to `time`; among several sources of that nuclide, the one it is closest to.
    public static func accuracy(measuredBq: Double, at time: Date, sources: [Settings.ReferenceSource], tests: Settings.DosecalTests) -> Accuracy? {
        let judged = sources.compactMap { source -> Accuracy? in
            guard let nuclide = Radionuclide.named(source.nuclide) else { return nil }
            let expected = nuclide.decay(source.activityBq, over: time.timeIntervalSince(source.referenceDate))
            let deviation = (measuredBq - expected) / expected * 100
            return Accuracy(
                source: source, expectedBq: expected, deviationPct: deviation,
                result: result(deviationPct: deviation, investigatePct: tests.accuracyInvestigatePct, failPct: tests.accuracyFailPct))
        }
        return judged.min { abs(log($0.expectedBq / measuredBq)) < abs(log($1.expectedBq / measuredBq)) }
    }

    // MARK: Linearity (decay method)

    public struct LinearityPoint: Sendable, Equatable {
        public var time: Date
        public var measuredBq: Double
        public var expectedBq: Double
        public var deviationPct: Double
        /// The journal event of the reading (0 in pure tests).
        public var seq: Int64
    }

    public struct Linearity: Sendable, Equatable {
        public var points: [LinearityPoint]
        /// The fitted activity at the first reading.
        public var fittedStartBq: Double
        /// The largest |deviation| of any reading.
        public var maxDeviationPct: Double
        /// Highest over lowest reading.
        public var span: Double
        /// "pass", "investigate", "fail", or "incomplete" (fewer than the minimum readings).
        public var result: String
    }

    /// The readings of one vial that follow its decay: the first reading is the anchor; later
    /// readings within ± `bandPct` of the anchor decayed to their time are kept (patient doses
    /// measured on the same setting meanwhile fall outside the band).
    public static func linearitySeries(_ readings: [(time: Date, bq: Double, seq: Int64)], halfLifeSeconds: Double, bandPct: Double)
        -> [(time: Date, bq: Double, seq: Int64)]
    {
        guard let anchor = readings.first else { return [] }
        return readings.filter { reading in
            let expected = anchor.bq * exp(-M_LN2 * reading.time.timeIntervalSince(anchor.time) / halfLifeSeconds)
            return abs(reading.bq - expected) / expected * 100 <= bandPct
        }
    }

    /// Fits the decay A(t) = A0 · exp(−λ (t − t0)) with λ fixed by the half-life and A0 chosen
    /// by least squares in logarithms (ln A0 is the mean of ln mᵢ + λ (tᵢ − t0): each reading
    /// weighs the same whatever its activity), then judges each reading's deviation from it.
    public static func linearity(
        _ readings: [(time: Date, bq: Double, seq: Int64)], halfLifeSeconds: Double, tests: Settings.DosecalTests
    ) -> Linearity? {
        let readings = readings.filter { $0.bq > 0 }
        guard let first = readings.first else { return nil }
        let lambda = M_LN2 / halfLifeSeconds
        let logA0 = readings.map { log($0.bq) + lambda * $0.time.timeIntervalSince(first.time) }.reduce(0, +) / Double(readings.count)
        let a0 = exp(logA0)
        let points = readings.map { reading in
            let expected = a0 * exp(-lambda * reading.time.timeIntervalSince(first.time))
            return LinearityPoint(
                time: reading.time, measuredBq: reading.bq, expectedBq: expected, deviationPct: (reading.bq - expected) / expected * 100, seq: reading.seq)
        }
        let worst = points.map { abs($0.deviationPct) }.max() ?? 0
        let values = readings.map(\.bq)
        let span = (values.max() ?? 1) / (values.min() ?? 1)
        let judged =
            readings.count < tests.linearityMinReadings
            ? "incomplete" : result(deviationPct: worst, investigatePct: tests.linearityInvestigatePct, failPct: tests.linearityFailPct)
        return Linearity(points: points, fittedStartBq: a0, maxDeviationPct: worst, span: span, result: judged)
    }

    // MARK: Mo-99 breakthrough

    public struct Breakthrough: Sendable, Equatable {
        /// kBq Mo-99 per MBq Tc-99m at the eluate's Tc-99m reading (elution).
        public var ratioAtElution: Double
        /// The same projected to the eluate's expiry.
        public var ratioAtExpiry: Double
        /// Hours after elution at which the ratio reaches the limit (0 if it already does).
        public var hoursToLimit: Double
        public var mo99Bq: Double
        /// "pass" (within the limit until expiry), "expires_early" (within it at elution, not
        /// at expiry: usable for `hoursToLimit`), "fail" (beyond it at elution).
        public var result: String
    }

    /// The Mo-99 assay (already corrected by the canister factor) and the eluate's Tc-99m reading,
    /// both taken to the Tc-99m reading's time, and the ratio's growth as Tc-99m decays faster:
    /// r(t) = r0 · exp((λTc − λMo) · t).
    public static func breakthrough(
        mo99Bq: Double, mo99At: Date, tc99mBq: Double, tc99mAt: Date, shelfLifeHours: Double, limitKBqPerMBq: Double
    ) -> Breakthrough? {
        guard let mo = Radionuclide.named("Mo-99"), let tc = Radionuclide.named("Tc-99m"), tc99mBq > 0, mo99Bq >= 0 else { return nil }
        let moAtElution = mo.decay(mo99Bq, over: tc99mAt.timeIntervalSince(mo99At))
        let ratio0 = (moAtElution / 1e3) / (tc99mBq / 1e6)
        let growthPerHour = M_LN2 / (tc.halfLifeSeconds / 3600) - M_LN2 / (mo.halfLifeSeconds / 3600)
        let atExpiry = ratio0 * exp(growthPerHour * shelfLifeHours)
        let hours = ratio0 <= 0 ? Double.infinity : max(0, log(limitKBqPerMBq / ratio0) / growthPerHour)
        let judged = ratio0 > limitKBqPerMBq ? "fail" : atExpiry > limitKBqPerMBq ? "expires_early" : "pass"
        return Breakthrough(ratioAtElution: ratio0, ratioAtExpiry: atExpiry, hoursToLimit: hours, mo99Bq: moAtElution, result: judged)
    }
}
