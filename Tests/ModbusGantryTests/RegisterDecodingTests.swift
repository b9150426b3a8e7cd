import Testing
import TestSupport

@testable import ModbusGantry

/// Registers as a device in `order` sends them, built from the value's bytes without the
/// decoder's own helpers: each letter names a byte (A the most significant), and the letters
/// are the wire order. 64-bit layouts extend the 32-bit pattern to eight bytes.
func wireRegisters(_ value: UInt64, width: Int, order: ModbusWordOrder) -> [UInt16] {
    let byteCount = 2 * width
    // bytes[0] is A, the most significant byte of the value.
    let bytes = (0..<byteCount).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64(byteCount - 1 - $0))) }
    let layout: String
    switch (order, width) {
    case (.abcd, 2): layout = "ABCD"
    case (.dcba, 2): layout = "DCBA"
    case (.badc, 2): layout = "BADC"
    case (.cdab, 2): layout = "CDAB"
    case (.abcd, _): layout = "ABCDEFGH"
    case (.dcba, _): layout = "HGFEDCBA"
    case (.badc, _): layout = "BADCFEHG"
    case (.cdab, _): layout = "GHEFCDAB"
    }
    let wire = layout.unicodeScalars.map { bytes[Int($0.value) - 65] }
    return stride(from: 0, to: wire.count, by: 2).map { UInt16(wire[$0]) << 8 | UInt16(wire[$0 + 1]) }
}

func resource(_ type: ModbusDataType, _ order: ModbusWordOrder = .abcd, scale: Double = 1, offset: Double = 0) -> ModbusResource {
    ModbusResource(
        name: "value", table: type == .bool ? .coil : .holding, address: 0, type: type, order: order, scale: scale, offset: offset)
}

@Suite struct RegisterDecodingTests {
    @Test func theExampleLayoutOf0x11223344() throws {
        // The table in docs/modbus-profiles.md.
        #expect(wireRegisters(0x1122_3344, width: 2, order: .abcd) == [0x1122, 0x3344])
        #expect(wireRegisters(0x1122_3344, width: 2, order: .dcba) == [0x4433, 0x2211])
        #expect(wireRegisters(0x1122_3344, width: 2, order: .badc) == [0x2211, 0x4433])
        #expect(wireRegisters(0x1122_3344, width: 2, order: .cdab) == [0x3344, 0x1122])
        for order in ModbusWordOrder.allCases {
            let registers = wireRegisters(0x1122_3344, width: 2, order: order)
            #expect(try resource(.u32, order).decode(registers: registers) == .number(0x1122_3344))
        }
    }

    @Test(arguments: ModbusWordOrder.allCases)
    func f32InEveryOrder(order: ModbusWordOrder) throws {
        let value: Float = 123.456
        #expect(value.bitPattern == 0x42F6_E979, "IEEE-754 binary32 of 123.456")
        let expected: [ModbusWordOrder: [UInt16]] = [
            .abcd: [0x42F6, 0xE979], .cdab: [0xE979, 0x42F6], .badc: [0xF642, 0x79E9], .dcba: [0x79E9, 0xF642],
        ]
        let registers = wireRegisters(UInt64(value.bitPattern), width: 2, order: order)
        #expect(registers == expected[order])
        // Decoded through the float's shortest decimal form: 123.456, not 123.45600128173828.
        #expect(try resource(.f32, order).decode(registers: registers) == .number(123.456))
        #expect(try resource(.f32, order).encode(.number(123.456)) == .registers(registers))
    }

    @Test(arguments: ModbusWordOrder.allCases)
    func f64InEveryOrder(order: ModbusWordOrder) throws {
        let value = -9876.54321
        let registers = wireRegisters(value.bitPattern, width: 4, order: order)
        #expect(Double(bitPattern: value.bitPattern) == value)
        #expect(try resource(.f64, order).decode(registers: registers) == .number(value))
        #expect(try resource(.f64, order).encode(.number(value)) == .registers(registers))
    }

