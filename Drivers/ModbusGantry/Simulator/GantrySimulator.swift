import CModbus
import Foundation
import NMBridgeCore
import NMTransport
import Synchronization

/// A Modbus server that serves a profile's resources and plays a ``GantryScript``
/// (`nmbridge simulate gantry`). Built on libmodbus's server side, so the driver and the
/// test peers talk to a real Modbus stack over a real socket or pty.
///
/// Over TCP it accepts any number of clients (mbpoll beside the daemon); over a pty it
/// speaks RTU. It answers only its own unit id: a request to another unit gets no answer,
/// as on a serial line or behind a gateway whose target is missing. One thread of its own
/// serves requests and advances the script between them.
public final class GantrySimulator: @unchecked Sendable {
    public enum Transport: Sendable {
        /// Listen on `host:port` (port 0: any free port, see ``address``).
        case tcp(host: String, port: Int)
        /// Serve RTU on a new pseudo-terminal, optionally linked at a stable path.
        case pty(link: String?)
    }

    /// `127.0.0.1:40123` for TCP, the pty's path for RTU.
    public let address: String
    public let profile: ModbusProfile
    public let unit: Int

    private let context: OpaquePointer
    private let mapping: UnsafeMutablePointer<modbus_mapping_t>
    private let headerLength: Int
    private var listener: Int32 = -1
    private var clients: [Int32] = []
    private let terminal: PseudoTerminal?
    private var player: ScriptPlayer?
    /// Where the running ramp started: its step's serial number and the value then.
    private var rampOrigin: (step: Int, value: Double)?
    private let stopping = Atomic<Bool>(false)
    private let finished = NSCondition()
    private var running = false

    public init(profile: ModbusProfile, transport: Transport, unit: Int = 1, script: GantryScript?) throws {
        self.profile = profile
        self.unit = unit
        func size(_ table: ModbusTable) -> Int32 {
            Int32(profile.resources.filter { $0.table == table }.map { $0.address + $0.type.width }.max() ?? 1)
        }
        guard let mapping = modbus_mapping_new(size(.coil), size(.discrete), size(.holding), size(.input)) else {
            throw NMBridgeError(.transportFailed, "cannot allocate the register map of profile \(profile.name)")
        }
        self.mapping = mapping
        switch transport {
        case .tcp(let host, let port):
            let (fd, bound) = try Self.listen(host: host, port: port)
            guard let context = modbus_new_tcp("127.0.0.1", 502) else {
                Glibc.close(fd)
                modbus_mapping_free(mapping)
                throw NMBridgeError(.transportFailed, "libmodbus: \(String(cString: modbus_strerror(errno)))")
            }
            self.context = context
            listener = fd
            terminal = nil
            address = "\(host):\(bound)"
        case .pty(let link):
            let terminal = try PseudoTerminal()
            if let link { try terminal.link(at: link) }
            // The path is only a label: the simulator serves the pty's controlling side.
            guard let context = modbus_new_rtu(terminal.path, 19200, CChar(UInt8(ascii: "E")), 8, 1) else {
                modbus_mapping_free(mapping)
                throw NMBridgeError(.transportFailed, "libmodbus: \(String(cString: modbus_strerror(errno)))")
            }
            self.context = context
            modbus_set_socket(context, terminal.fd)
            self.terminal = terminal
            address = terminal.path
        }
        modbus_set_slave(context, Int32(unit))
        modbus_set_indication_timeout(context, 1, 0)
        headerLength = Int(modbus_get_header_length(context))
        player = script.map { ScriptPlayer(script: $0) }
        for resource in profile.resources {
            // Every value starts at zero, a state at its lowest code, text empty.
            if let lowest = resource.states.keys.min(), let name = resource.states[lowest] { write(resource, .state(name)) }
        }
    }

    deinit {
        for fd in clients { Glibc.close(fd) }
        if listener >= 0 { Glibc.close(listener) }
        modbus_free(context)
        modbus_mapping_free(mapping)
    }

    /// Starts serving on a thread of its own.
    public func start() {
        running = true
        let thread = Thread { [self] in
            serve()
            finished.lock()
            running = false
            finished.broadcast()
            finished.unlock()
        }
        thread.name = "gantry simulator"
        thread.start()
    }

