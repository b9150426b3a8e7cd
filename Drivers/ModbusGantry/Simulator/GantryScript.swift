import Foundation
import NMBridgeCore

/// A scripted session for the gantry simulator, one step per line, checked against the
/// profile it will drive:
///
///     # comment
///     set motion_state moving           a value: number (scaled unit), state name,
///     set emergency_stop true           true/false, text, or flags ("a,b" or "none")
///     ramp rotation_angle to 180 over 10s   moves a number linearly from where it is
///     wait 2s
///     wait 12 requests                  until that many more requests are answered (load-proof)
///     raise fault_word door_open        sets one named bit of a bitfield
///     clear fault_word door_open
///     exception busy for 3 requests     answers the next requests with an exception:
///                                       illegal-function, illegal-address, illegal-value,
///                                       server-failure, busy, gateway-path, gateway-target, or 1–11
///     delay 800ms for 2 requests        answers late
///     silence for 5 requests            does not answer
///     garbage for 2 requests            answers with random bytes
///     drop                              closes every client connection (TCP)
///     loop                              start again (last line only)
///
/// Durations: `500ms`, `8s`, `2m`. The session starts with the first request.
public struct GantryScript: Sendable, Equatable {
    public enum Fault: Sendable, Equatable {
        case exception(UInt8)
        case delay(Duration)
        case silence
        case garbage
    }

    public enum Step: Sendable, Equatable {
        case set(resource: String, value: ModbusValue)
        case ramp(resource: String, to: Double, over: Duration)
        case wait(Duration)
        case waitRequests(Int)
        case raise(resource: String, bit: String)
        case clear(resource: String, bit: String)
        case fault(Fault, requests: Int)
        case drop
    }

    public var steps: [Step]
    public var loops: Bool

    public init(steps: [Step], loops: Bool) {
        self.steps = steps
        self.loops = loops
    }

    static let exceptionNames: [String: UInt8] = [
        "illegal-function": 1, "illegal-address": 2, "illegal-value": 3, "server-failure": 4, "busy": 6,
        "gateway-path": 10, "gateway-target": 11,
    ]

    /// A SPECT acquisition on the example gantry (`spect-gantry-example`), looped: the
    /// table moves in, the heads close in, the gantry rotates while acquiring, pauses for an
    /// open door (a fault raised and cleared), finishes, and parks; the controller is
    /// briefly busy once per loop.
    public static let demoText = """
        set controller_firmware "GX-2.4.1"
        set collimator LEHR
        set detector_radius 320
        set table_height 850
        wait 2s
        set motion_state moving
        ramp table_longitudinal to 1150 over 3s
        ramp detector_radius to 240 over 2s
        set motion_state idle
        set acquisition_state acquiring
        set motion_state moving
        ramp rotation_angle to 90 over 6s
        set acquisition_state paused
        set motion_state idle
        raise fault_word door_open
        wait 3s
        clear fault_word door_open
        exception busy for 2 requests
        set acquisition_state acquiring
        set motion_state moving
        ramp rotation_angle to 180 over 6s
        set acquisition_state idle
        set motion_state homing
        ramp rotation_angle to 0 over 3s
        ramp detector_radius to 320 over 2s
        ramp table_longitudinal to 0 over 3s
        set motion_state idle
        wait 4s
        loop
        """

