import Foundation
import NMBridgeCore
import NMTransport
import Synchronization

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
        var requests = 0
        var replies = 0
        var step = 0
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

    /// Where the session is, for a test's failure message: requests read, replies sent and
    /// the script step (counted from 1).
    public var progress: String { state.withLock { "\($0.requests) requests, \($0.replies) replies, at step \($0.step + 1)" } }

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

    /// Where the session is: the current step, when it began and how many requests it has
    /// answered.
    private struct Position {
        var index = 0
        var since = Date()
        var requests = 0
    }

    /// The reading a vial shows: it rises over the first second (the ion chamber's
    /// response), or over the first three requests of a step counted in requests, then
    /// holds the exact value.
    static func ramp(_ value: Double, seconds: Double, requests: Int, countedInRequests: Bool) -> Double {
        let x = countedInRequests ? Double(min(requests, 3)) / 3 : min(max(seconds, 0), 1)
        return value * (1 - pow(1 - x, 3))
    }

    /// The session's clock starts with the host's first request (for the line model, which
    /// is never asked, when the host opens the port): a driver that starts late, or a
    /// loaded machine, still sees every step of the script from its beginning.
    private func run() {
        var position: Position?
        var printed = false
        var instrument = model.family.simulatedInstrument()
        let printsUnasked = !model.family.isPolled

        /// Enters step `index` now; `noise` and `disconnect` act on entry.
        func enter(_ index: Int) {
            position = Position(index: index, since: Date(), requests: 0)
            state.withLock { $0.step = index }
            printed = false
            switch script.steps[index].action {
            case .noise(let count): send(Self.randomBytes(count))
            case .disconnect:
                if case .seconds(let seconds) = script.steps[index].length { disconnect(for: seconds) }
                instrument = model.family.simulatedInstrument()
            default: break
            }
        }
        /// Moves past finished steps; the last step of a script without `loop` never ends.
        func advance() {
            while var current = position {
                let step = script.steps[current.index]
                let finished: Bool =
                    switch step.length {
                    case .instant: true
                    case .seconds(let seconds): Date().timeIntervalSince(current.since) >= seconds
                    case .requests(let n): current.requests >= n
                    }
                let last = current.index == script.steps.count - 1
                guard finished, !(last && !script.loops) else { return }
                current.index = last ? 0 : current.index + 1
                position = current
                enter(current.index)
            }
        }

        while !stopped.load(ordering: .relaxed) {
            if position == nil, printsUnasked, state.withLock({ $0.pty?.peerIsOpen ?? false }) { enter(0) }
            advance()
            // A printing model prints once per vial, after the reading has settled.
            if printsUnasked, !printed, let current = position, case .show = script.steps[current.index].action,
                Date().timeIntervalSince(current.since) >= 1
            {
                printed = true
                respond(to: SimulatedRequest(), at: current, instrument)
            }
            guard let pty = state.withLock({ $0.pty }) else { return }
            for request in instrument.requests(in: pty.read(timeoutMs: 20)) {
                state.withLock { $0.requests += 1 }
                if position == nil { enter(0) }
                advance()
                guard var current = position else { continue }
                respond(to: request, at: current, instrument)
                current.requests += 1
                position = current
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

    private func respond(to request: SimulatedRequest, at position: Position, _ instrument: any SimulatedInstrument) {
        let step = script.steps[position.index]
        var reply: [UInt8]
        switch step.action {
        case .silence, .disconnect, .noise:
            return
        case .garbage:
            reply = Self.randomBytes(instrument.garbageLength)
        case .show(_, _, _, let chamber?) where request.chamber.map({ $0 != chamber }) ?? false:
            // A multi-chamber model shows the vial in its own chamber only.
            reply = instrument.emptyReply(to: request)
        case .show(let nuclide, let value, let unit, _):
            let countedInRequests = if case .requests = step.length { true } else { false }
            let shown = Self.ramp(
                value, seconds: Date().timeIntervalSince(position.since), requests: position.requests,
                countedInRequests: countedInRequests)
            reply = instrument.reply(to: request, nuclide: nuclide, value: shown, unit: unit, corrupt: false)
        case .badChecksum:
            reply = instrument.reply(to: request, nuclide: "Tc-99m", value: 740, unit: .mbq, corrupt: true)
        case .empty:
            reply = instrument.emptyReply(to: request)
        case .split:
            reply = instrument.reply(to: request, nuclide: "Tc-99m", value: 740, unit: .mbq, corrupt: false)
            let cut1 = reply.count / 3
            let cut2 = 2 * reply.count / 3
            send(Array(reply[..<cut1]))
            usleep(30_000)
            send(Array(reply[cut1..<cut2]))
            usleep(30_000)
            reply = Array(reply[cut2...])
        }
        // Counted before it goes out: whoever reads the count after the host has the reply sees it.
        state.withLock { $0.replies += 1 }
        send(reply)
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255) }
    }
}
