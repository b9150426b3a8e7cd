import Foundation
import NMBridgeCore
import Testing
import TestSupport

@testable import ModbusGantry

/// The loader and the decoder take operator files and device data: every input gives a
/// value or a typed error, never a crash.
@Suite struct RobustnessTests {
    @Test func loaderIsTotal() throws {
        let example = try String(contentsOfFile: profilesDirectory + "/spect-gantry-example.toml", encoding: .utf8)
        var rng = SeededGenerator(state: 5)
        let alphabet = Array("[]{}=\"., \n#-0123456789abcdefilnorstuxyABCD_".unicodeScalars)
        var loaded = 0
        var rejected = 0
        for _ in 0..<1500 {
            // Small edits of a valid profile reach deep into validation.
            var scalars = Array(example.unicodeScalars)
            for _ in 0..<Int.random(in: 1...5, using: &rng) {
                let i = Int.random(in: 0..<scalars.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: scalars.insert(alphabet.randomElement(using: &rng)!, at: i)
                case 1: scalars.remove(at: i)
                default: scalars[i] = alphabet.randomElement(using: &rng)!
                }
            }
            var text = String.UnicodeScalarView()
            text.append(contentsOf: scalars)
            do {
                let profile = try ModbusProfileLoader.load(text: String(text), file: "fuzz.toml")
                #expect(!profile.resources.isEmpty)
                loaded += 1
            } catch {
                #expect(!error.problems.isEmpty)
                #expect(error.problems.allSatisfy { $0.line != nil })
                rejected += 1
            }
        }
        #expect(loaded > 0 && rejected > 0, "the edits exercise both paths: \(loaded) loaded, \(rejected) rejected")

        // Random bytes, decoded leniently as the file reader would see them.
        for _ in 0..<500 {
            let bytes = (0..<Int.random(in: 0...400, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? ModbusProfileLoader.load(text: String(decoding: bytes, as: UTF8.self), file: "bytes.toml")
        }
    }

    @Test func decoderAndEncoderAreTotal() throws {
        var rng = SeededGenerator(state: 77)
        var subjects: [ModbusResource] = []
        for type in [ModbusDataType.bool, .u16, .i16, .u32, .i32, .u64, .i64, .f32, .f64, .string(registers: 3), .bitfield] {
            for order in ModbusWordOrder.allCases {
                for scale in [1, 0.01, -1e300, 1e-300] {
                    var subject = ModbusResource(
                        name: "x", table: type == .bool ? .coil : .holding, address: 0, type: type, order: order, scale: scale)
                    if type == .u64 || type == .i16 { subject.states = [-1: "minus", 0: "zero"] }
                    if type == .bitfield { subject.bits = [3: "three"] }
                    subjects.append(subject)
                }
            }
        }
        let values: [ModbusValue] = [
            .number(.nan), .number(.infinity), .number(-.infinity), .number(0), .number(-0.0), .number(1e300),
            .number(-1e300), .number(Double(Int64.max)), .number(Double(UInt64.max)), .number(-9.3e18), .number(.leastNonzeroMagnitude),
            .bool(true), .state("zero"), .state("none"), .text(""), .text("toolongtext"), .text("a\u{0}b"), .text("é"),
            .flags(["three", "bit3", "bit15", "bit16", "bit-1", "bit"]), .flags([]),
        ]
        for subject in subjects {
            for _ in 0..<100 {
                let registers = (0..<Int.random(in: 0...6, using: &rng)).map { _ in UInt16.random(in: .min ... .max, using: &rng) }
                let bits = (0..<Int.random(in: 0...3, using: &rng)).map { _ in Bool.random(using: &rng) }
                if let value = try? subject.decode(registers: registers) { _ = try? subject.encode(value) }
                if let value = try? subject.decode(bits: bits) { _ = try? subject.encode(value) }
            }
            for value in values {
                if let raw = try? subject.encode(value) {
                    // Whatever encodes has the resource's width and decodes again.
                    switch raw {
                    case .registers(let registers): #expect(registers.count == subject.type.width)
                    case .bits(let bits): #expect(bits.count == 1)
                    }
                    _ = try? subject.decode(raw)
                }
            }
        }
    }
}
