import Foundation
import NMCatalog
import ScriptDriver
import Testing
import TestSupport

@testable import NMBridgeCore

/// Parsers of operator and network input are total: every input gives a value or a typed error.
@Suite struct RobustnessTests {
    static let scriptSample = """
        link up "x"
        wait 0.5
        emit dosecal.measurement {"nuclide": "Tc-99m", "activity_bq": 7.4e8, "reading": "20 mCi", "unit": "mCi"} raw 0a0b
        heartbeat
        fail "boom"
        loop
        """

    func mutations(of text: String, count: Int, seed: UInt64) -> [String] {
        var rng = SeededGenerator(state: seed)
        let alphabet = Array("{}[]\",:. \n#-0123456789eEabcdefraw\u{0}\u{FFFD}é".unicodeScalars)
        return (0..<count).map { _ in
            var scalars = Array(text.unicodeScalars)
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let i = Int.random(in: 0...scalars.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: scalars.insert(alphabet.randomElement(using: &rng)!, at: i)
                case 1 where i < scalars.count: scalars.remove(at: i)
                default: if i < scalars.count { scalars[i] = alphabet.randomElement(using: &rng)! }
                }
            }
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars)
            return String(s)
        }
    }

    @Test func scriptParserIsTotal() {
        var accepted = 0
        for text in mutations(of: Self.scriptSample, count: 3000, seed: 42) {
            do {
                _ = try ScriptParser.parse(text, source: "fuzz", registry: .standard)
                accepted += 1
            } catch {
                #expect(error.line >= 1)
            }
        }
        #expect(accepted > 0 && accepted < 3000, "the mutations exercise both paths: \(accepted)")
        let huge = String(repeating: "wait 1\n", count: 200_000)
        #expect(throws: ScriptError.self) { try ScriptParser.parse(huge, source: "big", registry: .standard) }
    }

    @Test func envelopeAndTimestampParsersAreTotal() {
        let envelope = #"{"seq":1,"journal":"3e2a7769-d413-4068-aa97-83826e5e0c15","time":"2026-11-29T08:42:27.736169Z","node":"n","device":"d","driver":"script","kind":"device.connected","severity":"info","data":{"reason":"x"},"raw":"0a"}"#
        #expect((try? Event(json: envelope))?.seq == 1)
        for text in mutations(of: envelope, count: 3000, seed: 7) {
            _ = try? Event(json: text)
        }
        for text in mutations(of: "2026-11-29T08:42:27.736169+01:00", count: 3000, seed: 9) {
            if let date = Timestamp.parse(text) { #expect(Timestamp.parse(Timestamp.format(date)) != nil) }
            _ = Timestamp.parseTimeSpec(text)
        }
    }
}
