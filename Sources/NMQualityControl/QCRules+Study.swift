import Foundation
import NMBridgeCore

/// The study-level rules (docs/qc.md, "Studies" and "Protocol parameters"): which series of
/// a study is its primary acquisition, and the protocol's parameter checks. Pure functions
/// of numbers, names and times, unit-tested by hand-computed cases.
extension QCRules {
    // MARK: Primary and supplementary views

    /// One NM/PT series of a study, as the planner needs it.
    public struct SeriesCandidate: Sendable, Equatable {
        /// Which `dicom.study.stable` period it arrived in (0: before the study's first).
        public var batch: Int
        /// Acquisition (else series, else study) date and time.
        public var acquisition: Date?
        /// Arrival order: the seq of its first stored instance.
        public var order: Int64
        /// Whether its Image Type names it a primary acquisition of its protocol.
        public var preferred: Bool

        public init(batch: Int, acquisition: Date?, order: Int64, preferred: Bool) {
            self.batch = batch
            self.acquisition = acquisition
            self.order = order
            self.preferred = preferred
        }
    }

    /// The roles of a study's series when the study becomes stable for the `batch`-th time.
    public struct StudyPlan: Sendable, Equatable {
        /// The primary acquisition (an index into the candidates), if the study has a series.
        public var primary: Int?
        /// Whether the primary is only the first acquired series (none is `preferred`).
        public var fallback: Bool
        /// A fallback primary of an earlier period that a preferred series of this period replaces.
        public var replaced: Int?
        /// The series judged now (those of the period), in acquisition order.
        public var judgedNow: [Int]
    }

    /// Chooses the primary period by period, as the study arrived: in the first period with
    /// series, the earliest acquired preferred series (a whole-body sweep for a bone scan),
    /// else the earliest acquired series (a fallback). A later period never changes the
    /// primary, except that a preferred series replaces a fallback. Every other series is a
    /// supplementary view. Arrival order within a period does not matter.
    public static func studyPlan(_ candidates: [SeriesCandidate], judging batch: Int) -> StudyPlan {
        var plan = StudyPlan(primary: nil, fallback: false, replaced: nil, judgedNow: [])
        guard batch >= 0 else { return plan }
        for period in 0...batch {
            let members = candidates.indices.filter { candidates[$0].batch == period }.sorted {
                let a = candidates[$0], b = candidates[$1]
                return (a.acquisition ?? .distantFuture, a.order) < (b.acquisition ?? .distantFuture, b.order)
            }
            plan.replaced = nil
            plan.judgedNow = members
            guard !members.isEmpty else { continue }
            let preferred = members.first { candidates[$0].preferred }
            if plan.primary == nil {
                plan.primary = preferred ?? members[0]
                plan.fallback = preferred == nil
            } else if plan.fallback, let preferred {
                plan.replaced = plan.primary
                plan.primary = preferred
                plan.fallback = false
            }
        }
        return plan
    }

    /// Whether Image Type values match any of `patterns` (case-insensitive globs).
    public static func imageTypeMatches(_ values: [String], _ patterns: [String]) -> Bool {
        patterns.contains { pattern in values.contains { Glob.matches(pattern: pattern.lowercased(), $0.lowercased()) } }
    }

    /// What kind of view a series is, from Image Type value 3 (PS3.3 NM Image module:
    /// STATIC, DYNAMIC, GATED, WHOLE BODY, TOMO, GATED TOMO, RECON TOMO, RECON GATED TOMO).
    public static func viewKind(imageType: [String], modality: String) -> String {
        if modality == "PT" { return "PET" }
        let set = Set(imageType.map { $0.uppercased() })
        if set.contains("WHOLE BODY") { return "whole body" }
        if set.contains("RECON GATED TOMO") || set.contains("GATED TOMO") { return "gated SPECT" }
        if set.contains("RECON TOMO") || set.contains("TOMO") { return "SPECT" }
        if set.contains("DYNAMIC") { return "dynamic" }
        if set.contains("GATED") { return "gated planar" }
        if set.contains("STATIC") { return "static" }
        return "series"
    }

    // MARK: Administered activity

    public struct ActivityJudgement: Sendable, Equatable {
        /// The lowest and highest activity that pass (Bq), when limited.
        public var lowBq: Double?
        public var highBq: Double?
        /// Weight × MBq/kg clamped to the protocol's limits, when weight-based.
        public var expectedBq: Double?
        /// "pass", "too_low", "too_high" or "unknown" (nothing to compare with).
        public var result: String
    }

    /// The header activity against the protocol: weight-based when the protocol gives
    /// MBq/kg and the header a weight (expected = weight × MBq/kg clamped to the limits,
    /// ± the tolerance, never outside the limits), else the limits. Limits inclusive.
    public static func activity(bq: Double, weightKg: Double?, rule: Settings.ProtocolRule) -> ActivityJudgement {
        let minimum = rule.activityMinMBq.map { $0 * 1e6 }
        let maximum = rule.activityMaxMBq.map { $0 * 1e6 }
        var judgement = ActivityJudgement(lowBq: minimum, highBq: maximum, expectedBq: nil, result: "unknown")
        if let perKg = rule.activityMBqPerKg, let weightKg, weightKg > 0 {
            var expected = weightKg * perKg * 1e6
            if let minimum { expected = max(expected, minimum) }
            if let maximum { expected = min(expected, maximum) }
            let tolerance = rule.activityTolerancePct / 100
            var low = expected * (1 - tolerance)
            var high = expected * (1 + tolerance)
            if let minimum { low = max(low, minimum) }
            if let maximum { high = min(high, maximum) }
            judgement = ActivityJudgement(lowBq: low, highBq: high, expectedBq: expected, result: "unknown")
        }
        guard judgement.lowBq != nil || judgement.highBq != nil else { return judgement }
        if let low = judgement.lowBq, bq < low {
            judgement.result = "too_low"
        } else if let high = judgement.highBq, bq > high {
            judgement.result = "too_high"
        } else {
            judgement.result = "pass"
        }
        return judgement
    }

    // MARK: Scan speed and collimator

    /// Scan Velocity (0018,1300, mm/s) in the cm/min a technologist sets: 1 mm/s = 6 cm/min.
    public static func cmPerMinute(mmPerSecond: Double) -> Double { mmPerSecond * 6 }

    /// "pass", "too_slow" or "too_fast"; limits inclusive.
    public static func scanSpeed(cmPerMin speed: Double, limits: ClosedRange<Double>) -> String {
        speed < limits.lowerBound ? "too_slow" : speed > limits.upperBound ? "too_fast" : "pass"
    }

    /// "pass" when every collimator name matches one of the patterns (case-insensitive
    /// globs), "fail" when one does not, "unknown" when the header names none.
    public static func collimator(_ names: [String], patterns: [String]) -> String {
        guard !names.isEmpty else { return "unknown" }
        let matches = names.allSatisfy { name in patterns.contains { Glob.matches(pattern: $0.lowercased(), name.lowercased()) } }
        return matches ? "pass" : "fail"
    }
}
