import Foundation
import NMBridgeCore
import NMTOML
import Testing
import TestSupport

@testable import DoseCalibrator

private func bytes(_ hex: String) -> [UInt8] {
    hex.split(separator: " ").map { UInt8($0, radix: 16)! }
}

private func reading(_ message: DecodedMessage, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> ActivityReading? {
    guard case .reading(let reading) = message else {
        Issue.record("expected a reading, got \(message)", sourceLocation: sourceLocation)
        return nil
    }
    return reading
}

private func violation(_ message: DecodedMessage) -> String? {
    if case .violation(let v) = message { return v.error }
    return nil
}

@Suite struct CapintecCRC15RTests {
    @Test func domainExampleFrame() throws {
        // DOMAIN.md: 46 20 31 38 20 20 05 cc 85 35 40 → "F 18", unit code 5, ≈ 2.836 MBq.
        let raw = bytes("46 20 31 38 20 20 05 cc 85 35 40")
        let r = try #require(reading(CapintecCRC15R.decode(raw)))
        #expect(r.nuclide == "F-18")
        #expect(r.nuclideText == "F 18")
        #expect(r.unit == .mbq)
        #expect(abs(r.activityBq - 2.836e6) < 1e3)
        #expect(r.reading == "2.836 MBq")
        #expect(r.raw == raw)
        #expect(r.chamber == nil && !r.final)
    }

    @Test func requestIsTheDocumentedString() {
        #expect(CapintecCRC15R.request == Array("@ABCDEFGHIJK\r\n".utf8))
    }

    @Test func unitTablesAreConfigurable() throws {
        let raw = CapintecCRC15R.encode(nuclide: "Tc99m", unitCode: 3, value: 20)
        #expect(try #require(reading(CapintecCRC15R.decode(raw))).unit == .ci)
        let other = UnitCodeTable([2: .uci, 3: .mci, 4: .ci, 5: .mbq, 6: .gbq])
        let r = try #require(reading(CapintecCRC15R.decode(raw, unitCodes: other)))
        #expect(r.unit == .mci)
        #expect(r.activityBq == 20 * 3.7e7)
        #expect(r.nuclide == "Tc-99m")
    }

    @Test func badRepliesAreViolationsNotReadings() {
        #expect(violation(CapintecCRC15R.decode(Array(repeating: 0x41, count: 10)))?.contains("10 bytes") == true)
        #expect(violation(CapintecCRC15R.decode(CapintecCRC15R.encode(nuclide: "Tc99m", unitCode: 9, value: 1)))?.contains("unit code 9") == true)
        #expect(violation(CapintecCRC15R.decode(CapintecCRC15R.encode(nuclide: "Tc99m", unitCode: 5, value: -3)))?.contains("negative") == true)
        #expect(violation(CapintecCRC15R.decode(CapintecCRC15R.encode(nuclide: "Tc99m", unitCode: 5, value: .nan)))?.contains("not a number") == true)
        #expect(violation(CapintecCRC15R.decode(CapintecCRC15R.encode(nuclide: "Tc99m", unitCode: 6, value: 5000)))?.contains("range") == true)
        var unprintable = CapintecCRC15R.encode(nuclide: "Tc99m", unitCode: 5, value: 1)
        unprintable[2] = 0x07
        #expect(violation(CapintecCRC15R.decode(unprintable))?.contains("printable") == true)
        #expect(CapintecCRC15R.decode(CapintecCRC15R.encode(nuclide: "", unitCode: 0, value: 0)) == .noReading(raw: CapintecCRC15R.encode(nuclide: "", unitCode: 0, value: 0)))
    }
}

@Suite struct CapintecCRC35RTests {
    @Test func readRequestFrameByteForByte() {
        // STX, 'C' (2 + 0x41), "R1", ((0x02 + 0x43 + 0x52 + 0x31) & 0x7F) + 0x21 = 0x69, ETX.
        #expect(CapintecCRC35R.readRequest(chamber: 1) == bytes("02 43 52 31 69 03"))
        #expect(CapintecCRC35R.readRequest(chamber: 8) == bytes("02 43 52 38 70 03"))
    }

    @Test func replyBodyDecodes() throws {
        let frame = CapintecCRC35R.frame(Array("DR2,ABTc99m ,740.04".utf8))
        var framer = CRC35RFramer()
        let out = framer.push(frame)
        guard case .frame(let body, let raw) = try #require(out.first) else {
            Issue.record("no frame: \(out)")
            return
        }
        #expect(raw == frame)
        let r = try #require(reading(CapintecCRC35R.decodeBody(body, frame: raw)))
        #expect(r.chamber == 2)
        #expect(r.nuclide == "Tc-99m")
        #expect(r.unit == .mbq)
        #expect(r.activityBq == 740e6)
        #expect(r.reading == "740.0 MBq")
        #expect(r.calibrationNumber == nil)
    }

    @Test func calibrationNumbersAndUnits() throws {
        let body = Array("DR1,AB990&2 ,12.503".utf8)
        let r = try #require(reading(CapintecCRC35R.decodeBody(body, frame: body)))
        #expect(r.calibrationNumber == "990&2")
        #expect(r.unit == .kbq)
        #expect(r.activityBq == 12_500)
        let gbq = Array("DR1,ABF18   ,1.2005".utf8)
        #expect(try #require(reading(CapintecCRC35R.decodeBody(gbq, frame: gbq))).activityBq == 1.2e9)
        let alternative = UnitCodeTable([3: .kbq, 4: .gbq, 5: .mbq])
        #expect(try #require(reading(CapintecCRC35R.decodeBody(gbq, frame: gbq, unitCodes: alternative))).activityBq == 1.2e6)
        let empty = Array("DR1,AB      ,4".utf8)
        #expect(CapintecCRC35R.decodeBody(empty, frame: empty) == .noReading(raw: empty))
        for bad in ["DR9,ABTc99m ,1.04", "XR1,ABTc99m ,1.04", "DR1,ABTc99m ,abc4", "DR1,ABTc99m ,1.09", "DR1,ABTc99m"] {
            let b = Array(bad.utf8)
            #expect(violation(CapintecCRC35R.decodeBody(b, frame: b)) != nil, "\(bad)")
        }
    }

    @Test func framerResynchronizesAfterNoiseSplitsAndBadChecksums() {
        let good = CapintecCRC35R.frame(Array("DR1,ABTc99m ,740.04".utf8))
        var badChecksum = good
        badChecksum[badChecksum.count - 2] ^= 0x01
        var noETX = good
        noETX[noETX.count - 1] = 0x04
        var framer = CRC35RFramer()
        var outputs: [CRC35RFramer.Output] = []
        // noise, a bad checksum, a frame without ETX, then a good frame split in three.
        let stream = [0x55, 0xAA, 0x0D] + badChecksum + noETX + good
        for chunk in stride(from: 0, to: stream.count, by: 7).map({ Array(stream[$0..<min($0 + 7, stream.count)]) }) {
            outputs += framer.push(chunk)
        }
        let frames = outputs.compactMap { if case .frame(_, let raw) = $0 { raw } else { nil } }
        let errors = outputs.compactMap { if case .violation(let v) = $0 { v.error } else { nil } }
        #expect(frames == [good])
        #expect(errors.contains("bytes outside a frame"))
        #expect(errors.contains { $0.hasPrefix("checksum") })
        #expect(errors.contains("frame does not end with ETX"))
        #expect(framer.pending == 0)
    }
}

