import Foundation

/// A resource's value after decoding.
public enum ModbusValue: Sendable, Hashable {
    /// A numeric resource, scale and offset applied.
    case number(Double)
    /// A coil or discrete input.
    case bool(Bool)
    /// The state name of an integer resource with an `enum`.
    case state(String)
    /// A string resource, trailing NUL and space padding removed.
    case text(String)
    /// The flags of a bitfield that are set: their names, or `bit<N>` for unnamed bits (so a
    /// fault bit missing from the profile is still seen).
    case flags(Set<String>)
}

/// The raw form of a value as Modbus carries it.
public enum ModbusRawValue: Sendable, Hashable {
    /// 16-bit registers as libmodbus returns them: host integers, each sent high byte first.
    case registers([UInt16])
    /// Coil or discrete-input bits.
    case bits([Bool])
}

/// Why raw data did not give a value, or a value could not be encoded. Names the resource.
public struct ModbusValueError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong; extensible, so new cases do not break callers that switch on it.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let name: String
        /// Too few or too many registers or bits for the type, or registers for a bit table.
        public static let wrongLength = Code(name: "wrong length")
        /// A float register pair or quad holds NaN or an infinity, or scaling overflowed.
        public static let notFinite = Code(name: "not finite")
        /// An integer code that the resource's `enum` does not name.
        public static let unknownState = Code(name: "unknown state")
        /// A value of the wrong kind for the resource (encoding only).
        public static let wrongKind = Code(name: "wrong kind")
        /// A number that the type cannot hold once scaled, or text too long (encoding only).
        public static let outOfRange = Code(name: "out of range")
        /// A flag or state name the resource does not know (encoding only).
        public static let unknownName = Code(name: "unknown name")

        /// The code's name.
        public var description: String { name }
    }

    /// What went wrong.
    public var code: Code
    /// The resource's name.
    public var resource: String
    /// A human explanation naming the values involved.
    public var message: String

    /// Creates an error.
    public init(code: Code, resource: String, message: String) {
        self.code = code
        self.resource = resource
        self.message = message
    }

    /// `rotation_angle: f32 holds NaN`.
    public var description: String { "\(resource): \(message)" }
}

// MARK: - Decoding

extension ModbusResource {
    /// Decodes raw bits or registers. Total: any input gives a value or a ``ModbusValueError``.
    public func decode(_ raw: ModbusRawValue) throws(ModbusValueError) -> ModbusValue {
        switch raw {
        case .registers(let registers): try decode(registers: registers)
        case .bits(let bits): try decode(bits: bits)
        }
    }

    /// Decodes a coil or discrete input from exactly one bit.
    public func decode(bits: [Bool]) throws(ModbusValueError) -> ModbusValue {
        guard type == .bool else {
            throw error(.wrongLength, "\(type) is read from registers, got \(bits.count) bit(s)")
        }
        guard bits.count == 1 else { throw error(.wrongLength, "bool needs 1 bit, got \(bits.count)") }
        return .bool(bits[0])
    }

    /// Decodes from exactly ``ModbusDataType/width`` registers, in the order read.
    public func decode(registers: [UInt16]) throws(ModbusValueError) -> ModbusValue {
        guard type != .bool else { throw error(.wrongLength, "bool is read from bits, got \(registers.count) register(s)") }
        guard registers.count == type.width else {
            throw error(.wrongLength, "\(type) needs \(type.width) register(s), got \(registers.count)")
        }
        switch type {
        case .string:
            return .text(Self.decodeText(registers))
        case .bitfield:
            let word = registers[0]
            var set: Set<String> = []
            for bit in 0..<16 where word & (1 << bit) != 0 {
                set.insert(bits[bit] ?? "bit\(bit)")
            }
            return .flags(set)
        default:
            return try decodeNumber(registers)
        }
    }