    @Test(arguments: ModbusWordOrder.allCases)
    func integersInEveryOrder(order: ModbusWordOrder) throws {
        // Two's complement patterns computed by hand, not by the decoder.
        let cases: [(ModbusDataType, UInt64, Double)] = [
            (.u32, 0xFFFF_FFFF, 4_294_967_295),
            (.i32, 0xFFFE_1DC0, -123_456),
            (.i32, 0x7FFF_FFFF, 2_147_483_647),
            (.u64, 0x0102_0304_0506_0708, Double(UInt64(0x0102_0304_0506_0708))),  // rounded to 53 bits
            (.i64, 0xFFFF_FFFF_FFFF_FFFE, -2),
            (.i64, 0x8000_0000_0000_0000, -9_223_372_036_854_775_808),
        ]
        for (type, pattern, value) in cases {
            let registers = wireRegisters(pattern, width: type.width, order: order)
            #expect(try resource(type, order).decode(registers: registers) == .number(value), "\(type) \(order)")
        }
        let sample = wireRegisters(0x0102_0304_0506_0708, width: 4, order: order)
        let expected: [ModbusWordOrder: [UInt16]] = [
            .abcd: [0x0102, 0x0304, 0x0506, 0x0708], .dcba: [0x0807, 0x0605, 0x0403, 0x0201],
            .badc: [0x0201, 0x0403, 0x0605, 0x0807], .cdab: [0x0708, 0x0506, 0x0304, 0x0102],
        ]
        #expect(sample == expected[order])
    }

    @Test func sixteenBitTypes() throws {
        #expect(try resource(.u16).decode(registers: [0xFFFE]) == .number(65534))
        #expect(try resource(.i16).decode(registers: [0xFFFE]) == .number(-2))
        #expect(try resource(.i16).decode(registers: [0x8000]) == .number(-32768))
        #expect(try resource(.i16).encode(.number(-2)) == .registers([0xFFFE]))
        #expect(try resource(.bool).decode(bits: [true]) == .bool(true))
        #expect(try resource(.bool).encode(.bool(false)) == .bits([false]))
    }

    @Test func scaleAndOffset() throws {
        // The example's table height: 0.1 mm steps from 300 mm.
        let height = resource(.u16, scale: 0.1, offset: 300)
        guard case .number(let mm) = try height.decode(registers: [1000]) else { Issue.record("not a number"); return }
        #expect(abs(mm - 400) < 1e-9)
        #expect(try height.encode(.number(400)) == .registers([1000]))
        #expect(try height.encode(.number(400.04)) == .registers([1000]), "rounded to the nearest step")
        // The example's rotation angle: i32, CDAB, 0.01°.
        let angle = resource(.i32, .cdab, scale: 0.01)
        let raw = UInt64(UInt32(bitPattern: -12_345))
        guard case .number(let degrees) = try angle.decode(registers: wireRegisters(raw, width: 2, order: .cdab)) else {
            Issue.record("not a number")
            return
        }
        #expect(abs(degrees - -123.45) < 1e-9)
        // A value that does not fit once unscaled is an error, never a wrap-around.
        #expect(throws: ModbusValueError.self) { try height.encode(.number(299)) }
        #expect(throws: ModbusValueError.self) { try resource(.i16).encode(.number(40000)) }
        #expect(throws: ModbusValueError.self) { try resource(.u64).encode(.number(-1)) }
        #expect(throws: ModbusValueError.self) { try resource(.f32).encode(.number(1e300)) }
    }