    /// Stops serving and closes every connection; returns once the thread is done.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.lock()
        while running { finished.wait() }
        finished.unlock()
        dropClients()
        if listener >= 0 {
            Glibc.close(listener)
            listener = -1
        }
        terminal?.close()
    }

    // MARK: - Serving

    private func serve() {
        var query = [UInt8](repeating: 0, count: Int(MODBUS_TCP_MAX_ADU_LENGTH))
        while !stopping.load(ordering: .relaxed) {
            advanceScript()
            if let terminal {
                guard terminal.peerIsOpen else {
                    usleep(20_000)
                    continue
                }
                var pfd = pollfd(fd: terminal.fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 10) > 0, pfd.revents & Int16(POLLIN) != 0 else { continue }
                let length = modbus_receive(context, &query)
                if length > 0 { answer(query, length: Int(length), socket: terminal.fd) }
                continue
            }
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            fds += clients.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 10) > 0 else { continue }
            if fds[0].revents & Int16(POLLIN) != 0 {
                let client = accept(listener, nil, nil)
                if client >= 0 {
                    var on: Int32 = 1
                    setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                    clients.append(client)
                }
            }
            for entry in fds.dropFirst() where entry.revents != 0 {
                // A `drop` step during an earlier answer closed every client: skip stale fds.
                guard clients.contains(entry.fd) else { continue }
                modbus_set_socket(context, entry.fd)
                let length = modbus_receive(context, &query)
                if length > 0 {
                    answer(query, length: Int(length), socket: entry.fd)
                } else if length < 0 {
                    Glibc.close(entry.fd)
                    clients.removeAll { $0 == entry.fd }
                }
            }
        }
    }

    private func answer(_ query: [UInt8], length: Int, socket: Int32) {
        guard length >= headerLength, Int(query[headerLength - 1]) == unit else { return }
        // The session starts with the first request, so that it is answered from the script.
        player?.started()
        advanceScript()
        let fault = player?.takeFault()
        switch fault {
        case .exception(let code)?:
            modbus_reply_exception(context, query, UInt32(code))
        case .delay(let delay)?:
            usleep(UInt32(delay.components.seconds * 1_000_000 + delay.components.attoseconds / 1_000_000_000_000))
            modbus_reply(context, query, Int32(length), mapping)
        case .silence?:
            break
        case .garbage?:
            var noise = (0..<12).map { _ in UInt8.random(in: 0...255) }
            _ = Glibc.write(socket, &noise, noise.count)
        case nil:
            modbus_reply(context, query, Int32(length), mapping)
        }
    }

    private func dropClients() {
        for fd in clients { Glibc.close(fd) }
        clients.removeAll()
    }

    // MARK: - Script

    private func advanceScript() {
        guard var player else { return }
        for action in player.due(now: .now) {
            switch action {
            case .set(let name, let value):
                if let resource = profile[name] { write(resource, value) }
            case .ramp(let name, let fraction, let target, let step):
                guard let resource = profile[name] else { continue }
                if rampOrigin?.step != step {
                    let current = read(resource).flatMap { if case .number(let n) = $0 { n } else { nil } } ?? 0
                    rampOrigin = (step, current)
                }
                let start = rampOrigin!.value
                write(resource, .number(start + (target - start) * fraction))
            case .flag(let name, let bit, let on):
                guard let resource = profile[name], case .flags(var flags)? = read(resource) else { continue }
                if on { flags.insert(bit) } else { flags.remove(bit) }
                write(resource, .flags(flags))
            case .drop:
                dropClients()
            }
        }
        self.player = player
    }

    private func write(_ resource: ModbusResource, _ value: ModbusValue) {
        guard let raw = try? resource.encode(value) else { return }
        switch (resource.table, raw) {
        case (.coil, .bits(let bits)):
            for (i, bit) in bits.enumerated() { mapping.pointee.tab_bits[resource.address + i] = bit ? 1 : 0 }
        case (.discrete, .bits(let bits)):
            for (i, bit) in bits.enumerated() { mapping.pointee.tab_input_bits[resource.address + i] = bit ? 1 : 0 }
        case (.holding, .registers(let registers)):
            for (i, register) in registers.enumerated() { mapping.pointee.tab_registers[resource.address + i] = register }
        case (.input, .registers(let registers)):
            for (i, register) in registers.enumerated() { mapping.pointee.tab_input_registers[resource.address + i] = register }
        default:
            break
        }
    }

    private func read(_ resource: ModbusResource) -> ModbusValue? {
        let range = 0..<resource.type.width
        let raw: ModbusRawValue =
            switch resource.table {
            case .coil: .bits(range.map { mapping.pointee.tab_bits[resource.address + $0] != 0 })
            case .discrete: .bits(range.map { mapping.pointee.tab_input_bits[resource.address + $0] != 0 })
            case .holding: .registers(range.map { mapping.pointee.tab_registers[resource.address + $0] })
            case .input: .registers(range.map { mapping.pointee.tab_input_registers[resource.address + $0] })
            }
        return try? resource.decode(raw)
    }

    private static func listen(host: String, port: Int) throws -> (Int32, Int) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &info) == 0, let first = info else {
            throw NMBridgeError(.transportFailed, "cannot resolve \(host) to listen on")
        }
        defer { freeaddrinfo(info) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NMBridgeError(.transportFailed, "socket: \(String(cString: strerror(errno)))") }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0, Glibc.listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw NMBridgeError(.transportFailed, "cannot listen on \(host):\(port): \(reason)")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let bound = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        var actual = port
        if bound == 0 {
            actual = withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        }
        return (fd, actual)
    }
}

