import Foundation
import NMBridgeCore
import Testing

@testable import NMQualityControl

/// The study-level rules by hand-computed cases (docs/qc.md, "Protocol parameters").
@Suite struct QCProtocolRulesTests {
    typealias Rule = DaemonConfiguration.QualityControl.ProtocolRule
    typealias Candidate = QCRules.SeriesCandidate

    func at(_ minutes: Double) -> Date { Date(timeIntervalSince1970: 1_800_000_000 + minutes * 60) }

    @Test func thePrimaryIsTheEarliestPreferredSeriesOfTheFirstPeriod() {
        // Arrival order reversed: statics (not preferred) first, the sweep last.
        let candidates = [
            Candidate(batch: 0, acquisition: at(330), order: 1, preferred: false),
            Candidate(batch: 0, acquisition: at(200), order: 2, preferred: false),
            Candidate(batch: 0, acquisition: at(180), order: 3, preferred: true),
            Candidate(batch: 0, acquisition: at(190), order: 4, preferred: true),  // a second sweep: supplementary
        ]
        let plan = QCRules.studyPlan(candidates, judging: 0)
        #expect(plan.primary == 2 && !plan.fallback && plan.replaced == nil)
        #expect(plan.judgedNow == [2, 3, 1, 0], "in acquisition order")
    }

    @Test func aLaterPeriodKeepsThePrimaryUnlessItWasAFallback() {
        var candidates = [
            Candidate(batch: 0, acquisition: at(200), order: 1, preferred: false),
            Candidate(batch: 1, acquisition: at(180), order: 2, preferred: true),
            Candidate(batch: 2, acquisition: at(170), order: 3, preferred: true),
        ]
        #expect(QCRules.studyPlan(candidates, judging: 0) == .init(primary: 0, fallback: true, replaced: nil, judgedNow: [0]))
        #expect(QCRules.studyPlan(candidates, judging: 1) == .init(primary: 1, fallback: false, replaced: 0, judgedNow: [1]))
        // Once a preferred primary is judged, an earlier-acquired sweep sent later does not replace it.
        #expect(QCRules.studyPlan(candidates, judging: 2) == .init(primary: 1, fallback: false, replaced: nil, judgedNow: [2]))
        // A period with no series of its own judges nothing.
        candidates.removeLast()
        #expect(QCRules.studyPlan(candidates, judging: 2).judgedNow.isEmpty)
        #expect(QCRules.studyPlan([], judging: 0).primary == nil)
    }

    @Test func aSeriesWithoutAcquisitionTimeSortsLast() {
        let candidates = [
            Candidate(batch: 0, acquisition: nil, order: 1, preferred: false),
            Candidate(batch: 0, acquisition: at(10), order: 2, preferred: false),
        ]
        #expect(QCRules.studyPlan(candidates, judging: 0).primary == 1)
    }

    @Test func fixedActivityLimitsAreInclusive() {
        var rule = Rule(name: "bone")
        rule.activityMinMBq = 300
        rule.activityMaxMBq = 740
        #expect(QCRules.activity(bq: 740e6, weightKg: nil, rule: rule).result == "pass")
        #expect(QCRules.activity(bq: 300e6, weightKg: nil, rule: rule).result == "pass")
        #expect(QCRules.activity(bq: 740.1e6, weightKg: nil, rule: rule).result == "too_high")
        #expect(QCRules.activity(bq: 299.9e6, weightKg: nil, rule: rule).result == "too_low")
        // A weight changes nothing without MBq/kg.
        #expect(QCRules.activity(bq: 500e6, weightKg: 120, rule: rule) == .init(lowBq: 300e6, highBq: 740e6, expectedBq: nil, result: "pass"))
    }

