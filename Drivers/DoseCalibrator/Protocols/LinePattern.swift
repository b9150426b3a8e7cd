import Foundation
import NMBridgeCore

// Line-oriented calibrator output: the generic "printer port" driver and the Biodex
// Atomlab reply both turn one text line into a reading with a configured pattern.
//
// Pattern syntax: Swift Regex (PCRE-like), with named groups:
//   activity (required)  the number, e.g. `20.00`, `7.4E2`, `20,00` (comma decimal)
//   unit                 µCi uCi mCi Ci kBq MBq GBq (or a fixed `unit = "MBq"` key)
//   nuclide              any usual spelling (`Tc99m`, `99mTc`, `TC-99M`); or a fixed key
//   chamber              a number
//   time                 the device's time stamp, kept as text
// A line that does not match is a protocol error (rate-limited), never a guess.

/// A compiled line pattern with the fixed values that stand in for missing groups.
public struct LinePattern: @unchecked Sendable {
    // Regex<AnyRegexOutput> holds an immutable compiled program; it is only read.
    private let regex: Regex<AnyRegexOutput>
    public let source: String
    public let fixedUnit: ActivityUnit?
    public let fixedNuclide: String?

    public static let groupNames = ["activity", "unit", "nuclide", "chamber", "time"]

    /// "Tc99m   20.00 mCi", "F-18 370.0 MBq": nuclide, value, unit separated by blanks.
    public static let defaultPattern =
        #"^\s*(?<nuclide>[A-Za-z]{1,2}[- ]?\d{1,3}[mM]?|\d{1,3}[mM]?[A-Za-z]{1,2})\s+(?<activity>[-+]?\d+(?:[.,]\d*)?(?:[eE][-+]?\d+)?)\s*(?<unit>[uµμ]Ci|[mM][cC][iI]|Ci|[kMG]?Bq)\s*$"#

    /// Compiles `source`; the error says what is wrong in terms of the configuration.
    public init(_ source: String, fixedUnit: ActivityUnit? = nil, fixedNuclide: String? = nil) throws(NMBridgeError) {
        let regex: Regex<AnyRegexOutput>
        do {
            regex = try Regex(source)
        } catch {
            throw NMBridgeError(.invalidConfiguration, "not a valid pattern: \(error)")
        }
        let names = Self.captureNames(in: source)
        guard names.contains("activity") else {
            throw NMBridgeError(.invalidConfiguration, "the pattern needs a named group (?<activity>…)")
        }
        guard names.contains("unit") || fixedUnit != nil else {
            throw NMBridgeError(.invalidConfiguration, "the pattern has no (?<unit>…) group and no fixed unit is configured")
        }
        guard names.contains("nuclide") || fixedNuclide != nil else {
            throw NMBridgeError(.invalidConfiguration, "the pattern has no (?<nuclide>…) group and no fixed nuclide is configured")
        }
        let unknown = names.subtracting(Self.groupNames)
        guard unknown.isEmpty else {
            throw NMBridgeError(
                .invalidConfiguration,
                "unknown group name(s) \(unknown.sorted().joined(separator: ", ")); use \(Self.groupNames.joined(separator: ", "))")
        }
        self.regex = regex
        self.source = source
        self.fixedUnit = fixedUnit
        self.fixedNuclide = fixedNuclide
    }

    /// Decodes one line (without its line end); `raw` is what is kept as provenance.
    public func decode(_ line: [UInt8], raw: [UInt8]? = nil, final: Bool) -> DecodedMessage {
        let raw = raw ?? line
        guard let text = String(validating: line, as: UTF8.self) else {
            return .violation(ProtocolViolation("line is not UTF-8 text", bytes: raw))
        }
        if text.allSatisfy(\.isWhitespace) { return .noReading(raw: raw) }
        guard let match = try? regex.wholeMatch(in: text) else {
            return .violation(ProtocolViolation("line does not match the configured pattern", bytes: raw))
        }
        func group(_ name: String) -> String? {
            match.output[name]?.substring.map { String($0).trimmingCharacters(in: .whitespaces) }
        }
        guard let valueText = group("activity"), let value = Self.number(valueText) else {
            return .violation(ProtocolViolation("activity is not a number", bytes: raw))
        }
        let unit: ActivityUnit
        if let unitText = group("unit") {
            guard let parsed = ActivityUnit(text: unitText) else {
                return .violation(ProtocolViolation("unknown unit \"\(unitText)\"", bytes: raw))
            }
            unit = parsed
        } else if let fixedUnit {
            unit = fixedUnit
        } else {
            return .violation(ProtocolViolation("no unit in the line", bytes: raw))
        }
        guard let nuclideText = group("nuclide") ?? fixedNuclide, !nuclideText.isEmpty else {
            return .violation(ProtocolViolation("no nuclide in the line", bytes: raw))
        }
        var chamber: Int?
        if let chamberText = group("chamber") {
            guard let number = Int(chamberText), (0...99).contains(number) else {
                return .violation(ProtocolViolation("chamber \"\(chamberText)\" is not a number", bytes: raw))
            }
            chamber = number
        }
        if let violation = plausibility(value, unit: unit, raw: raw) { return .violation(violation) }
        return .reading(
            ActivityReading(
                nuclideText: nuclideText, value: value, valueText: valueText, unit: unit, chamber: chamber,
                deviceTime: group("time"), final: final, raw: raw))
    }

    /// The names of `(?<name>…)` groups (not the lookbehinds `(?<=` and `(?<!`).
    static func captureNames(in source: String) -> Set<String> {
        var names: Set<String> = []
        var rest = Substring(source)
        while let open = rest.range(of: "(?<") {
            rest = rest[open.upperBound...]
            guard let first = rest.first, first.isLetter || first == "_", let close = rest.firstIndex(of: ">") else { continue }
            names.insert(String(rest[..<close]))
        }
        return names
    }

    /// `20.00`, `20,00`, `7.4E2`; nil for anything else (including "inf" and "nan").
    static func number(_ text: String) -> Double? {
        var t = text
        if !t.contains("."), t.filter({ $0 == "," }).count == 1 { t = t.replacingOccurrences(of: ",", with: ".") }
        guard t.allSatisfy({ $0.isASCII && ($0.isNumber || "+-.eE".contains($0)) }) else { return nil }
        return Double(t)
    }
}