    /// Integers and floats: canonical big-endian word, then sign or IEEE-754, then enum or scale.
    private func decodeNumber(_ registers: [UInt16]) throws(ModbusValueError) -> ModbusValue {
        let word = Self.canonicalWord(registers, order: type.isMultiRegisterNumber ? order : .abcd)
        // The integer code (for enum) and the unscaled number.
        let code: Int64?
        let raw: Double
        switch type {
        case .u16, .u32:
            code = Int64(word)
            raw = Double(word)
        case .i16:
            code = Int64(Int16(truncatingIfNeeded: word))
            raw = Double(code!)
        case .i32:
            code = Int64(Int32(truncatingIfNeeded: word))
            raw = Double(code!)
        case .u64:
            code = Int64(exactly: word)
            raw = Double(word)
        case .i64:
            code = Int64(bitPattern: word)
            raw = Double(code!)
        case .f32:
            code = nil
            // Through the float's shortest decimal form, so 310.4 stays 310.4 rather than
            // 310.4024353027344 (a binary32 carries about 7 significant digits, no more).
            let single = Float(bitPattern: UInt32(truncatingIfNeeded: word))
            raw = single.isFinite ? Double("\(single)") ?? Double(single) : Double(single)
        default:  // .f64; bool, string and bitfield never get here
            code = nil
            raw = Double(bitPattern: word)
        }
        if !states.isEmpty {
            guard let code, let state = states[code] else {
                throw error(.unknownState, "code \(code.map(String.init) ?? String(word)) is not in the enum")
            }
            return .state(state)
        }
        guard raw.isFinite else { throw error(.notFinite, "\(type) holds \(raw)") }
        let value = raw * scale + offset
        guard value.isFinite else { throw error(.notFinite, "\(raw) × \(scale) + \(offset) is not finite") }
        return .number(roundedToResolution(value))
    }

    /// An integer scaled by 0.1 reads 187.7, not 187.70000000000002: the value is rounded to
    /// the decimals of `scale` and `offset` (the resolution the device reports), which
    /// removes only binary floating-point noise. Floats are left as they are.
    private func roundedToResolution(_ value: Double) -> Double {
        guard type != .f32, type != .f64 else { return value }
        func decimals(_ x: Double) -> Int {
            var digits = 0
            var scaled = abs(x)
            while digits < 12, (scaled - scaled.rounded()).magnitude > 1e-9 * max(1, scaled) {
                scaled *= 10
                digits += 1
            }
            return digits
        }
        let places = max(decimals(scale), decimals(offset))
        guard places > 0 else { return value }
        let factor = pow(10, Double(places))
        let rounded = (value * factor).rounded() / factor
        return rounded.isFinite ? rounded : value
    }

    /// Puts registers into ABCD order and joins them, most significant first, into one word.
    static func canonicalWord(_ registers: [UInt16], order: ModbusWordOrder) -> UInt64 {
        var words = order.reversesRegisters ? registers.reversed() : registers
        if order.swapsBytes { words = words.map(\.byteSwapped) }
        return words.reduce(0) { ($0 << 16) | UInt64($1) }
    }

