import Foundation
import NMBridgeCore

/// One step of a device script.
public enum ScriptStep: Sendable, Equatable {
    /// Sleep this many seconds (without a heartbeat: long waits make the device stale).
    case wait(Double)
    /// Journal an event of this kind with this data.
    case emit(kind: String, data: [String: JSONValue], raw: [UInt8]?)
    /// Report the link up or down.
    case link(up: Bool, reason: String)
    /// Tell the watchdog the device answered, without journaling anything.
    case heartbeat
    /// Throw: the driver crashes and the supervisor restarts it.
    case fail(String)
    /// Start again from the first step.
    case loop
}

/// A parsed script with the line of each step, for error messages.
public struct Script: Sendable, Equatable {
    public var steps: [ScriptStep]
    public var lines: [Int]
}

/// A problem in a script file, with its line.
public struct ScriptError: Error, Sendable, Equatable, CustomStringConvertible {
    public var source: String
    public var line: Int
    public var message: String
    public var description: String { "\(source):\(line): \(message)" }
}

/// Parses device scripts, a plain-text format in the spirit of NUT's dummy-ups `.seq` files.
///
/// One statement per line; `#` starts a comment:
///
///     link up "simulated instrument"
///     wait 2.5
///     emit dosecal.measurement {"nuclide": "Tc-99m", "activity_bq": 7.4e8, "reading": "20.00 mCi", "unit": "mCi"}
///     emit device.protocol_error {"error": "bad checksum"} raw 02410d03
///     heartbeat
///     fail "simulated firmware hang"
///     link down "cable pulled"
///     loop
///
/// Event kinds must be registered (docs/events.md) or `experimental.*`, and data must
/// carry each required field, so a script cannot journal what a real driver could not.
public enum ScriptParser {
    /// Scripts are operator files; anything longer is a mistake, not a script.
    public static let maxBytes = 1 << 20

    public static func parse(_ text: String, source: String, registry: EventKindRegistry) throws(ScriptError)
        -> Script
    {
        guard text.utf8.count <= maxBytes else {
            throw ScriptError(source: source, line: 1, message: "script is larger than \(maxBytes) bytes")
        }
        var steps: [ScriptStep] = []
        var lines: [Int] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let line = rawLine.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
            if line.isEmpty || line.hasPrefix("#") { continue }
            func fail(_ message: String) -> ScriptError { ScriptError(source: source, line: lineNumber, message: message) }
            let (word, rest) = splitWord(line)
            switch word {
            case "wait":
                guard let seconds = Double(rest), seconds.isFinite, seconds >= 0, seconds <= 86_400 else {
                    throw fail("wait needs a number of seconds between 0 and 86400, got \"\(rest)\"")
                }
                steps.append(.wait(seconds))
            case "emit":
                let (kind, afterKind) = splitWord(rest)
                guard !kind.isEmpty else { throw fail("emit needs an event kind") }
                guard registry.accepts(kind) else {
                    throw fail("event kind \"\(kind)\" is not registered (see docs/events.md; use experimental.* to try new kinds)")
                }
                var jsonText = afterKind
                var raw: [UInt8]?
                if let range = afterKind.range(of: " raw ", options: .backwards) {
                    let hex = afterKind[range.upperBound...].trimmingCharacters(in: .whitespaces)
                    guard let bytes = Hex.decode(hex) else { throw fail("raw must be hex bytes, got \"\(hex)\"") }
                    raw = bytes
                    jsonText = String(afterKind[..<range.lowerBound])
                }
                var data: [String: JSONValue] = [:]
                if !jsonText.trimmingCharacters(in: .whitespaces).isEmpty {
                    guard let value = try? JSONValue.parse(jsonText), let object = value.objectValue else {
                        throw fail("emit data must be one JSON object on the same line, got \(jsonText.prefix(80))")
                    }
                    data = object
                }
                if let problem = registry.problems(kind: kind, data: data).first { throw fail(problem) }
                steps.append(.emit(kind: kind, data: data, raw: raw))
            case "link":
                let (state, reason) = splitWord(rest)
                guard state == "up" || state == "down" else { throw fail("link needs \"up\" or \"down\", got \"\(state)\"") }
                steps.append(.link(up: state == "up", reason: unquote(reason).isEmpty ? "script" : unquote(reason)))
            case "heartbeat":
                steps.append(.heartbeat)
            case "fail":
                steps.append(.fail(unquote(rest).isEmpty ? "scripted failure" : unquote(rest)))
            case "loop":
                steps.append(.loop)
            default:
                throw fail("unknown statement \"\(word)\" (expected wait, emit, link, heartbeat, fail or loop)")
            }
            lines.append(lineNumber)
        }
        if steps.isEmpty { throw ScriptError(source: source, line: 1, message: "script has no statements") }
        if let loopIndex = steps.firstIndex(of: .loop) {
            if loopIndex + 1 < steps.count {
                throw ScriptError(source: source, line: lines[loopIndex + 1], message: "unreachable: statements after loop never run")
            }
            if !steps[..<loopIndex].contains(where: { if case .wait(let s) = $0 { s > 0 } else { false } }) {
                throw ScriptError(source: source, line: lines[loopIndex], message: "a looping script needs a wait > 0 before loop, or it would spin")
            }
        }
        return Script(steps: steps, lines: lines)
    }

    private static func splitWord(_ text: String) -> (String, String) {
        guard let space = text.firstIndex(where: { $0 == " " || $0 == "\t" }) else { return (text, "") }
        return (String(text[..<space]), text[space...].trimmingCharacters(in: .whitespaces))
    }

    private static func unquote(_ text: String) -> String {
        if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") { return String(text.dropFirst().dropLast()) }
        return text
    }
}
