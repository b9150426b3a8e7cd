import Foundation
import Logging
import NMBridgeCore
import NMTransport

/// Settings of one `driver = "modbus"` device.
public struct ModbusGantrySettings: Sendable {
    public var profile: ModbusProfile
    public var endpoint: ModbusEndpoint
    public var unit: Int
    /// Serial settings of an RTU line; nil for TCP.
    public var line: ModbusLineSettings?
    public var pollInterval: Duration
    public var timeout: Duration
    public var retries: Int
    public var errorInterval: Duration
    /// Longest pause between attempts at a unit that stopped answering.
    public var maximumBackoff: Duration

    public init(
        profile: ModbusProfile, endpoint: ModbusEndpoint, unit: Int = 1, line: ModbusLineSettings? = nil,
        pollInterval: Duration = .seconds(1), timeout: Duration = .milliseconds(500), retries: Int = 1,
        errorInterval: Duration = .seconds(60), maximumBackoff: Duration = .seconds(30)
    ) {
        self.profile = profile
        self.endpoint = endpoint
        self.unit = unit
        self.line = line
        self.pollInterval = pollInterval
        self.timeout = timeout
        self.retries = retries
        self.errorInterval = errorInterval
        self.maximumBackoff = maximumBackoff
    }
}

/// A gantry controller (or any Modbus device described by a profile), read-only.
///
/// It polls the profile's resources at their intervals, each due group in as few requests
/// as the protocol allows, through the bus it shares with the other devices on the same
/// endpoint; it journals changes, motion, acquisition and fault events (``GantryTracker``).
/// A unit that stops answering is reported down after three polls and then asked again
/// with capped exponential back-off, so it never takes more than its share of a shared
/// bus. Every answer, even a Modbus exception, is a heartbeat for the staleness watchdog.
public struct ModbusGantryDriver: Driver {
    public typealias Settings = ModbusGantrySettings

    /// Unanswered polls in a row before the unit is reported down and backed off.
    static let unansweredBeforeDown = 3

    public static var manifest: DriverManifest {
        DriverManifest(
            name: "modbus", version: "1.0.0", maturity: .experimental, transports: ["modbus-tcp", "modbus-rtu"],
            summary: "Gantry controllers and other PLCs over Modbus TCP or RTU, described by a register profile.",
            configKeys: [
                DriverConfigKey(
                    "profile", "string",
                    "A register profile: a file path (relative to the configuration file) or a NAME looked up as NAME.toml in \(ModbusProfileLoader.searchDirectories.joined(separator: ", ")). Format: docs/modbus-profiles.md."),
                DriverConfigKey(
                    "modbus", "table",
                    "Where and who: `{ tcp = \"HOST:PORT\", unit = 1 }` or `{ rtu = \"/dev/ttyUSB1\", unit = 1, rs485 = false, rts = \"none\" }`. unit 0–255 on TCP (gateways route by it), 1–247 on RTU; default 1. rts: none, up, down (RS-485 direction control by libmodbus)."),
                DriverConfigKey("serial", "table", "RTU line settings `{ baud, data_bits, parity, stop_bits }`; default 19200 8E1 (the Modbus serial-line default)."),
                DriverConfigKey("poll_ms", "integer", "Poll interval of resources without their own poll_ms, 10–3600000 (default 1000)."),
                DriverConfigKey("timeout_ms", "integer", "Response timeout per request, 10–10000 (default 500)."),
                DriverConfigKey("retries", "integer", "Immediate retries after a timeout or a malformed answer, 0–5 (default 1)."),
                DriverConfigKey("unit_backoff_max_s", "number", "Longest pause before asking a silent unit again, 1–3600 (default 30)."),
                ProtocolErrorLimiter.configKey,
            ])
    }

