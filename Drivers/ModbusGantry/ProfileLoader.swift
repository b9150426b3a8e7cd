import Foundation
import NMBridgeCore

/// Reads and validates a register-map profile (docs/modbus-profiles.md).
///
/// Uses the project's TOML parser and ``ConfigTableReader`` so that profile problems look
/// exactly like configuration problems: `FILE:LINE: resource[NAME].KEY: message`, all of
/// them at once, sorted by line.
public enum ModbusProfileLoader {
    /// Keys of the profile's top level.
    static let profileKeys = ["name", "description", "addressing", "resource", "gantry"]
    /// Keys of one `[[resource]]`.
    static let resourceKeys = [
        "name", "table", "address", "type", "length", "order", "scale", "offset", "unit", "deadband", "enum", "bits",
        "poll_ms",
    ]
    /// Longest string: one read request is at most 125 registers, and a value is read whole.
    static let maximumStringRegisters = 125

    /// Reads the profile at `path`. A file that cannot be read is one problem of the error.
    public static func load(path: String) throws(ConfigurationError) -> ModbusProfile {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(problems: [
                ConfigProblem(file: path, key: "(file)", line: nil, message: "cannot read the profile: \(error.localizedDescription)")
            ])
        }
        let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        return try load(text: text, file: path, defaultName: stem)
    }

    /// Parses and validates profile text. `file` only labels the problems; `defaultName` is
    /// the profile name when the text sets none.
    public static func load(text: String, file: String?, defaultName: String = "profile") throws(ConfigurationError)
        -> ModbusProfile
    {
        let reader = try ConfigTableReader.parse(text: text, file: file)
        let name = reader.string("name") ?? defaultName
        let description = reader.string("description")
        let addressing = reader.choice("addressing", ModbusProfile.Addressing.allCases.map(\.rawValue))
            .flatMap(ModbusProfile.Addressing.init(rawValue:)) ?? .zeroBased

        let resourceReaders = reader.tables("resource") { index, table in
            if let name = table["name"]?.string { return "resource[\(name)]" }
            return "resource[#\(index + 1)]"
        }
        if resourceReaders.isEmpty, !reader.has("resource") {
            reader.tableProblem("a profile needs at least one [[resource]]")
        }

        // Each resource alone, then the checks that compare resources with each other.
        var loaded: [(resource: ModbusResource, reader: ConfigTableReader)] = []
        var firstLineOfName: [String: Int] = [:]
        for table in resourceReaders {
            let resource = readResource(table, addressing: addressing)
            table.reportUnknownKeys(known: resourceKeys)
            // Names are compared as written, so a duplicate is found even when the first
            // resource of that name had other problems.
            if let name = table.table["name"]?.string {
                if let first = firstLineOfName[name] {
                    table.problem("name", "duplicate resource name \"\(name)\" (first defined on line \(first))")
                    continue
                }
                firstLineOfName[name] = table.line(of: "name")
            }
            if let resource { loaded.append((resource, table)) }
        }
        reportOverlaps(loaded)
        let roles = readGantryRoles(reader, resources: loaded.map(\.resource))
        reader.reportUnknownKeys(known: profileKeys)

        if !reader.problems.isEmpty {
            throw ConfigurationError(problems: reader.problems.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
        }
        return ModbusProfile(
            name: name, description: description, addressing: addressing, resources: loaded.map(\.resource), gantry: roles)
    }

    /// One `[[resource]]`, or nil when a problem leaves it unusable (the problem is recorded).
    /// Keys are read even after a problem, so each is checked and none is reported unknown.
    private static func readResource(_ table: ConfigTableReader, addressing: ModbusProfile.Addressing) -> ModbusResource? {
        var usable = true
        let name = table.string("name", required: true)
        if let name, !isIdentifier(name) {
            table.problem("name", "\"\(name)\" must be 1–64 characters of a–z, A–Z, 0–9 and '_', not starting with a digit")
            usable = false
        }
        let tableName = table.choice("table", ModbusTable.allCases.map(\.rawValue), required: true)
        let dataTable = tableName.flatMap(ModbusTable.init(rawValue:))

        // Type, with the string length that completes it.
        let typeName = table.choice("type", ModbusDataType.names, required: true)
        let length = table.int("length", in: 1...Int64(maximumStringRegisters))
        var type: ModbusDataType?
        switch typeName {
        case "string"?:
            if let length {
                type = .string(registers: Int(length))
            } else if !table.has("length") {
                table.problem("type", "a string needs length = number of registers (1–\(maximumStringRegisters))")
            }
        case let other?:
            type = simpleType(other)
            if table.has("length") { table.problem("length", "length applies to type string only, not \(other)") }
        case nil:
            break
        }

        // Type and table must agree: bits hold bools, registers hold everything else.
        if let type, let dataTable {
            if type == .bool, !dataTable.holdsBits {
                table.problem("type", "bool is read from coil or discrete tables, not from \(dataTable.rawValue) registers")
                usable = false
            } else if type != .bool, dataTable.holdsBits {
                table.problem("type", "\(type) needs registers; the \(dataTable.rawValue) table holds single bits (use bool)")
                usable = false
            }
        }

        // Address, as written and as sent on the wire; the whole span must fit.
        var address: Int?
        let firstAddress: Int64 = addressing == .oneBased ? 1 : 0
        if let written = table.int("address", in: firstAddress...(firstAddress + 65535), required: true) {
            let wire = Int(written - firstAddress)
            address = wire
            if let type, wire + type.width - 1 > 65535 {
                let last = Int(written) + type.width - 1
                table.problem(
                    "address",
                    "\(type) spans \(type.width) registers, \(written)…\(last), past the last address \(firstAddress + 65535)")
                usable = false
            }
        }

        // Word order: only where there is more than one register of one number.
        var order = ModbusWordOrder.abcd
        if let text = table.choice("order", ModbusWordOrder.allCases.map(\.rawValue)) {
            order = ModbusWordOrder(rawValue: text)!
            if let type, !type.isMultiRegisterNumber {
                table.problem("order", "order applies to 32- and 64-bit numbers only, not to \(type)")
                usable = false
            }
        }

        // Numeric presentation.
        let scale = table.double("scale")
        if scale == 0 { table.problem("scale", "must not be 0") }
        let offset = table.double("offset")
        let unit = table.string("unit")
        if let unit, !isIdentifier(unit) || unit.count > 16 {
            table.problem("unit", "\"\(unit)\" must be 1–16 characters of a–z, A–Z, 0–9 and '_' (it becomes part of a field name)")
        }
        var deadband = table.double("deadband")
        if let band = deadband, band < 0 {
            table.problem("deadband", "must not be negative (it is an absolute change in the scaled unit)")
            deadband = nil
        }
        let pollMilliseconds = table.int("poll_ms", in: 10...3_600_000).map(Int.init)

        // State codes and named bits.
        let states = readStates(table, type: type)
        let bits = readBits(table, type: type)
        if let type {
            for key in ["scale", "offset", "unit", "deadband"] where table.has(key) {
                if !type.isNumeric {
                    table.problem(key, "\(key) applies to numbers only, not to \(type)")
                } else if !states.isEmpty {
                    table.problem(key, "\(key) has no meaning for a resource with enum states")
                }
            }
        }

        guard usable, let name, let dataTable, let type, let address else { return nil }
        return ModbusResource(
            name: name, table: dataTable, address: address, type: type, order: order, scale: scale ?? 1, offset: offset ?? 0,
            unit: unit, deadband: deadband ?? 0, states: states, bits: bits, pollMilliseconds: pollMilliseconds,
            line: table.table.location.line)
    }

    /// Every type but `string`, which needs its length.
    private static func simpleType(_ name: String) -> ModbusDataType? {
        switch name {
        case "bool": .bool
        case "u16": .u16
        case "i16": .i16
        case "u32": .u32
        case "i32": .i32
        case "u64": .u64
        case "i64": .i64
        case "f32": .f32
        case "f64": .f64
        case "bitfield": .bitfield
        default: nil
        }
    }

    /// `enum = { 0 = "idle", … }`: integer codes within the type's range to unique state names.
    private static func readStates(_ table: ConfigTableReader, type: ModbusDataType?) -> [Int64: String] {
        guard table.has("enum"), let codes = table.table("enum") else { return [:] }
        if let type, !type.isInteger {
            table.problem("enum", "enum applies to integer types only, not to \(type)")
            return [:]
        }
        var states: [Int64: String] = [:]
        var lineOfState: [String: Int] = [:]
        for key in codes.table.keys {
            guard let code = Int64(key), type.map({ integerRange($0).contains(code) }) ?? true else {
                let range = type.map { integerRange($0) }.map { " (\($0.lowerBound)…\($0.upperBound))" } ?? ""
                codes.problem(key, "\"\(key)\" is not a code of this type\(range)")
                continue
            }
            guard let state = codes.string(key) else { continue }
            let line = codes.line(of: key) ?? 0
            if !isIdentifier(state) {
                codes.problem(key, "state \"\(state)\" must be 1–64 characters of a–z, A–Z, 0–9 and '_'")
            } else if states[code] != nil {
                codes.problem(key, "code \(code) is given twice")
            } else if let first = lineOfState[state] {
                codes.problem(key, "state \"\(state)\" is already used on line \(first)")
            } else {
                states[code] = state
                lineOfState[state] = line
            }
        }
        return states
    }

    /// `bits = { 0 = "overtravel", … }`: bit numbers 0–15 of a bitfield to unique flag names.
    private static func readBits(_ table: ConfigTableReader, type: ModbusDataType?) -> [Int: String] {
        guard table.has("bits"), let flags = table.table("bits") else { return [:] }
        if let type, type != .bitfield {
            table.problem("bits", "bits applies to type bitfield only, not to \(type)")
            return [:]
        }
        var bits: [Int: String] = [:]
        var lineOfName: [String: Int] = [:]
        for key in flags.table.keys {
            guard let bit = Int(key), (0...15).contains(bit) else {
                flags.problem(key, "\"\(key)\" is not a bit number 0–15")
                continue
            }
            guard let name = flags.string(key) else { continue }
            if !isIdentifier(name) {
                flags.problem(key, "bit name \"\(name)\" must be 1–64 characters of a–z, A–Z, 0–9 and '_'")
            } else if bits[bit] != nil {
                flags.problem(key, "bit \(bit) is named twice")
            } else if let first = lineOfName[name] {
                flags.problem(key, "bit name \"\(name)\" is already used on line \(first)")
            } else {
                bits[bit] = name
                lineOfName[name] = flags.line(of: key) ?? 0
            }
        }
        return bits
    }

    /// Resources of one table must not share a bit or register. Each overlap is reported
    /// once, at the later resource's `address`.
    private static func reportOverlaps(_ loaded: [(resource: ModbusResource, reader: ConfigTableReader)]) {
        let byTable = Dictionary(grouping: loaded, by: \.resource.table)
        for table in byTable.keys.sorted() {
            let sorted = byTable[table]!.sorted {
                ($0.resource.address, $0.resource.line) < ($1.resource.address, $1.resource.line)
            }
            // The resource reaching furthest so far: any later start at or below its end overlaps.
            var reach: (resource: ModbusResource, reader: ConfigTableReader)?
            for item in sorted {
                if let previous = reach, item.resource.address <= previous.resource.addresses.upperBound {
                    // Blame the one written later in the file, so the message points at the newcomer.
                    let (blamed, other) = item.resource.line >= previous.resource.line ? (item, previous) : (previous, item)
                    blamed.reader.problem(
                        "address",
                        "\(table.rawValue) \(describe(blamed.resource.addresses)) overlaps \"\(other.resource.name)\" "
                            + "(line \(other.resource.line), \(describe(other.resource.addresses)))")
                }
                if reach == nil || item.resource.addresses.upperBound > reach!.resource.addresses.upperBound {
                    reach = item
                }
            }
        }
    }

    /// `12` or `12…13`, in wire addresses.
    private static func describe(_ range: ClosedRange<Int>) -> String {
        range.count == 1 ? "address \(range.lowerBound)" : "addresses \(range.lowerBound)…\(range.upperBound)"
    }

    /// The codes an integer type can hold, clamped to `Int64` (enum keys are TOML integers).
    static func integerRange(_ type: ModbusDataType) -> ClosedRange<Int64> {
        switch type {
        case .u16: 0...Int64(UInt16.max)
        case .i16: Int64(Int16.min)...Int64(Int16.max)
        case .u32: 0...Int64(UInt32.max)
        case .i32: Int64(Int32.min)...Int64(Int32.max)
        case .u64: 0...Int64.max
        default: Int64.min...Int64.max
        }
    }

    /// ASCII letters, digits and '_', not starting with a digit, 1–64 characters: names that
    /// are safe as event field names and in messages.
    static func isIdentifier(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (1...64).contains(bytes.count), !(0x30...0x39).contains(bytes[0]) else { return false }
        return bytes.allSatisfy { c in
            (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || c == 0x5F
        }
    }
}
