import Foundation
import NMBridgeCore
import NMTransport
import Synchronization

/// The calibrator models the simulator can play.
public enum SimulatedModel: String, Sendable, CaseIterable {
    case crc15r
    case crc35r
    case atomlab500
    case line
}

/// A dose calibrator on a pty that answers like the instrument: the real wire protocol,
/// the readings of a `SimulatorScript`, and its faults. Runs on a thread of its own.
///
/// The script's clock starts with the host's first request (the line model's, which is
/// never asked, when the host opens the port).
///
/// With `link`, a symlink always points at the current pty, so that a `disconnect` step
/// (the pty closes and a new one appears) looks like a cable pulled and plugged back in.
public final class DoseCalibratorSimulator: Sendable {
    public let model: SimulatedModel
    public let script: SimulatorScript
    public let link: String?
    private let state: Mutex<State>
    private let stopped = Atomic<Bool>(false)
    private let finished = Mutex<Bool>(false)

    private struct State {
        var pty: PseudoTerminal?
        var replies = 0
    }

    /// Creates the pty (and the symlink) at once, so `path` is usable on return.
    public init(model: SimulatedModel, script: SimulatorScript, link: String? = nil) throws {
        self.model = model
        self.script = script
        self.link = link
        let pty = try PseudoTerminal()
        try link.map { try pty.link(at: $0) }
        state = Mutex(State(pty: pty))
    }

    /// The path a driver opens: the symlink if there is one, else the pty.
    public var path: String { link ?? state.withLock { $0.pty?.path ?? "" } }

    /// Replies sent so far (for tests and the benchmark).
    public var replies: Int { state.withLock { $0.replies } }

    public func start() {
        let thread = Thread { [self] in
            run()
            finished.withLock { $0 = true }
        }
        thread.name = "dosecal simulator"
        thread.start()
    }

