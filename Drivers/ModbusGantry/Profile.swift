/// A declarative register map: which values a Modbus device exposes, where, and how to read
/// them. Loaded from `profiles/*.toml` by ``ModbusProfileLoader``; docs/modbus-profiles.md
/// documents the format.
///
/// A profile is plain data. Everything in it has been validated by the loader: names are
/// unique, addresses fit the 16-bit address space, ranges do not overlap, and every key
/// suits its type. Code that builds one by hand (tests, the simulator) gets no such check.
public struct ModbusProfile: Sendable, Equatable {
    /// How addresses are written in the profile file.
    public enum Addressing: String, Sendable, CaseIterable {
        /// `address = 0` is the first register: the number sent on the wire.
        case zeroBased = "zero-based"
        /// `address = 1` is the first register, as many vendor manuals number them. The loader
        /// subtracts 1, so ``ModbusResource/address`` is always the wire address.
        case oneBased = "one-based"
    }

    /// The profile's name (`name = …`; defaults to the file name without `.toml`).
    public var name: String
    /// Free text for operators (`description = …`).
    public var description: String?
    /// How the file numbered its addresses. Informational: resources hold wire addresses.
    public var addressing: Addressing
    /// The resources in file order.
    public var resources: [ModbusResource]
    /// What the resources mean for a gantry (`[gantry]`).
    public var gantry: GantryRoles

    /// Creates a profile. Without `gantry`, every bitfield is a fault word and nothing else
    /// has a role.
    public init(
        name: String, description: String? = nil, addressing: Addressing = .zeroBased, resources: [ModbusResource],
        gantry: GantryRoles? = nil
    ) {
        self.name = name
        self.description = description
        self.addressing = addressing
        self.resources = resources
        self.gantry = gantry ?? GantryRoles(faults: resources.filter { $0.type == .bitfield }.map(\.name))
    }

    /// The resource called `name`, if any.
    public subscript(name: String) -> ModbusResource? {
        resources.first { $0.name == name }
    }
}

/// The four Modbus data tables. Coils and discrete inputs hold single bits; input and holding
/// registers hold 16-bit words.
public enum ModbusTable: String, Sendable, CaseIterable, Comparable {
    /// Read-write bits (function 1 to read).
    case coil
    /// Read-only bits (function 2).
    case discrete
    /// Read-only 16-bit registers (function 4).
    case input
    /// Read-write 16-bit registers (function 3).
    case holding

    /// Whether the table holds bits rather than registers.
    public var holdsBits: Bool { self == .coil || self == .discrete }

    /// Orders tables as declared, so read plans come out in a stable order.
    public static func < (lhs: ModbusTable, rhs: ModbusTable) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// What a resource's bits or registers mean.
public enum ModbusDataType: Sendable, Hashable, CustomStringConvertible {
    /// One bit of a coil or discrete-input table.
    case bool
    /// One register, unsigned.
    case u16
    /// One register, two's complement.
    case i16
    /// Two registers, unsigned.
    case u32
    /// Two registers, two's complement.
    case i32
    /// Four registers, unsigned. Decoded to `Double`: exact up to 2^53.
    case u64
    /// Four registers, two's complement. Decoded to `Double`: exact up to ±2^53.
    case i64
    /// Two registers, IEEE-754 binary32.
    case f32
    /// Four registers, IEEE-754 binary64.
    case f64
    /// Text in `registers` registers, two bytes each, the high byte first; padded with NUL
    /// or spaces.
    case string(registers: Int)
    /// One register whose bits carry named flags (fault words, status words).
    case bitfield

    /// The type names accepted in a profile's `type` key.
    public static let names = ["bool", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "string", "bitfield"]

    /// The name as written in a profile (`string` without its length).
    public var description: String {
        switch self {
        case .bool: "bool"
        case .u16: "u16"
        case .i16: "i16"
        case .u32: "u32"
        case .i32: "i32"
        case .u64: "u64"
        case .i64: "i64"
        case .f32: "f32"
        case .f64: "f64"
        case .string: "string"
        case .bitfield: "bitfield"
        }
    }

    /// How many registers (or, for `bool`, bits) one value occupies.
    public var width: Int {
        switch self {
        case .bool, .u16, .i16, .bitfield: 1
        case .u32, .i32, .f32: 2
        case .u64, .i64, .f64: 4
        case .string(let registers): registers
        }
    }