    @Test func weightBasedActivityIsClampedToTheLimits() {
        var rule = Rule(name: "bone")
        rule.activityMinMBq = 300
        rule.activityMaxMBq = 740
        rule.activityMBqPerKg = 9.3
        rule.activityTolerancePct = 10
        // 60 kg × 9.3 = 558 MBq; ±10 % = 502.2–613.8 MBq.
        let normal = QCRules.activity(bq: 620e6, weightKg: 60, rule: rule)
        #expect(normal.expectedBq! == 558e6 && abs(normal.lowBq! - 502.2e6) < 1 && abs(normal.highBq! - 613.8e6) < 1)
        #expect(normal.result == "too_high")
        // 25 kg × 9.3 = 232.5 MBq → clamped up to 300; band 300 (never below the minimum) … 330.
        let light = QCRules.activity(bq: 290e6, weightKg: 25, rule: rule)
        #expect(light.expectedBq == 300e6 && light.lowBq == 300e6 && abs(light.highBq! - 330e6) < 1 && light.result == "too_low")
        // 100 kg × 9.3 = 930 → 740; band 666–740 (never above the maximum).
        let heavy = QCRules.activity(bq: 740e6, weightKg: 100, rule: rule)
        #expect(heavy.expectedBq == 740e6 && abs(heavy.lowBq! - 666e6) < 1 && heavy.highBq == 740e6 && heavy.result == "pass")
        // No weight in the header: the fixed limits.
        #expect(QCRules.activity(bq: 620e6, weightKg: nil, rule: rule).result == "pass")
        // MBq/kg alone and no weight: nothing to compare with.
        var perKgOnly = Rule(name: "peds")
        perKgOnly.activityMBqPerKg = 9.3
        #expect(QCRules.activity(bq: 200e6, weightKg: nil, rule: perKgOnly).result == "unknown")
        // 20 kg × 9.3 = 186 ± 10 % = 167.4–204.6 MBq.
        #expect(QCRules.activity(bq: 200e6, weightKg: 20, rule: perKgOnly).result == "pass")
        #expect(QCRules.activity(bq: 205e6, weightKg: 20, rule: perKgOnly).result == "too_high")
    }

    @Test func scanSpeedInCentimetresPerMinute() {
        // Scan Velocity is mm/s: 1 mm/s = 60 mm/min = 6 cm/min.
        #expect(QCRules.cmPerMinute(mmPerSecond: 2.5) == 15)
        #expect(QCRules.cmPerMinute(mmPerSecond: 1.5) == 9)
        #expect(QCRules.scanSpeed(cmPerMin: 15, limits: 10...15) == "pass")
        #expect(QCRules.scanSpeed(cmPerMin: 10, limits: 10...15) == "pass")
        #expect(QCRules.scanSpeed(cmPerMin: QCRules.cmPerMinute(mmPerSecond: 2.6), limits: 10...15) == "too_fast")  // 15.6
        #expect(QCRules.scanSpeed(cmPerMin: 9, limits: 10...15) == "too_slow")
    }

    @Test func collimatorNamesMatchCaseInsensitiveGlobs() {
        #expect(QCRules.collimator(["LEHR"], patterns: ["LEHR*"]) == "pass")
        #expect(QCRules.collimator(["lehrs", "LEHR"], patterns: ["LEHR*"]) == "pass")
        #expect(QCRules.collimator(["LEHR", "MEGP"], patterns: ["LEHR*"]) == "fail", "every detector must match")
        #expect(QCRules.collimator(["LEAP"], patterns: ["LEHR*", "LEUHR*"]) == "fail")
        #expect(QCRules.collimator([], patterns: ["LEHR*"]) == "unknown")
    }

    @Test func viewKindsFromImageType() {
        #expect(QCRules.viewKind(imageType: ["ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"], modality: "NM") == "whole body")
        #expect(QCRules.viewKind(imageType: ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"], modality: "NM") == "static")
        #expect(QCRules.viewKind(imageType: ["DERIVED", "SECONDARY", "RECON TOMO", "EMISSION"], modality: "NM") == "SPECT")
        #expect(QCRules.viewKind(imageType: ["ORIGINAL", "PRIMARY", "GATED TOMO", "EMISSION"], modality: "NM") == "gated SPECT")
        #expect(QCRules.viewKind(imageType: [], modality: "PT") == "PET")
        #expect(QCRules.viewKind(imageType: [], modality: "NM") == "series")
    }
}