    /// Stops the thread, removes the link and closes the pty.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        while !finished.withLock({ $0 }) { usleep(1000) }
        removeLink()
        state.withLock { $0.pty?.close() }
    }

    /// Removes the link if it still points at this simulator's pty.
    private func removeLink() {
        guard let link, let current = state.withLock({ $0.pty?.path }),
            (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == current
        else { return }
        unlink(link)
    }

    // MARK: - Timeline

    private func step(at elapsed: Double) -> (index: Int, start: Double) {
        let total = script.steps.reduce(0) { $0 + $1.seconds }
        var t = elapsed
        if script.loops, total > 0 { t = elapsed.truncatingRemainder(dividingBy: total) }
        var start = elapsed - t
        for (index, step) in script.steps.enumerated() {
            if t < step.seconds || index == script.steps.count - 1 { return (index, start) }
            t -= step.seconds
            start += step.seconds
        }
        return (script.steps.count - 1, start)
    }

    /// The reading a vial shows `since` seconds after it went in: it rises over the first
    /// second (the ion chamber's response) and then holds the exact value.
    static func ramp(_ value: Double, since: Double) -> Double {
        guard since < 1 else { return value }
        let x = max(0, since)
        return value * (1 - pow(1 - x, 3))
    }

    /// The session's clock starts with the host's first request (for the line model, which
    /// is never asked, when the host opens the port): a driver that starts late, or a
    /// loaded machine, still sees every step of the script from its beginning.
    private func run() {
        var began: Date?
        var lastStepKey: (Int, Double)?
        var printedFor: (Int, Double)?
        var requests = RequestParser(model: model)
        while !stopped.load(ordering: .relaxed) {
            if began == nil, model == .line, state.withLock({ $0.pty?.peerIsOpen ?? false }) { began = Date() }
            if let began {
                let elapsed = Date().timeIntervalSince(began)
                let (index, start) = step(at: elapsed)
                let current = script.steps[index]
                if lastStepKey == nil || lastStepKey! != (index, start) {
                    lastStepKey = (index, start)
                    switch current {
                    case .noise(let count):
                        send(Self.randomBytes(count))
                    case .disconnect(let seconds):
                        disconnect(for: seconds)
                        requests = RequestParser(model: model)
                        continue
                    default: break
                    }
                }
                // The line model prints once per vial, after the reading has settled.
                if model == .line, case .show = current, elapsed - start >= 1, printedFor == nil || printedFor! != (index, start) {
                    printedFor = (index, start)
                    respond(to: .lineRequest, step: current, since: elapsed - start)
                }
            }
            let pty = state.withLock { $0.pty }
            guard let pty else { return }
            let bytes = pty.read(timeoutMs: 20)
            for request in requests.push(bytes) {
                let now = Date()
                if began == nil { began = now }
                let (index, start) = step(at: now.timeIntervalSince(began!))
                respond(to: request, step: script.steps[index], since: now.timeIntervalSince(began!) - start)
            }
        }
    }

    private func disconnect(for seconds: Double) {
        // Like udev removing /dev/nmbridge/… on unplug: the link goes first, so that a
        // driver reopening it cannot reach a pty that the kernel hands to someone else.
        removeLink()
        state.withLock {
            $0.pty?.close()
            $0.pty = nil
        }
        let until = Date().addingTimeInterval(seconds)
        while Date() < until, !stopped.load(ordering: .relaxed) { usleep(10_000) }
        guard let pty = try? PseudoTerminal() else { return }
        try? link.map { try pty.link(at: $0) }
        state.withLock { $0.pty = pty }
    }

    private func send(_ bytes: [UInt8]) {
        guard let pty = state.withLock({ $0.pty }) else { return }
        pty.write(bytes)
    }

    // MARK: - Replies

    private func respond(to request: Request, step: SimulatorScript.Step, since: Double) {
        var reply: [UInt8]
        switch step {
        case .silence, .disconnect, .noise:
            return
        case .garbage:
            reply = Self.randomBytes(model == .crc15r ? CapintecCRC15R.replyLength : 24)
        case .show(let nuclide, let value, let unit, let chamber, _):
            let shown = Self.ramp(value, since: since)
            reply = encode(request, nuclide: nuclide, value: shown, unit: unit, chamber: chamber, corrupt: false)
        case .badChecksum:
            reply = encode(request, nuclide: "Tc-99m", value: 740, unit: .mbq, chamber: 1, corrupt: true)
        case .empty:
            reply = encodeEmpty(request)
        case .split(let seconds):
            _ = seconds
            reply = encode(request, nuclide: "Tc-99m", value: 740, unit: .mbq, chamber: 1, corrupt: false)
            let cut1 = reply.count / 3
            let cut2 = 2 * reply.count / 3
            send(Array(reply[..<cut1]))
            usleep(30_000)
            send(Array(reply[cut1..<cut2]))
            usleep(30_000)
            reply = Array(reply[cut2...])
        }
        send(reply)
        state.withLock { $0.replies += 1 }
    }

    private func encode(_ request: Request, nuclide: String, value: Double, unit: ActivityUnit, chamber: Int, corrupt: Bool) -> [UInt8] {
        switch (model, request) {
        case (.crc15r, .crc15r(let letters)):
            let code = Self.code(for: unit, in: CapintecCRC15R.defaultUnitCodes) ?? 5
            let inCode = code == 5 && unit != .mbq ? value * unit.becquerel / 1e6 : value
            let full = CapintecCRC15R.encode(
                nuclide: CapintecCRC15R.displayName(nuclide), unitCode: corrupt ? 0xEE : UInt8(code), value: Float(inCode))
            return letters.map { full[Int($0 - UInt8(ascii: "A"))] }
        case (.crc35r, .crc35r(let asked)):
            // The CRC-35R reports kBq, MBq or GBq: convert.
            let bq = value * unit.becquerel
            let (shown, code) = bq >= 1e10 ? (bq / 1e9, 5) : bq >= 1e6 ? (bq / 1e6, 4) : (bq / 1e3, 3)
            var frame = CapintecCRC35R.frame(
                CapintecCRC35R.replyBody(
                    chamber: asked, name: CapintecCRC15R.displayName(nuclide), valueText: Self.text(shown), unitCode: code))
            if corrupt { frame[frame.count - 2] ^= 0x5A }
            _ = chamber
            return frame
        case (.atomlab500, _), (.line, _):
            let name = CapintecCRC15R.displayName(nuclide).replacingOccurrences(of: " ", with: "")
            let text = corrupt ? "\(name) ?.?? \(unit.rawValue)" : "\(name) \(Self.text(value)) \(unit.rawValue)"
            return Array((text + "\r\n").utf8)
        default:
            return []
        }
    }

    private func encodeEmpty(_ request: Request) -> [UInt8] {
        switch (model, request) {
        case (.crc15r, .crc15r(let letters)):
            let full = CapintecCRC15R.encode(nuclide: "", unitCode: 0, value: 0)
            return letters.map { full[Int($0 - UInt8(ascii: "A"))] }
        case (.crc35r, .crc35r(let asked)):
            return CapintecCRC35R.frame(CapintecCRC35R.replyBody(chamber: asked, name: "", valueText: "", unitCode: 4))
        case (.atomlab500, _):
            return Array("\r\n".utf8)
        default:
            return []
        }
    }

    static func code(for unit: ActivityUnit, in table: UnitCodeTable) -> Int? {
        table.units.first { $0.value == unit }?.key
    }

    /// Four significant digits, as calibrator displays show them.
    static func text(_ value: Double) -> String {
        let digits = value >= 1000 ? 0 : value >= 100 ? 1 : value >= 10 ? 2 : 3
        return String(format: "%.\(digits)f", value)
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255) }
    }
}

/// What the host asked for.
enum Request: Equatable {
    /// CRC-15R letters `A`…`K` received after `@`, answered together.
    case crc15r([UInt8])
    /// CRC-35R `R<n>`.
    case crc35r(Int)
    /// Atomlab `1` or ^C.
    case atomlab
    /// The line model prints without being asked.
    case lineRequest
}

/// Finds requests in the bytes the host sends.
struct RequestParser {
    let model: SimulatedModel
    private var framer = CRC35RFramer()
    private var letters: [UInt8] = []

    init(model: SimulatedModel) {
        self.model = model
    }

    mutating func push(_ bytes: [UInt8]) -> [Request] {
        guard !bytes.isEmpty else { return [] }
        switch model {
        case .crc15r:
            // Each letter A–K returns its part of the reply; collect what arrived together.
            var requests: [Request] = []
            for byte in bytes {
                if (UInt8(ascii: "A")...UInt8(ascii: "K")).contains(byte) { letters.append(byte) }
            }
            if !letters.isEmpty {
                requests.append(.crc15r(letters))
                letters.removeAll()
            }
            return requests
        case .crc35r:
            return framer.push(bytes).compactMap { output in
                guard case .frame(let body, _) = output, body.count == 2, body[0] == UInt8(ascii: "R"),
                    let n = Int(String(UnicodeScalar(body[1]))), (1...8).contains(n)
                else { return nil }
                return .crc35r(n)
            }
        case .atomlab500:
            return bytes.filter { $0 == 0x31 || $0 == 0x03 }.map { _ in .atomlab }
        case .line:
            return []
        }
    }
}