@Suite struct LinePatternTests {
    @Test func defaultPatternReadsCommonSpellings() throws {
        let pattern = try LinePattern(LinePattern.defaultPattern)
        let cases: [(String, String, Double)] = [
            ("Tc99m 20.00 mCi", "Tc-99m", 20 * 3.7e7),
            ("  F-18   370.0 MBq ", "F-18", 370e6),
            ("99mTc 740,5 MBq", "Tc-99m", 740.5e6),
            ("I131 5.2 GBq", "I-131", 5.2e9),
            ("Cs137 195.1 uCi", "Cs-137", 195.1 * 3.7e4),
            ("CO57 1.5E2 µCi", "Co-57", 150 * 3.7e4),
        ]
        for (line, nuclide, bq) in cases {
            let r = try #require(reading(pattern.decode(Array(line.utf8), final: true)), "\(line)")
            #expect(r.nuclide == nuclide, "\(line)")
            #expect(abs(r.activityBq - bq) <= bq * 1e-12, "\(line)")
            #expect(r.final)
        }
        for line in ["Tc99m twenty mCi", "hello", "Tc99m 20.00 furlongs", "Tc99m inf mCi", "Tc99m -5 mCi"] {
            #expect(violation(pattern.decode(Array(line.utf8), final: true)) != nil, "\(line)")
        }
        #expect(pattern.decode(Array("   ".utf8), final: true) == .noReading(raw: Array("   ".utf8)))
        #expect(violation(pattern.decode([0x54, 0xFF, 0xFE], final: true)) == "line is not UTF-8 text")
    }