    @Test func nonFiniteFloatsAreErrors() {
        let nan32 = wireRegisters(UInt64(Float.nan.bitPattern), width: 2, order: .abcd)
        let inf32 = wireRegisters(UInt64(Float.infinity.bitPattern), width: 2, order: .abcd)
        let nan64 = wireRegisters(Double.nan.bitPattern, width: 4, order: .dcba)
        let inf64 = wireRegisters((-Double.infinity).bitPattern, width: 4, order: .dcba)
        for (type, order, registers) in [(ModbusDataType.f32, ModbusWordOrder.abcd, nan32), (.f32, .abcd, inf32), (.f64, .dcba, nan64), (.f64, .dcba, inf64)] {
            #expect {
                try resource(type, order).decode(registers: registers)
            } throws: { ($0 as? ModbusValueError)?.code == .notFinite }
        }
        // Finite raw values that overflow once scaled are errors too.
        let huge = wireRegisters(Double.greatestFiniteMagnitude.bitPattern, width: 4, order: .abcd)
        #expect(throws: ModbusValueError.self) { try resource(.f64, scale: 10).decode(registers: huge) }
    }

    @Test func enumStates() throws {
        var motion = resource(.u16)
        motion.states = [0: "idle", 1: "moving", 2: "homing", 3: "fault"]
        #expect(try motion.decode(registers: [2]) == .state("homing"))
        #expect(try motion.encode(.state("fault")) == .registers([3]))
        #expect {
            try motion.decode(registers: [7])
        } throws: { ($0 as? ModbusValueError)?.code == .unknownState && "\($0)".contains("7") }
        #expect(throws: ModbusValueError.self) { try motion.encode(.state("flying")) }
        #expect(throws: ModbusValueError.self) { try motion.encode(.number(1)) }
        // Signed codes.
        var signed = resource(.i32, .cdab)
        signed.states = [-1: "error", 1: "ok"]
        #expect(try signed.decode(registers: [0xFFFF, 0xFFFF]) == .state("error"))
        #expect(try signed.encode(.state("ok")) == .registers([0x0001, 0x0000]))
    }

    @Test func bitfields() throws {
        var faults = resource(.bitfield)
        faults.bits = [0: "overtravel", 1: "collision_sensor", 4: "door_open"]
        #expect(try faults.decode(registers: [0]) == .flags([]))
        #expect(try faults.decode(registers: [0b1_0001]) == .flags(["overtravel", "door_open"]))
        #expect(try faults.decode(registers: [0x8002]) == .flags(["collision_sensor", "bit15"]), "unnamed bits are still seen")
        #expect(try faults.encode(.flags(["door_open", "bit15"])) == .registers([0x8010]))
        #expect(throws: ModbusValueError.self) { try faults.encode(.flags(["bit0"])) }  // bit 0 has a name
        #expect(throws: ModbusValueError.self) { try faults.encode(.flags(["smoke"])) }
    }

    @Test func strings() throws {
        let firmware = resource(.string(registers: 4))
        // "V2.1" then NUL padding: 'V' = 0x56, '2' = 0x32, '.' = 0x2E, '1' = 0x31.
        #expect(try firmware.decode(registers: [0x5632, 0x2E31, 0, 0]) == .text("V2.1"))
        #expect(try firmware.decode(registers: [0x5632, 0x2E31, 0x2020, 0x2020]) == .text("V2.1"), "space padding")
        #expect(try firmware.decode(registers: [0x4142, 0x0043, 0x4445, 0]) == .text("AB"), "ends at the first NUL")
        #expect(try firmware.decode(registers: [0xFFFE, 0, 0, 0]) == .text("\u{FFFD}\u{FFFD}"), "bad UTF-8 is replaced")
        #expect(try firmware.encode(.text("V2.1")) == .registers([0x5632, 0x2E31, 0, 0]))
        #expect(try firmware.encode(.text("ABC")) == .registers([0x4142, 0x4300, 0, 0]))
        #expect(throws: ModbusValueError.self) { try firmware.encode(.text("123456789")) }
    }

    @Test func wrongLengthsAndKindsAreErrors() {
        for type in [ModbusDataType.u16, .i32, .f64, .string(registers: 3), .bitfield] {
            for count in [0, type.width - 1, type.width + 1] where count != type.width {
                #expect {
                    try resource(type).decode(registers: Array(repeating: 0, count: max(0, count)))
                } throws: { ($0 as? ModbusValueError)?.code == .wrongLength }
            }
            #expect(throws: ModbusValueError.self) { try resource(type).decode(bits: [true]) }
        }
        #expect(throws: ModbusValueError.self) { try resource(.bool).decode(bits: []) }
        #expect(throws: ModbusValueError.self) { try resource(.bool).decode(bits: [true, false]) }
        #expect(throws: ModbusValueError.self) { try resource(.bool).decode(registers: [1]) }
        #expect(throws: ModbusValueError.self) { try resource(.u16).encode(.text("x")) }
        #expect(throws: ModbusValueError.self) { try resource(.bool).encode(.number(1)) }
    }

    /// decode ∘ encode is the identity on registers, and encode ∘ decode on values, for every
    /// type and order over random raw data.
    @Test(arguments: ModbusWordOrder.allCases)
    func roundTripProperty(order: ModbusWordOrder) throws {
        var rng = SeededGenerator(state: 0x5EED + UInt64(ModbusWordOrder.allCases.firstIndex(of: order)!))
        let numeric: [ModbusDataType] = [.u16, .i16, .u32, .i32, .u64, .i64, .f32, .f64]
        for type in numeric {
            // Orders only apply to 32/64-bit types; 16-bit ones ignore them. A scale of 0.01 is
            // undone exactly by rounding for up to 32 bits; 64-bit values would lose digits.
            let subject = resource(type, order, scale: type.isInteger && type.width <= 2 ? 0.01 : 1)
            for _ in 0..<500 {
                var pattern = UInt64.random(in: .min ... .max, using: &rng)
                switch type {
                case .u16, .i16: pattern &= 0xFFFF
                case .u32, .i32, .f32: pattern &= 0xFFFF_FFFF
                // Doubles hold 64-bit integers exactly up to 2^53; keep within that
                // (sign-extended for i64, so negative values are covered too).
                case .u64: pattern &= (1 << 53) - 1
                case .i64: pattern = UInt64(bitPattern: Int64.random(in: -(1 << 53)...(1 << 53), using: &rng))
                default: break
                }
                let registers = type.isMultiRegisterNumber
                    ? wireRegisters(pattern, width: type.width, order: order)
                    : [UInt16(pattern)]
                let value: ModbusValue
                do {
                    value = try subject.decode(registers: registers)
                } catch {
                    #expect(error.code == .notFinite, "only NaN and infinities fail: \(type) \(registers)")
                    continue
                }
                var expectedRegisters = registers
                if type == .f32 || type == .f64, pattern & ~(type == .f32 ? 0x8000_0000 : 0x8000_0000_0000_0000) == 0 {
                    // −0 and +0 are the same Double once decoded: either encoding is correct.
                    expectedRegisters = try #require(subject.encode(value).registersOrNil)
                }
                #expect(try subject.encode(value) == .registers(expectedRegisters), "\(type) \(order) \(registers)")
            }
        }
        // Strings and bitfields round-trip too.
        let text = resource(.string(registers: 5))
        for _ in 0..<200 {
            let length = Int.random(in: 0...10, using: &rng)
            let word = String((0..<length).map { _ in Character(Unicode.Scalar(UInt8.random(in: 0x21...0x7E, using: &rng))) })
            #expect(try text.decode(text.encode(.text(word))) == .text(word))
        }
        var flags = resource(.bitfield)
        flags.bits = [0: "a", 3: "b", 15: "c"]
        for _ in 0..<200 {
            let register = UInt16.random(in: .min ... .max, using: &rng)
            #expect(try flags.encode(flags.decode(registers: [register])) == .registers([register]))
        }
    }
}

extension ModbusRawValue {
    var registersOrNil: [UInt16]? {
        if case .registers(let registers) = self { return registers }
        return nil
    }
}

@Suite struct ResolutionTests {
    @Test func scaledIntegersCarryNoBinaryNoise() throws {
        let longitudinal = ModbusResource(name: "x", table: .input, address: 0, type: .i32, scale: 0.1)
        #expect(try longitudinal.decode(registers: [0, 1877]) == .number(187.7), "not 187.70000000000002")
        let height = ModbusResource(name: "h", table: .input, address: 0, type: .u16, scale: 0.1, offset: 300)
        #expect(try height.decode(registers: [5503]) == .number(850.3))
        let angle = ModbusResource(name: "a", table: .input, address: 0, type: .i16, scale: 0.01)
        #expect(try angle.decode(registers: [UInt16(bitPattern: -1234)]) == .number(-12.34))
        let coarse = ModbusResource(name: "c", table: .input, address: 0, type: .u16, scale: 2.5)
        #expect(try coarse.decode(registers: [3]) == .number(7.5))
    }
}