    public static func parse(_ text: String, source: String, profile: ModbusProfile) throws(NMBridgeError) -> GantryScript {
        var steps: [Step] = []
        var loops = false
        for statement in scriptStatements(text) {
            let (lineNumber, line, words) = (statement.lineNumber, statement.text, statement.words)
            let verb = words[0]
            func fail(_ message: String) -> NMBridgeError {
                NMBridgeError(.scriptInvalid, "\(source) line \(lineNumber): \(message)")
            }
            func resource(_ name: String) throws(NMBridgeError) -> ModbusResource {
                guard let found = profile[name] else { throw fail("profile \(profile.name) has no resource \"\(name)\"") }
                return found
            }
            func duration(_ text: String) throws(NMBridgeError) -> Duration {
                guard let seconds = scriptSeconds(text) else { throw fail("\"\(text)\" is not a duration (500ms, 8s, 2m)") }
                return .milliseconds(Int64((seconds * 1000).rounded()))
            }
            func requests(at index: Int) throws(NMBridgeError) -> Int {
                guard words.count == index + 3, words[index] == "for", let n = Int(words[index + 1]), n > 0,
                    words[index + 2].hasPrefix("request")
                else { throw fail("expected `for N requests` after `\(verb)`") }
                return n
            }
            if loops { throw fail("nothing may follow `loop`") }
            switch verb {
            case "set":
                guard words.count >= 3 else { throw fail("expected `set RESOURCE VALUE`") }
                let target = try resource(words[1])
                // Text may contain spaces: everything after the name, without quotes.
                let valueText = line.drop(while: { $0 == " " || $0 == "\t" }).dropFirst(3)
                    .drop(while: { $0 == " " || $0 == "\t" }).dropFirst(words[1].count)
                    .trimmingCharacters(in: .whitespaces)
                guard let value = target.parseValue(valueText) else {
                    throw fail("\"\(valueText)\" is not a value for \(target.name) (\(target.type)\(target.states.isEmpty ? "" : " with states"))")
                }
                do {
                    _ = try target.encode(value)
                } catch {
                    throw fail("\(error)")
                }
                steps.append(.set(resource: target.name, value: value))
            case "ramp":
                guard words.count == 6, words[2] == "to", words[4] == "over" else {
                    throw fail("expected `ramp RESOURCE to VALUE over DURATION`")
                }
                let target = try resource(words[1])
                guard target.type.isNumeric, target.states.isEmpty, let value = Double(words[3]), value.isFinite else {
                    throw fail("only a number can ramp, to a number: \(target.name) is \(target.type), \"\(words[3])\"")
                }
                do {
                    _ = try target.encode(.number(value))
                } catch {
                    throw fail("\(error)")
                }
                steps.append(.ramp(resource: target.name, to: value, over: try duration(words[5])))
            case "wait":
                if words.count == 3, let n = Int(words[1]), n > 0, words[2].hasPrefix("request") {
                    steps.append(.waitRequests(n))
                } else {
                    guard words.count == 2 else { throw fail("expected `wait DURATION` or `wait N requests`") }
                    steps.append(.wait(try duration(words[1])))
                }
            case "raise", "clear":
                guard words.count == 3 else { throw fail("expected `\(verb) RESOURCE BIT`") }
                let target = try resource(words[1])
                guard target.type == .bitfield, target.bits.values.contains(words[2]) || Self.unnamedBit(words[2]) != nil else {
                    throw fail("\"\(words[2])\" is not a bit of \(target.name) (\(target.bits.values.sorted().joined(separator: ", ")))")
                }
                steps.append(verb == "raise" ? .raise(resource: target.name, bit: words[2]) : .clear(resource: target.name, bit: words[2]))
            case "exception":
                guard words.count >= 2 else { throw fail("expected `exception NAME for N requests`") }
                // libmodbus sends the standard codes only (1–11).
                let code = Self.exceptionNames[words[1]] ?? UInt8(words[1])
                guard let code, (1...11).contains(code) else {
                    throw fail("\"\(words[1])\" is not an exception (\(Self.exceptionNames.keys.sorted().joined(separator: ", ")) or 1–11)")
                }
                steps.append(.fault(.exception(code), requests: try requests(at: 2)))
            case "delay":
                guard words.count >= 2 else { throw fail("expected `delay DURATION for N requests`") }
                steps.append(.fault(.delay(try duration(words[1])), requests: try requests(at: 2)))
            case "silence", "garbage":
                steps.append(.fault(verb == "silence" ? .silence : .garbage, requests: try requests(at: 1)))
            case "drop":
                guard words.count == 1 else { throw fail("`drop` takes nothing") }
                steps.append(.drop)
            case "loop":
                guard words.count == 1 else { throw fail("`loop` takes nothing") }
                guard steps.contains(where: { switch $0 {
                case .wait, .waitRequests, .ramp: true
                default: false
                } }) else {
                    throw fail("a loop needs a `wait` or a `ramp`, or it would spin")
                }
                loops = true
            default:
                throw fail("unknown step \"\(verb)\" (set, ramp, wait, raise, clear, exception, delay, silence, garbage, drop, loop)")
            }
        }
        guard !steps.isEmpty else { throw NMBridgeError(.scriptInvalid, "\(source): the script has no steps") }
        return GantryScript(steps: steps, loops: loops)
    }

    /// `bit5` → 5.
    static func unnamedBit(_ name: String) -> Int? {
        guard name.hasPrefix("bit"), let n = Int(name.dropFirst(3)), (0...15).contains(n) else { return nil }
        return n
    }
}

extension ModbusResource {
    /// A value as a script or a person writes it for this resource: a number in the scaled
    /// unit, a state name, true/false, text (quotes optional), or flags `a,b` / `none`.
    public func parseValue(_ text: String) -> ModbusValue? {
        switch type {
        case .bool:
            switch text.lowercased() {
            case "true", "on", "1": return .bool(true)
            case "false", "off", "0": return .bool(false)
            default: return nil
            }
        case .string:
            var body = Substring(text)
            if body.count >= 2, body.first == "\"", body.last == "\"" { body = body.dropFirst().dropLast() }
            return .text(String(body))
        case .bitfield:
            if text == "none" { return .flags([]) }
            return .flags(Set(text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }))
        default:
            if !states.isEmpty { return states.values.contains(text) ? .state(text) : nil }
            guard let number = Double(text), number.isFinite else { return nil }
            return .number(number)
        }
    }
}