    /// High byte then low byte of each register, up to the first NUL, trailing spaces removed.
    /// Bytes that are not UTF-8 become U+FFFD rather than an error: a label is still useful.
    static func decodeText(_ registers: [UInt16]) -> String {
        var bytes = registers.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        if let end = bytes.firstIndex(of: 0) { bytes.removeSubrange(end...) }
        while bytes.last == 0x20 { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func error(_ code: ModbusValueError.Code, _ message: String) -> ModbusValueError {
        ModbusValueError(code: code, resource: name, message: message)
    }
}

// MARK: - Encoding

extension ModbusResource {
    /// The inverse of ``decode(_:)``: the bits or registers a device would hold for `value`.
    /// For the simulator and tests. Numbers are unscaled and, for integer types, rounded to
    /// the nearest integer; one that the type cannot hold is an error, never a wrap-around.
    public func encode(_ value: ModbusValue) throws(ModbusValueError) -> ModbusRawValue {
        switch (type, value) {
        case (.bool, .bool(let flag)):
            return .bits([flag])
        case (.string(let count), .text(let text)):
            return .registers(try encodeText(text, registers: count))
        case (.bitfield, .flags(let names)):
            return .registers([try encodeFlags(names)])
        case (_, .state(let state)) where type.isInteger && !states.isEmpty:
            guard let code = states.first(where: { $0.value == state })?.key else {
                throw error(.unknownName, "\"\(state)\" is not one of its states")
            }
            return .registers(try encodeInteger(exactly: code))
        case (_, .number(let number)) where type.isNumeric && states.isEmpty:
            return .registers(try encodeNumber(number))
        default:
            throw error(.wrongKind, "cannot encode \(value) as \(type)" + (states.isEmpty ? "" : " with enum states"))
        }
    }

    private func encodeNumber(_ value: Double) throws(ModbusValueError) -> [UInt16] {
        let raw = (value - offset) / scale
        guard raw.isFinite else { throw error(.notFinite, "(\(value) − \(offset)) / \(scale) is not finite") }
        switch type {
        case .f32:
            let single = Float(raw)
            guard single.isFinite else { throw error(.outOfRange, "\(raw) does not fit an f32") }
            return Self.registers(of: UInt64(single.bitPattern), width: 2, order: order)
        case .f64:
            return Self.registers(of: raw.bitPattern, width: 4, order: order)
        case .u64:
            // UInt64(exactly:) is nil for values beyond 2^64 or negative: no trap.
            guard let unsigned = UInt64(exactly: raw.rounded()) else {
                throw error(.outOfRange, "\(raw) does not fit a u64")
            }
            return Self.registers(of: unsigned, width: 4, order: order)
        default:
            guard let signed = Int64(exactly: raw.rounded()) else {
                throw error(.outOfRange, "\(raw) does not fit \(type)")
            }
            return try encodeInteger(exactly: signed)
        }
    }

    /// An integer code within the type's range, two's complement for signed types.
    private func encodeInteger(exactly code: Int64) throws(ModbusValueError) -> [UInt16] {
        let range = ModbusProfileLoader.integerRange(type)
        guard range.contains(code) else {
            throw error(.outOfRange, "\(code) is outside \(type) (\(range.lowerBound)…\(range.upperBound))")
        }
        // The bit pattern truncated to the width is the two's complement encoding.
        let word = UInt64(bitPattern: code)
        let width = type.width
        let masked = width == 4 ? word : word & ((1 << (16 * UInt64(width))) - 1)
        return Self.registers(of: masked, width: width, order: type.isMultiRegisterNumber ? order : .abcd)
    }

    /// Splits a word into `width` registers, most significant first, then applies `order`
    /// (both of its moves are their own inverse, so this undoes ``canonicalWord``).
    static func registers(of word: UInt64, width: Int, order: ModbusWordOrder) -> [UInt16] {
        var registers = (0..<width).map { UInt16(truncatingIfNeeded: word >> (16 * UInt64(width - 1 - $0))) }
        if order.swapsBytes { registers = registers.map(\.byteSwapped) }
        if order.reversesRegisters { registers.reverse() }
        return registers
    }

    private func encodeText(_ text: String, registers count: Int) throws(ModbusValueError) -> [UInt16] {
        var bytes = Array(text.utf8)
        guard bytes.count <= 2 * count, !bytes.contains(0) else {
            throw error(.outOfRange, "\"\(text)\" needs \(bytes.count) bytes without NUL; \(2 * count) fit")
        }
        bytes += [UInt8](repeating: 0, count: 2 * count - bytes.count)
        return (0..<count).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
    }

    private func encodeFlags(_ names: Set<String>) throws(ModbusValueError) -> UInt16 {
        var word: UInt16 = 0
        for name in names {
            if let bit = bits.first(where: { $0.value == name })?.key {
                word |= 1 << bit
            } else if name.hasPrefix("bit"), let bit = Int(name.dropFirst(3)), (0...15).contains(bit), bits[bit] == nil {
                word |= 1 << bit
            } else {
                throw error(.unknownName, "\"\(name)\" is not one of its bits")
            }
        }
        return word
    }
}
