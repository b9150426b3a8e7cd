import Foundation
import NMBridgeCore

/// A timed session for the dose calibrator simulator, one step per line:
///
///     # comment
///     empty for 5s                      chamber empty (the device answers "nothing")
///     show Tc-99m 740 MBq for 8s        a vial: the reading ramps up, then holds
///     show Cs-137 6.93 MBq for 8s chamber 2   only in chamber 2 (CRC-35R; others read empty)
///     silence for 10s                   no answer at all (stale)
///     garbage for 2s                    answers with random bytes
///     bad-checksum for 2s               answers with a corrupted reply (checksum / unit code)
///     split for 4s                      answers in pieces, 30 ms apart
///     noise 64                          one unsolicited burst of 64 random bytes
///     disconnect for 3s                 closes the pty (cable pulled); then a new one
///     loop                              start again (last line only)
///
/// Durations: `500ms`, `8s`, `2m`, or `N requests` (the step lasts for the host's next N
/// requests, whatever the timing: polled models only; deterministic for tests).
/// `disconnect` takes a time. Without `loop` the last step lasts forever.
public struct SimulatorScript: Sendable, Equatable {
    public struct Step: Sendable, Equatable {
        public enum Action: Sendable, Equatable {
            /// `chamber`: the only chamber showing it (multi-chamber models); nil: every one.
            case show(nuclide: String, value: Double, unit: ActivityUnit, chamber: Int?)
            case empty
            case silence
            case garbage
            case badChecksum
            case split
            case noise(bytes: Int)
            case disconnect
        }

        public enum Length: Sendable, Equatable {
            case seconds(Double)
            case requests(Int)
            case instant
        }

        public var action: Action
        public var length: Length

        public init(_ action: Action, _ length: Length) {
            self.action = action
            self.length = length
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
        for statement in scriptStatements(text) {
            let (lineNumber, words) = (statement.lineNumber, statement.words)
            let verb = words[0]
            func fail(_ message: String) -> NMBridgeError {
                NMBridgeError(.scriptInvalid, "\(source) line \(lineNumber): \(message)")
            }
            if loops { throw fail("nothing may follow `loop`") }
            /// `for 5s` or `for 20 requests` at `index`; returns the length and the words used.
            func length(at index: Int) throws(NMBridgeError) -> (Step.Length, Int) {
                guard words.count > index + 1, words[index] == "for" else {
                    throw fail("expected `for DURATION` (e.g. `for 5s` or `for 20 requests`)")
                }
                if words.count > index + 2, words[index + 2] == "requests" || words[index + 2] == "request" {
                    guard let n = Int(words[index + 1]), n > 0 else { throw fail("expected a positive number of requests") }
                    return (.requests(n), 3)
                }
                guard let seconds = Self.seconds(words[index + 1]) else {
                    throw fail("\"\(words[index + 1])\" is not a duration (500ms, 8s, 2m, or N requests)")
                }
                return (.seconds(seconds), 2)
            }
            switch verb {
            case "show":
                guard words.count >= 6 else { throw fail("expected `show NUCLIDE VALUE UNIT for DURATION [chamber N]`") }
                guard let nuclide = Radionuclide.canonicalName(words[1]) else { throw fail("\"\(words[1])\" is not a nuclide name") }
                guard let value = Double(words[2]), value.isFinite, value >= 0 else { throw fail("\"\(words[2])\" is not an activity") }
                guard let unit = ActivityUnit(text: words[3]) else { throw fail("\"\(words[3])\" is not a unit") }
                let (stepLength, used) = try length(at: 4)
                let rest = Array(words.dropFirst(4 + used))
                var chamber: Int?
                if !rest.isEmpty {
                    guard rest.count == 2, rest[0] == "chamber", let n = Int(rest[1]), (1...8).contains(n) else {
                        throw fail("expected `chamber N` (1–8) after the duration")
                    }
                    chamber = n
                }
                steps.append(Step(.show(nuclide: nuclide, value: value, unit: unit, chamber: chamber), stepLength))
            case "empty", "silence", "garbage", "bad-checksum", "split", "disconnect":
                let (stepLength, used) = try length(at: 1)
                guard words.count == 1 + used else { throw fail("expected `\(verb) for DURATION`") }
                let action: Step.Action =
                    switch verb {
                    case "empty": .empty
                    case "silence": .silence
                    case "garbage": .garbage
                    case "bad-checksum": .badChecksum
                    case "split": .split
                    default: .disconnect
                    }
                if action == .disconnect, case .requests = stepLength {
                    throw fail("a disconnected device gets no requests: give `disconnect` a time")
                }
                steps.append(Step(action, stepLength))
            case "noise":
                guard words.count == 2, let count = Int(words[1]), (1...65536).contains(count) else {
                    throw fail("expected `noise BYTES` (1–65536)")
                }
                steps.append(Step(.noise(bytes: count), .instant))
            case "loop":
                guard words.count == 1 else { throw fail("`loop` takes nothing") }
                guard steps.contains(where: { $0.length != .instant }) else { throw fail("a loop needs a step that lasts") }
                loops = true
            default:
                throw fail("unknown step \"\(verb)\" (show, empty, silence, garbage, bad-checksum, split, noise, disconnect, loop)")
            }
        }
        guard !steps.isEmpty else { throw NMBridgeError(.scriptInvalid, "\(source): the script has no steps") }
        return SimulatorScript(steps: steps, loops: loops)
    }

    static func seconds(_ text: String) -> Double? { scriptSeconds(text) }
}
