import NMBridgeCore

/// What some resources of a profile mean for a gantry, from the profile's `[gantry]` table:
/// which resource is the motion state, which the acquisition state, which values are
/// positions and which are faults. The driver derives `gantry.motion`,
/// `gantry.acquisition` and `gantry.fault.*` events from them; every resource, named here
/// or not, is reported in `gantry.state`.
public struct GantryRoles: Sendable, Equatable {
    /// The resource with the motion state (an integer with an `enum`).
    public var motion: String?
    /// Its states that mean the gantry moves.
    public var movingStates: Set<String>
    /// The resource with the acquisition state (an integer with an `enum`).
    public var acquisition: String?
    /// Its states that mean acquiring, and paused; every other state means stopped.
    public var acquiringStates: Set<String>
    public var pausedStates: Set<String>
    /// Numeric resources reported with `gantry.motion` (where the gantry started and stopped).
    public var positions: [String]
    /// Bitfields (one fault per bit) and bools (one fault, named after the resource) whose
    /// set bits are faults.
    public var faults: [String]

    public init(
        motion: String? = nil, movingStates: Set<String> = ["moving", "homing"], acquisition: String? = nil,
        acquiringStates: Set<String> = ["acquiring"], pausedStates: Set<String> = ["paused"], positions: [String] = [],
        faults: [String] = []
    ) {
        self.motion = motion
        self.movingStates = movingStates
        self.acquisition = acquisition
        self.acquiringStates = acquiringStates
        self.pausedStates = pausedStates
        self.positions = positions
        self.faults = faults
    }
}

extension ModbusProfileLoader {
    /// Reads `[gantry]`; without it: no motion or acquisition events, every bitfield a fault word.
    static func readGantryRoles(_ reader: ConfigTableReader, resources: [ModbusResource]) -> GantryRoles {
        let byName = Dictionary(resources.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        guard reader.has("gantry"), let table = reader.table("gantry") else {
            return GantryRoles(faults: resources.filter { $0.type == .bitfield }.map(\.name))
        }
        var roles = GantryRoles()

        /// A state resource and the subsets of its states that carry a meaning.
        func stateResource(_ key: String, subsets: [(key: String, value: WritableKeyPath<GantryRoles, Set<String>>)]) -> String? {
            let name = table.string(key)
            let resource = name.flatMap { byName[$0] }
            if let name, resource == nil {
                table.problem(key, "no resource is named \"\(name)\"")
            } else if let resource, resource.states.isEmpty {
                table.problem(key, "\"\(resource.name)\" has no enum states, so its codes have no names to match")
            }
            for subset in subsets {
                guard let states = table.strings(subset.key) else { continue }
                if name == nil { table.problem(subset.key, "needs \(key) = the resource these states belong to") }
                if let resource, !resource.states.isEmpty {
                    let known = Set(resource.states.values)
                    for state in states where !known.contains(state) {
                        table.problem(
                            subset.key,
                            "\"\(state)\" is not a state of \"\(resource.name)\" (\(known.sorted().joined(separator: ", ")))")
                    }
                }
                roles[keyPath: subset.value] = Set(states)
            }
            return resource?.states.isEmpty == false ? resource?.name : nil
        }
        roles.motion = stateResource("motion", subsets: [("moving_states", \.movingStates)])
        roles.acquisition = stateResource(
            "acquisition", subsets: [("acquiring_states", \.acquiringStates), ("paused_states", \.pausedStates)])
        if !roles.acquiringStates.isDisjoint(with: roles.pausedStates) {
            table.problem("paused_states", "a state cannot mean both acquiring and paused")
        }

        for name in table.strings("positions") ?? [] {
            guard let resource = byName[name] else {
                table.problem("positions", "no resource is named \"\(name)\"")
                continue
            }
            guard resource.type.isNumeric, resource.states.isEmpty else {
                table.problem("positions", "\"\(name)\" is not a number (\(resource.type)), so it is not a position")
                continue
            }
            roles.positions.append(name)
        }
        if let faults = table.strings("faults") {
            for name in faults {
                guard let resource = byName[name] else {
                    table.problem("faults", "no resource is named \"\(name)\"")
                    continue
                }
                guard resource.type == .bitfield || resource.type == .bool else {
                    table.problem("faults", "\"\(name)\" is a \(resource.type); faults are bitfields or bools")
                    continue
                }
                roles.faults.append(name)
            }
        } else {
            roles.faults = resources.filter { $0.type == .bitfield }.map(\.name)
        }
        table.reportUnknownKeys()
        return roles
    }
}