    public static func settings(from reader: ConfigTableReader) -> Settings? {
        let problemsBefore = reader.problems.count
        let profile = reader.string("profile", required: true).flatMap { ModbusProfileLoader.load(reference: $0, for: reader) }
        var endpoint: ModbusEndpoint?
        var unit = 1
        var line: ModbusLineSettings?
        if let modbus = reader.table("modbus") {
            let tcp = modbus.string("tcp")
            let rtu = modbus.string("rtu")
            switch (tcp, rtu) {
            case (let tcp?, nil):
                endpoint = ModbusEndpoint.tcp(tcp)
                if endpoint == nil { modbus.problem("tcp", "\"\(tcp)\" is not HOST:PORT (e.g. \"192.0.2.20:502\")") }
            case (nil, let rtu?):
                endpoint = .rtu(path: reader.resolvePath(rtu))
            case (_?, _?):
                modbus.problem("rtu", "give either tcp or rtu, not both")
            case (nil, nil):
                modbus.tableProblem("needs tcp = \"HOST:PORT\" or rtu = \"/dev/…\"")
            }
            let isRTU = rtu != nil
            unit = Int(modbus.int("unit", in: isRTU ? 1...247 : 0...255) ?? 1)
            let rs485 = modbus.bool("rs485") ?? false
            let rts = modbus.choice("rts", ModbusLineSettings.RTS.allCases.map(\.rawValue)).flatMap(ModbusLineSettings.RTS.init)
            if isRTU {
                if let serial = SerialSettings.read(from: reader, defaults: SerialSettings(baud: 19200, parity: .even)) {
                    line = ModbusLineSettings(serial: serial, rs485: rs485, rts: rts ?? .none)
                }
            } else {
                for key in ["rs485", "rts"] where modbus.has(key) { modbus.problem(key, "applies to rtu only") }
                if reader.has("serial") { reader.problem("serial", "applies to modbus rtu only") }
            }
            modbus.reportUnknownKeys()
        } else {
            reader.problem("modbus", "is required: { tcp = \"HOST:PORT\", unit = 1 } or { rtu = \"/dev/ttyUSB1\", unit = 1 }")
        }
        let pollMs = reader.int("poll_ms", in: 10...3_600_000) ?? 1000
        let timeoutMs = reader.int("timeout_ms", in: 10...10_000) ?? 500
        let retries = reader.int("retries", in: 0...5) ?? 1
        let backoff = reader.double("unit_backoff_max_s", in: 1...3600) ?? 30
        let errorInterval = ProtocolErrorLimiter.interval(from: reader)
        guard reader.problems.count == problemsBefore, let profile, let endpoint else { return nil }
        return Settings(
            profile: profile, endpoint: endpoint, unit: unit, line: line, pollInterval: .milliseconds(pollMs),
            timeout: .milliseconds(timeoutMs), retries: Int(retries), errorInterval: errorInterval,
            maximumBackoff: .milliseconds(Int64(backoff * 1000)))
    }

    public static func defaultStaleAfter(_ settings: Settings) -> Double? {
        staleAfter(polledEvery: settings.pollInterval)
    }

    let settings: Settings
    let context: DriverContext

    public init(settings: Settings, context: DriverContext) {
        self.settings = settings
        self.context = context
    }

    public func run() async throws {
        let bus: ModbusBus
        do {
            bus = try ModbusBuses.acquire(settings.endpoint, line: settings.line, device: context.deviceID)
        } catch {
            throw NMBridgeError(.invalidConfiguration, error.message)
        }
        defer { ModbusBuses.release(bus) }
        var poller = Poller(settings: settings, context: context, bus: bus)
        try await poller.run()
    }
}

/// The polling loop of one device: schedule, read, decode, report.
private struct Poller {
    let settings: ModbusGantrySettings
    let context: DriverContext
    let bus: ModbusBus
    var tracker: GantryTracker
    var errors: ProtocolErrorLimiter
    var schedule: PollSchedule
    var unanswered = 0
    var linkUp = false
    /// The read plan of each combination of due resources (the same few, poll after poll).
    var plans: [[String]: [ReadRequest]] = [:]

    init(settings: ModbusGantrySettings, context: DriverContext, bus: ModbusBus) {
        self.settings = settings
        self.context = context
        self.bus = bus
        tracker = GantryTracker(profile: settings.profile)
        errors = ProtocolErrorLimiter(interval: settings.errorInterval)
        schedule = PollSchedule(resources: settings.profile.resources, defaultInterval: settings.pollInterval)
    }

    var identity: [String: JSONValue] {
        ["endpoint": .string(settings.endpoint.description), "unit": .int(Int64(settings.unit)), "profile": .string(settings.profile.name)]
    }

    mutating func run() async throws {
        while true {
            try Task.checkCancellation()
            let due = schedule.takeDue(now: .now)
            if !due.isEmpty {
                let key = due.map(\.name)
                let plan = plans[key] ?? readPlan(resources: due)
                plans[key] = plan
                try await poll(plan)
            }
            var pause = schedule.untilNext(now: .now)
            if unanswered >= ModbusGantryDriver.unansweredBeforeDown {
                // A silent unit: ask again later and later, everything at once when we do.
                let doublings = min(unanswered - ModbusGantryDriver.unansweredBeforeDown, 16)
                pause = max(pause, min(settings.pollInterval * (1 << doublings), settings.maximumBackoff))
                schedule.makeEverythingDue(after: pause)
            }
            try await context.clock.sleep(for: pause)
        }
    }