    /// Integer types: the ones that may carry an `enum` of state codes.
    public var isInteger: Bool {
        switch self {
        case .u16, .i16, .u32, .i32, .u64, .i64: true
        default: false
        }
    }

    /// Types whose value is a number: they take `scale`, `offset`, `unit` and `deadband`.
    public var isNumeric: Bool { isInteger || self == .f32 || self == .f64 }

    /// 32- and 64-bit types: the only ones for which a word ``ModbusWordOrder`` means something.
    public var isMultiRegisterNumber: Bool { isNumeric && width > 1 }
}

/// How the bytes of a 32- or 64-bit value are laid out over its registers.
///
/// Letters name the value's bytes from the most significant (A) down, in the order they
/// travel on the wire. For 0x11223344: ABCD sends 11 22 33 44, DCBA 44 33 22 11, BADC
/// 22 11 44 33, CDAB 33 44 11 22. For 64-bit values the same two moves apply to four
/// registers: BADC swaps the bytes inside each register, CDAB reverses the register order,
/// DCBA does both.
public enum ModbusWordOrder: String, Sendable, CaseIterable {
    /// Big-endian: most significant register first, high byte first in each. The Modbus default.
    case abcd = "ABCD"
    /// Little-endian: every byte reversed.
    case dcba = "DCBA"
    /// Registers in big-endian order, bytes swapped inside each register.
    case badc = "BADC"
    /// Registers in reverse order ("word swap"), bytes in order inside each. Common on PLCs.
    case cdab = "CDAB"

    /// Whether the bytes inside each register are swapped.
    var swapsBytes: Bool { self == .badc || self == .dcba }
    /// Whether the register order is reversed.
    var reversesRegisters: Bool { self == .cdab || self == .dcba }
}

/// One named value in a register map.
public struct ModbusResource: Sendable, Equatable {
    /// Identifier, unique in its profile (`rotation_angle`).
    public var name: String
    /// The data table it lives in.
    public var table: ModbusTable
    /// The wire (0-based) address of its first bit or register.
    public var address: Int
    /// What its bits or registers mean.
    public var type: ModbusDataType
    /// Byte layout of 32- and 64-bit values; ignored by other types.
    public var order: ModbusWordOrder
    /// Multiplied into a numeric raw value: `value = raw × scale + offset`.
    public var scale: Double
    /// Added after scaling.
    public var offset: Double
    /// Unit of the scaled value (`deg`, `mm`); becomes part of the event field name.
    public var unit: String?
    /// A numeric change smaller than or equal to this is not reported. 0: every change.
    public var deadband: Double
    /// State names by integer code (`enum = { 0 = "idle", 1 = "moving" }`).
    public var states: [Int64: String]
    /// Flag names by bit number, 0 the least significant (`bits = { 0 = "overtravel" }`).
    public var bits: [Int: String]
    /// Poll interval of this resource in milliseconds; `nil`: the device's `poll_ms`.
    public var pollMilliseconds: Int?
    /// Line of the resource's `[[resource]]` header, for messages; 0 when built in code.
    public var line: Int

    /// Creates a resource; defaults are those of a profile that leaves the key out.
    public init(
        name: String, table: ModbusTable, address: Int, type: ModbusDataType, order: ModbusWordOrder = .abcd,
        scale: Double = 1, offset: Double = 0, unit: String? = nil, deadband: Double = 0,
        states: [Int64: String] = [:], bits: [Int: String] = [:], pollMilliseconds: Int? = nil, line: Int = 0
    ) {
        self.name = name
        self.table = table
        self.address = address
        self.type = type
        self.order = order
        self.scale = scale
        self.offset = offset
        self.unit = unit
        self.deadband = deadband
        self.states = states
        self.bits = bits
        self.pollMilliseconds = pollMilliseconds
        self.line = line
    }

    /// The field name in events: `rotation_angle_deg` when a unit is given, else the name.
    public var fieldName: String {
        guard let unit else { return name }
        return "\(name)_\(unit)"
    }

    /// The bits or registers it occupies.
    public var addresses: ClosedRange<Int> { address...(address + type.width - 1) }
}