    @Test func customPatternWithTimeChamberAndFixedUnit() throws {
        let pattern = try LinePattern(
            #"^(?<time>\d{2}:\d{2}:\d{2}) CH(?<chamber>\d) (?<nuclide>\S+) A=(?<activity>[\d.]+)$"#, fixedUnit: .mbq)
        let r = try #require(reading(pattern.decode(Array("07:30:12 CH2 Tc-99m A=740.0".utf8), final: true)))
        #expect(r.deviceTime == "07:30:12")
        #expect(r.chamber == 2)
        #expect(r.activityBq == 740e6)
        #expect(r.unit == .mbq)
    }

    @Test func badPatternsAreConfigurationErrors() {
        #expect(throws: NMBridgeError.self) { try LinePattern("(?<activity>[0-9") }
        #expect { try LinePattern(#"(?<value>\d+) (?<unit>\S+) (?<nuclide>\S+)"#) } throws: {
            "\($0)".contains("(?<activity>")
        }
        #expect { try LinePattern(#"(?<activity>\d+) (?<nuclide>\S+)"#) } throws: { "\($0)".contains("unit") }
        #expect { try LinePattern(#"(?<activity>\d+) (?<unit>\S+) (?<nuclide>\S+) (?<operator>\S+)"#) } throws: {
            "\($0)".contains("operator")
        }
        #expect(throws: Never.self) { try LinePattern(#"A=(?<activity>\d+) (?<unit>\S+)"#, fixedNuclide: "Tc-99m") }
    }

    @Test func lineSplitterBoundsOverlongLines() {
        var splitter = LineSplitter()
        let out = splitter.push(Array(repeating: 0x41, count: 2000) + [0x0D, 0x0A] + Array("ok\r\n".utf8))
        let lines = out.compactMap { try? $0.get() }
        let errors = out.compactMap { if case .failure(let v) = $0 { v } else { nil } }
        #expect(lines == [Array("ok".utf8)])
        #expect(errors.count == 1)
        #expect(errors[0].bytes.count <= 64)
        #expect(splitter.partial.isEmpty)
    }
}

@Suite struct RadionuclideTests {
    @Test func aliasesMapToOneCanonicalName() {
        for alias in ["TC99M", "Tc99m", "99mTc", "Tc-99m", "tc 99m", "99m-Tc", "TC_99M"] {
            #expect(Radionuclide.named(alias)?.name == "Tc-99m", "\(alias)")
        }
        #expect(Radionuclide.named("F 18")?.name == "F-18")
        #expect(Radionuclide.named("18F")?.name == "F-18")
        #expect(Radionuclide.canonicalName("xe133") == "Xe-133")
        #expect(Radionuclide.named("xe133") == nil)
        for bad in ["", "Tc", "99", "hello world", "Tc-99m-1", "T1c99"] {
            #expect(Radionuclide.canonicalName(bad) == nil, "\(bad)")
        }
    }

    @Test func decayFollowsTheHalfLife() throws {
        let tc = try #require(Radionuclide.named("Tc-99m"))
        #expect(abs(tc.decay(1000, over: 6.0067 * 3600) - 500) < 1e-9)
        let cs = try #require(Radionuclide.named("Cs-137"))
        #expect(abs(cs.decay(7.4e6, over: 30.08 * 365.2422 * 86400) - 3.7e6) < 1e-3)
        #expect(abs(tc.decay(500, over: -6.0067 * 3600) - 1000) < 1e-9)
    }

    @Test func unitsNormalizeToBecquerel() {
        #expect(ActivityUnit(text: "mCi")?.becquerel == 3.7e7)
        #expect(ActivityUnit(text: "uCi") == .uci)
        #expect(ActivityUnit(text: "μCi") == .uci)
        #expect(ActivityUnit(text: "MBQ") == .mbq)
        #expect(ActivityUnit(text: "Ci")?.becquerel == 3.7e10)
        #expect(ActivityUnit(text: "mSv") == nil)
    }
}

/// Random and mutated input into every decoder: nothing crashes, buffers stay bounded,
/// and anything that comes out as a reading is a possible one.
@Suite struct ParserFuzzTests {
    static func check(_ message: DecodedMessage) {
        if case .reading(let r) = message {
            #expect(r.activityBq.isFinite && r.activityBq >= 0 && r.activityBq <= DoseCalibratorLimits.maxActivityBq)
        }
    }

    @Test func randomAndMutatedBytes() throws {
        var rng = SeededGenerator(state: 20261129)
        let pattern = try LinePattern(LinePattern.defaultPattern)
        let seeds: [[UInt8]] = [
            CapintecCRC15R.encode(nuclide: "Tc99m", unitCode: 5, value: 740),
            CapintecCRC35R.frame(Array("DR1,ABTc99m ,740.04".utf8)),
            Array("Tc99m 20.00 mCi\r\n".utf8),
        ]
        var framer = CRC35RFramer()
        var splitter = LineSplitter()
        for i in 0..<30_000 {
            var input: [UInt8]
            if i % 2 == 0 {
                input = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                input = seeds[i % seeds.count]
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !input.isEmpty {
                    input[Int.random(in: 0..<input.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            Self.check(CapintecCRC15R.decode(input))
            Self.check(CapintecCRC15R.decode(Array(input.prefix(11)) + Array(repeating: 0x20, count: max(0, 11 - input.count))))
            Self.check(CapintecCRC35R.decodeBody(input, frame: input))
            Self.check(pattern.decode(input, final: false))
            for output in framer.push(input) {
                if case .frame(let body, let raw) = output { Self.check(CapintecCRC35R.decodeBody(body, frame: raw)) }
            }
            #expect(framer.pending <= CapintecCRC35R.maxBody + 4)
            for line in splitter.push(input) {
                if case .success(let text) = line { Self.check(pattern.decode(text, final: true)) }
            }
            #expect(splitter.partial.count <= DoseCalibratorLimits.maxMessageBytes)
        }
    }
}
