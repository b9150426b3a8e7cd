import Foundation
import NMBridgeCore

/// The QC rules as pure functions of numbers and times (docs/qc.md). The engine finds
/// their inputs in the journal; tests check them by hand-computed cases.
public enum QCRules {
    public typealias Settings = DaemonConfiguration.QualityControl

    /// Nuclides whose measurement on a patient-dose calibrator is a check-source measurement.
    public static let checkSourceNuclides: Set<String> = ["Cs-137", "Co-57", "Ba-133"]

    // MARK: Constancy

    public struct Constancy: Sendable, Equatable {
        public var source: Settings.CheckSource
        public var expectedBq: Double
        public var deviationPct: Double
        public var result: String
    }

    /// The measurement compared with the source's reference decayed to `time`; among
    /// several sources of that nuclide on the calibrator, the one it is closest to.
    public static func constancy(measuredBq: Double, at time: Date, sources: [Settings.CheckSource], settings: Settings) -> Constancy? {
        let judged = sources.compactMap { source -> Constancy? in
            guard let nuclide = Radionuclide.named(source.nuclide) else { return nil }
            let expected = nuclide.decay(source.referenceBq, over: time.timeIntervalSince(source.referenceDate))
            let deviation = (measuredBq - expected) / expected * 100
            let result = abs(deviation) > settings.failPct ? "fail" : abs(deviation) > settings.investigatePct ? "investigate" : "pass"
            return Constancy(source: source, expectedBq: expected, deviationPct: deviation, result: result)
        }
        return judged.min { abs(log($0.expectedBq / measuredBq)) < abs(log($1.expectedBq / measuredBq)) }
    }

    // MARK: Reconciliation

    public struct Administered: Sendable, Equatable {
        /// Pre-injection activity decayed to the injection, minus the residual decayed back to it.
        public var measuredBq: Double
        public var residualBq: Double?
        public var deviationPct: Double
        public var pass: Bool
    }

    /// The header's total dose against the syringe measured at `measuredAt` (and a residual
    /// measured after the injection), both decay-corrected to `injection`.
    public static func administered(
        headerBq: Double, injection: Date, measuredBq: Double, measuredAt: Date, residualBq: Double?, residualAt: Date?,
        halfLifeSeconds: Double, tolerancePct: Double
    ) -> Administered {
        let lambda = M_LN2 / halfLifeSeconds
        let atInjection = measuredBq * exp(-lambda * injection.timeIntervalSince(measuredAt))
        var residual: Double?
        if let residualBq, let residualAt {
            residual = residualBq * exp(lambda * residualAt.timeIntervalSince(injection))
        }
        let net = atInjection - (residual ?? 0)
        let deviation = (headerBq - net) / net * 100
        return Administered(measuredBq: net, residualBq: residual, deviationPct: deviation, pass: abs(deviation) <= tolerancePct)
    }

    // MARK: Protocols

    public struct SeriesFacts: Sendable {
        public var modality: String?
        public var descriptions: [String]
        public var agent: String?
        public var nuclide: String?
        /// The agents and nuclides of further radiopharmaceutical items (a dual-isotope study).
        public var otherAgents: [String] = []
        public var otherNuclides: [String] = []

        public init(modality: String?, descriptions: [String], agent: String?, nuclide: String?) {
            self.modality = modality
            self.descriptions = descriptions
            self.agent = agent
            self.nuclide = nuclide
        }
    }

    /// The first protocol whose every given criterion matches.
    public static func matchingProtocol(_ facts: SeriesFacts, in protocols: [Settings.ProtocolRule]) -> Settings.ProtocolRule? {
        func any(_ patterns: [String], _ values: [String]) -> Bool {
            patterns.isEmpty
                || patterns.contains { pattern in values.contains { Glob.matches(pattern: pattern.lowercased(), $0.lowercased()) } }
        }
        return protocols.first { rule in
            any(rule.modalities, facts.modality.map { [$0] } ?? [])
                && any(rule.descriptions, facts.descriptions)
                && any(rule.agents, (facts.agent.map { [$0] } ?? []) + facts.otherAgents)
                && (rule.nuclides.isEmpty || ([facts.nuclide].compactMap { $0 } + facts.otherNuclides).contains(where: rule.nuclides.contains))
        }
    }

    // MARK: Energy windows

    public struct EnergyWindow: Sendable, Equatable {
        public var name: String?
        public var lowerKeV: Double
        public var upperKeV: Double

        public init(name: String?, lowerKeV: Double, upperKeV: Double) {
            self.name = name
            self.lowerKeV = lowerKeV
            self.upperKeV = upperKeV
        }

        public var centerKeV: Double { (lowerKeV + upperKeV) / 2 }
        /// Width over centre, the percentage a camera is set to (a 20 % window on 140 keV is 126–154).
        public var widthPct: Double { (upperKeV - lowerKeV) / centerKeV * 100 }
    }

    public struct WindowJudgement: Sendable, Equatable {
        public var photopeakKeV: Double
        public var window: EnergyWindow?
        /// "pass", "fail" or "missing".
        public var result: String
    }

    /// Header values are decimal strings, often rounded to 0.1 keV: widths within this many
    /// percentage points of the limits pass.
    static let widthSlackPct = 0.1

    /// For each photopeak, the window holding it whose centre is closest to it, judged
    /// for width and centring.
    public static func energyWindows(_ windows: [EnergyWindow], against rule: Settings.ProtocolRule) -> [WindowJudgement] {
        rule.photopeaksKeV.map { peak in
            let holding = windows.filter { $0.lowerKeV <= peak && peak <= $0.upperKeV && $0.upperKeV > $0.lowerKeV }
            guard let window = holding.min(by: { abs($0.centerKeV - peak) < abs($1.centerKeV - peak) }) else {
                return WindowJudgement(photopeakKeV: peak, window: nil, result: "missing")
            }
            let width = window.widthPct
            let widthOK =
                width >= rule.windowWidthPct.lowerBound - widthSlackPct && width <= rule.windowWidthPct.upperBound + widthSlackPct
            let centred = abs(window.centerKeV - peak) / peak * 100 <= rule.windowCenterTolerancePct
            return WindowJudgement(photopeakKeV: peak, window: window, result: widthOK && centred ? "pass" : "fail")
        }
    }
}
