import Foundation
import NMBridgeCore

/// A timed session for the dose calibrator simulator, one step per line:
///
///     # comment
///     empty for 5s                      chamber empty (the device answers "nothing")
///     show Tc-99m 740 MBq for 8s        a vial: the reading ramps up over 1 s, then holds
///     show Cs-137 6.93 MBq for 8s chamber 2
///     silence for 10s                   no answer at all (stale)
///     garbage for 2s                    answers with random bytes
///     bad-checksum for 2s               answers with a corrupted reply (checksum / unit code)
///     split for 4s                      answers in pieces, 30 ms apart
///     noise 64                          one unsolicited burst of 64 random bytes
///     disconnect for 3s                 closes the pty (cable pulled); then a new one
///     loop                              start again (last line only)
///
/// Durations: `500ms`, `8s`, `2m`. Without `loop` the last step lasts forever.
public struct SimulatorScript: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        case show(nuclide: String, value: Double, unit: ActivityUnit, chamber: Int, seconds: Double)
        case empty(seconds: Double)
        case silence(seconds: Double)
        case garbage(seconds: Double)
        case badChecksum(seconds: Double)
        case split(seconds: Double)
        case noise(bytes: Int)
        case disconnect(seconds: Double)

        var seconds: Double {
            switch self {
            case .show(_, _, _, _, let s), .empty(let s), .silence(let s), .garbage(let s), .badChecksum(let s), .split(let s),
                .disconnect(let s):
                s
            case .noise: 0
            }
        }
    }

    public var steps: [Step]
    public var loops: Bool

    public init(steps: [Step], loops: Bool) {
        self.steps = steps
        self.loops = loops
    }

    /// A day in the hot lab: the morning constancy check, then patient doses.
    public static let demo = try! parse(
        """
        empty for 4s
        show Cs-137 6.93 MBq for 6s
        empty for 6s
        show Tc-99m 742 MBq for 6s
        empty for 8s
        show Tc-99m 20.1 mCi for 6s
        empty for 8s
        show F-18 370 MBq for 6s
        empty for 10s
        loop
        """, source: "builtin:demo")

    /// A PET hot lab with a worn cable: F-18 and Ga-68 doses, a corrupted reply now and
    /// then, and a spell of silence (the daemon journals it stale, then recovered).
    public static let demoPET = try! parse(
        """
        empty for 3s
        show F-18 412 MBq for 6s
        empty for 5s
        bad-checksum for 1s
        empty for 4s
        show Ga-68 185 MBq for 6s
        silence for 8s
        empty for 6s
        loop
        """, source: "builtin:demo-pet")

    public static func parse(_ text: String, source: String) throws(NMBridgeError) -> SimulatorScript {
        var steps: [Step] = []
        var loops = false
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let verb = words.first else { continue }
            func fail(_ message: String) -> NMBridgeError {
                NMBridgeError(.scriptInvalid, "\(source) line \(lineNumber): \(message)")
            }
            if loops { throw fail("nothing may follow `loop`") }
            func duration(after index: Int) throws(NMBridgeError) -> Double {
                guard words.count > index + 1, words[index] == "for", let seconds = Self.seconds(words[index + 1]) else {
                    throw fail("expected `for DURATION` (e.g. `for 5s`)")
                }
                return seconds
            }
            switch verb {
            case "show":
                guard words.count >= 6 else { throw fail("expected `show NUCLIDE VALUE UNIT for DURATION [chamber N]`") }
                guard let nuclide = Radionuclide.canonicalName(words[1]) else { throw fail("\"\(words[1])\" is not a nuclide name") }
                guard let value = Double(words[2]), value.isFinite, value >= 0 else { throw fail("\"\(words[2])\" is not an activity") }
                guard let unit = ActivityUnit(text: words[3]) else { throw fail("\"\(words[3])\" is not a unit") }
                let seconds = try duration(after: 4)
                var chamber = 1
                if words.count > 6 {
                    guard words.count == 8, words[6] == "chamber", let n = Int(words[7]), (1...8).contains(n) else {
                        throw fail("expected `chamber N` (1–8) after the duration")
                    }
                    chamber = n
                }
                steps.append(.show(nuclide: nuclide, value: value, unit: unit, chamber: chamber, seconds: seconds))
            case "empty", "silence", "garbage", "bad-checksum", "split", "disconnect":
                guard words.count == 3 else { throw fail("expected `\(verb) for DURATION`") }
                let seconds = try duration(after: 1)
                switch verb {
                case "empty": steps.append(.empty(seconds: seconds))
                case "silence": steps.append(.silence(seconds: seconds))
                case "garbage": steps.append(.garbage(seconds: seconds))
                case "bad-checksum": steps.append(.badChecksum(seconds: seconds))
                case "split": steps.append(.split(seconds: seconds))
                default: steps.append(.disconnect(seconds: seconds))
                }
            case "noise":
                guard words.count == 2, let count = Int(words[1]), (1...65536).contains(count) else {
                    throw fail("expected `noise BYTES` (1–65536)")
                }
                steps.append(.noise(bytes: count))
            case "loop":
                guard words.count == 1 else { throw fail("`loop` takes nothing") }
                guard steps.contains(where: { $0.seconds > 0 }) else { throw fail("a loop needs a step that lasts") }
                loops = true
            default:
                throw fail("unknown step \"\(verb)\" (show, empty, silence, garbage, bad-checksum, split, noise, disconnect, loop)")
            }
        }
        guard !steps.isEmpty else { throw NMBridgeError(.scriptInvalid, "\(source): the script has no steps") }
        return SimulatorScript(steps: steps, loops: loops)
    }

    static func seconds(_ text: String) -> Double? {
        let (number, scale): (Substring, Double) =
            if text.hasSuffix("ms") { (text.dropLast(2), 0.001) } else if text.hasSuffix("s") { (text.dropLast(), 1) } else if text.hasSuffix("m") {
                (text.dropLast(), 60)
            } else { (Substring(text), 1) }
        guard let value = Double(number), value.isFinite, value >= 0, value <= 86_400 * 365 else { return nil }
        return value * scale
    }
}