/// Plays a script against time and requests: which values change now, which fault the
/// next request gets.
struct ScriptPlayer {
    enum Action {
        case set(String, ModbusValue)
        /// A ramp at `fraction` (0…1) of the way to `target`; `step` tells ramps apart.
        case ramp(String, fraction: Double, target: Double, step: Int)
        case flag(String, bit: String, on: Bool)
        case drop
    }

    let script: GantryScript
    private var index = 0
    private var stepStart: ContinuousClock.Instant?
    /// Requests answered so far, and the count when the current step began.
    private var requests = 0
    private var stepStartRequests = 0
    private var fault: (GantryScript.Fault, remaining: Int)?
    /// Counts steps entered, across loops.
    private var serial = 0
    private var begun = false

    init(script: GantryScript) {
        self.script = script
    }

    /// Called for each request before it is answered: the session clock starts with the first.
    mutating func started() {
        begun = true
        requests += 1
    }

    /// The fault for this request, if one is active; counts it down.
    mutating func takeFault() -> GantryScript.Fault? {
        guard let active = fault else { return nil }
        fault = active.remaining > 1 ? (active.0, active.remaining - 1) : nil
        return active.0
    }

    /// The actions due at `now`: instant steps run until a `wait` or `ramp` is in progress
    /// or a fault is pending.
    mutating func due(now: ContinuousClock.Instant) -> [Action] {
        guard begun else { return [] }
        var actions: [Action] = []
        while index < script.steps.count, fault == nil {
            if stepStart == nil { stepStartRequests = requests }
            let start = stepStart ?? now
            stepStart = start
            switch script.steps[index] {
            case .set(let name, let value):
                actions.append(.set(name, value))
            case .raise(let name, let bit):
                actions.append(.flag(name, bit: bit, on: true))
            case .clear(let name, let bit):
                actions.append(.flag(name, bit: bit, on: false))
            case .drop:
                actions.append(.drop)
            case .fault(let kind, let requests):
                fault = (kind, requests)
            case .wait(let length):
                guard start.duration(to: now) >= length else { return actions }
            case .waitRequests(let count):
                guard requests - stepStartRequests >= count else { return actions }
            case .ramp(let name, let target, let length):
                let elapsed = start.duration(to: now)
                let fraction = length == .zero ? 1 : min(1, elapsed / length)
                actions.append(.ramp(name, fraction: fraction, target: target, step: serial))
                guard fraction >= 1 else { return actions }
            }
            next()
        }
        if index >= script.steps.count, script.loops { index = 0 }
        return actions
    }

    private mutating func next() {
        index += 1
        serial += 1
        stepStart = nil
    }
}
