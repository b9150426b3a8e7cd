import NMBridgeCore

/// One event the tracker derived, before the driver journals it.
public struct GantryEvent: Sendable, Equatable {
    public var kind: String
    public var data: [String: JSONValue]
}

/// Turns successive reads of a gantry's resources into events. Pure: no I/O, no clock.
///
/// - `gantry.state`: the values that changed since they were last reported, numbers only
///   once they moved by more than their deadband (measured from the last *reported* value,
///   so a slow drift is reported once it adds up). The first read reports every value.
/// - `gantry.motion` / `gantry.acquisition`: transitions of the `[gantry]` state resources.
///   The first read reports none (the state is in that read's `gantry.state`).
/// - `gantry.fault.raised` / `.cleared`: per named bit of each fault resource; a fault that
///   is already present at the first read is raised.
public struct GantryTracker: Sendable {
    public let profile: ModbusProfile
    private var reported: [String: ModbusValue] = [:]
    private var latest: [String: ModbusValue] = [:]

    public init(profile: ModbusProfile) {
        self.profile = profile
    }

    /// The events for one poll's values (any subset of the resources), in the order they
    /// should be journaled: state, motion, acquisition, faults.
    public mutating func update(_ values: [(resource: ModbusResource, value: ModbusValue)]) -> [GantryEvent] {
        var events: [GantryEvent] = []
        var changed: [String: JSONValue] = [:]
        let previous = latest
        for (resource, value) in values {
            latest[resource.name] = value
            if let old = reported[resource.name], !Self.differs(old, value, deadband: resource.deadband) { continue }
            reported[resource.name] = value
            changed[resource.fieldName] = Self.json(value)
        }
        if !changed.isEmpty { events.append(GantryEvent(kind: "gantry.state", data: ["values": .object(changed)])) }

        let roles = profile.gantry
        if let motion = roles.motion, let old = previous[motion], let new = latest[motion], old != new,
            case .state(let oldState) = old, case .state(let newState) = new
        {
            let wasMoving = roles.movingStates.contains(oldState)
            let isMoving = roles.movingStates.contains(newState)
            if wasMoving != isMoving {
                events.append(
                    GantryEvent(
                        kind: "gantry.motion",
                        data: [
                            "state": .string(isMoving ? "started" : "stopped"), "motion_state": .string(newState),
                            "positions": .object(positions()),
                        ]))
            }
        }
        if let acquisition = roles.acquisition, let old = previous[acquisition], let new = latest[acquisition],
            case .state(let oldState) = old, case .state(let newState) = new
        {
            let before = phase(oldState)
            let after = phase(newState)
            if before != after {
                let transition =
                    switch after {
                    case .acquiring: before == .paused ? "resumed" : "started"
                    case .paused: "paused"
                    case .stopped: "stopped"
                    }
                events.append(
                    GantryEvent(kind: "gantry.acquisition", data: ["state": .string(transition), "acquisition_state": .string(newState)]))
            }
        }
        for name in roles.faults {
            guard let resource = profile[name], let new = latest[name] else { continue }
            let now = Self.faults(of: resource, new)
            let before = previous[name].map { Self.faults(of: resource, $0) } ?? []
            let raised = now.subtracting(before)
            var word: JSONValue?  // the register as read, only when something was raised
            if !raised.isEmpty, case .registers(let registers)? = try? resource.encode(new), let register = registers.first {
                word = .string("\(name)=0x" + String(register, radix: 16, uppercase: true))
            }
            for fault in raised.sorted() {
                var data: [String: JSONValue] = ["fault": .string(fault), "resource": .string(name)]
                data["word"] = word
                events.append(GantryEvent(kind: "gantry.fault.raised", data: data))
            }
            for fault in before.subtracting(now).sorted() {
                events.append(GantryEvent(kind: "gantry.fault.cleared", data: ["fault": .string(fault), "resource": .string(name)]))
            }
        }
        return events
    }

    private enum Phase { case acquiring, paused, stopped }

    private func phase(_ state: String) -> Phase {
        if profile.gantry.acquiringStates.contains(state) { return .acquiring }
        if profile.gantry.pausedStates.contains(state) { return .paused }
        return .stopped
    }

    /// The latest values of the position resources, by field name.
    private func positions() -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for name in profile.gantry.positions {
            if let resource = profile[name], let value = latest[name] { out[resource.fieldName] = Self.json(value) }
        }
        return out
    }

    /// The faults a value shows: a bitfield's set bits, or a true bool named after its resource.
    static func faults(of resource: ModbusResource, _ value: ModbusValue) -> Set<String> {
        switch value {
        case .flags(let flags): flags
        case .bool(true): [resource.name]
        default: []
        }
    }

    static func differs(_ old: ModbusValue, _ new: ModbusValue, deadband: Double) -> Bool {
        if case .number(let a) = old, case .number(let b) = new {
            // 10.05 − 10 is 0.0500000000000007 in binary: a change equal to the deadband up to
            // rounding noise is inside it.
            return a != b && abs(a - b) - deadband > 1e-9 * max(1, abs(a), abs(b))
        }
        return old != new
    }

    /// A value as event data: numbers, booleans, state names, text, sorted flag names.
    public static func json(_ value: ModbusValue) -> JSONValue {
        switch value {
        case .number(let number): .double(number)
        case .bool(let flag): .bool(flag)
        case .state(let name): .string(name)
        case .text(let text): .string(text)
        case .flags(let flags): .array(flags.sorted().map(JSONValue.string))
        }
    }
}