    /// One round trip per request of the plan, in one turn on the bus. A timeout or a
    /// broken connection ends the turn (the unit or the link is gone, the rest would fail
    /// the same way); an exception fails only its own request.
    mutating func poll(_ plan: [ReadRequest]) async throws {
        let unit = settings.unit
        let retries = settings.retries
        let outcomes: [Result<ModbusRawValue, ModbusError>]
        do {
            outcomes = try await bus.perform(timeout: settings.timeout) { session throws(ModbusError) in
                var outcomes: [Result<ModbusRawValue, ModbusError>] = []
                for request in plan {
                    do throws(ModbusError) {
                        outcomes.append(
                            .success(
                                try session.read(
                                    unit: unit, table: request.table, address: request.address, count: request.count,
                                    retries: retries)))
                    } catch {
                        outcomes.append(.failure(error))
                        if case .exception = error.kind { continue }
                        break
                    }
                }
                return outcomes
            }
        } catch {
            // Could not connect (or the bus is waiting before it tries again).
            unanswered = 0
            try await down(error.message)
            return
        }

        var values: [(resource: ModbusResource, value: ModbusValue)] = []
        var answered = false
        var silence: ModbusError?
        for (request, outcome) in zip(plan, outcomes) {
            switch outcome {
            case .success(let raw):
                answered = true
                for resource in request.resources {
                    guard let part = request.raw(for: resource, in: raw) else { continue }
                    do {
                        values.append((resource, try resource.decode(part)))
                    } catch {
                        try await protocolError("\(error)", raw: raw)
                    }
                }
            case .failure(let error):
                switch error.kind {
                case .exception:
                    answered = true
                    try await protocolError("modbus exception from unit \(unit): \(error.message)", raw: nil)
                case .badResponse:
                    try await protocolError(error.message, raw: nil)
                    silence = error
                case .timeout:
                    silence = error
                case .connection:
                    unanswered = 0
                    try await down(error.message)
                    return
                }
            }
        }
        if answered {
            unanswered = 0
            try await context.heartbeat()
            if !linkUp {
                linkUp = true
                try await context.reportLink(.up(reason: "unit \(unit) answers on \(settings.endpoint)", identity: identity))
            }
        } else if let silence {
            unanswered += 1
            if unanswered >= ModbusGantryDriver.unansweredBeforeDown {
                try await down("unit \(unit) has not answered \(unanswered) polls in a row: \(silence.message)")
            }
        }
        for event in tracker.update(values) {
            try await context.emit(event.kind, data: event.data)
        }
    }

    mutating func down(_ reason: String) async throws {
        if linkUp { context.logger.warning("Modbus device down", metadata: ["reason": "\(reason)"]) }
        linkUp = false
        try await context.reportLink(.down(reason: reason))
    }

    mutating func protocolError(_ message: String, raw: ModbusRawValue?) async throws {
        guard var data = errors.admit(message, now: .now) else { return }
        if case .registers(let registers)? = raw {
            data["bytes_hex"] = .string(registers.map { String(format: "%04x", $0) }.joined(separator: " "))
        }
        try await context.emit("device.protocol_error", data: data)
    }
}

/// When each resource is due: resources are grouped by their poll interval, each group
/// with its own deadline.
struct PollSchedule {
    private var groups: [(interval: Duration, resources: [ModbusResource], next: ContinuousClock.Instant)]

    init(resources: [ModbusResource], defaultInterval: Duration) {
        let byInterval = Dictionary(grouping: resources) { $0.pollMilliseconds.map { Duration.milliseconds($0) } ?? defaultInterval }
        let start = ContinuousClock.now
        groups = byInterval.keys.sorted().map { (interval: $0, resources: byInterval[$0]!, next: start) }
    }

    /// The resources due at `now`; their groups' deadlines move one interval on (or to
    /// `now` plus one interval, when the poller fell behind).
    mutating func takeDue(now: ContinuousClock.Instant) -> [ModbusResource] {
        var due: [ModbusResource] = []
        for index in groups.indices where groups[index].next <= now + .milliseconds(1) {
            due += groups[index].resources
            let next = groups[index].next + groups[index].interval
            groups[index].next = next > now ? next : now + groups[index].interval
        }
        return due
    }

    /// Time until the next group is due (zero when one is already).
    func untilNext(now: ContinuousClock.Instant) -> Duration {
        let next = groups.map(\.next).min() ?? now + .seconds(1)
        return max(.zero, now.duration(to: next))
    }

    /// Puts every group's deadline at `now + delay`.
    mutating func makeEverythingDue(after delay: Duration) {
        let at = ContinuousClock.now + delay
        for index in groups.indices { groups[index].next = at }
    }
}
