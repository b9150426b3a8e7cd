import NMBridgeCore
import Testing

@testable import DoseCalibrator

@Suite struct SettlingTests {
    func tc(_ mbq: Double, chamber: Int? = nil, final: Bool = false) -> ActivityReading {
        ActivityReading(nuclideText: "Tc99m", value: mbq, unit: .mbq, chamber: chamber, final: final, raw: [])
    }

    @Test func oneMeasurementPerVialAfterTheRampSettles() {
        var settler = Settler(rule: SettleRule(mode: .polls(count: 3, band: 0.01)))
        let polls: [Double] = [0.01, 300, 650, 735, 739.5, 740, 740, 739.9, 739.8]
        let settled = polls.compactMap { settler.add(tc($0)) }
        #expect(settled.count == 1)
        // 735 → 739.5 → 740 are within 1 % of each other: the third completes it.
        #expect(settled.first?.activityBq == 740e6)
    }

    @Test func slowDecayDoesNotCountTwiceButANewVialDoes() {
        var settler = Settler(rule: SettleRule(mode: .polls(count: 3, band: 0.01)))
        var count = 0
        // F-18 loses about 0.6 %/min: hundreds of polls of the same vial.
        var value = 370.0
        for _ in 0..<300 {
            if settler.add(tc(value)) != nil { count += 1 }
            value *= 0.9995
        }
        #expect(count == 1)
        // Vial out (background), another vial in.
        _ = settler.add(tc(0.001))
        for _ in 0..<3 { if settler.add(tc(500)) != nil { count += 1 } }
        #expect(count == 2)
        // A different vial swapped in without an empty reading in between.
        for _ in 0..<3 { if settler.add(tc(20)) != nil { count += 1 } }
        #expect(count == 3)
    }

    /// A doubtful reply (bytes between replies: a late reply on a loaded machine) restarts
    /// the run. Before a measurement that delays it; after one, the same vial is not measured
    /// again (a daemon test once journaled one vial twice), but another vial still is.
    @Test func aDoubtfulReplyNeverMakesOneVialTwoMeasurements() {
        var settler = Settler(rule: SettleRule(mode: .polls(count: 3, band: 0.01)))
        #expect(settler.add(tc(740)) == nil)
        #expect(settler.add(tc(740)) == nil)
        settler.doubt()
        #expect(settler.add(tc(740)) == nil, "the run starts again after the doubt")
        #expect(settler.add(tc(740)) == nil)
        #expect(settler.add(tc(740))?.activityBq == 740e6)
        settler.doubt()
        #expect([740, 739.9, 739.8, 739.8].compactMap { settler.add(tc($0)) }.isEmpty, "the same vial, still in the chamber")
        settler.doubt()
        #expect([500, 500, 500].compactMap { settler.add(tc($0)) }.map(\.activityBq) == [500e6], "another vial")
    }

    @Test func backgroundNeverSettles() {
        var settler = Settler(rule: SettleRule(mode: .polls(count: 3, band: 0.01), minActivityBq: 1e5))
        #expect((0..<20).compactMap { _ in settler.add(tc(0.05)) }.isEmpty)
    }

    @Test func deviceModeTakesTheDevicesFinalMarker() {
        var settler = Settler(rule: SettleRule(mode: .device))
        #expect(settler.add(tc(740)) == nil)
        #expect(settler.add(tc(740, final: true)) != nil)
        #expect(settler.add(tc(740, final: true)) != nil)
    }

    @Test func errorLimiterSuppressesAndCounts() {
        var limiter = ProtocolErrorLimiter(interval: .seconds(10))
        let t0 = ContinuousClock.now
        #expect(limiter.admit(now: t0) == 0)
        #expect(limiter.admit(now: t0 + .seconds(1)) == nil)
        #expect(limiter.admit(now: t0 + .seconds(2)) == nil)
        #expect(limiter.admit(now: t0 + .seconds(11)) == 2)
        #expect(limiter.admit(now: t0 + .seconds(12)) == nil)
    }
}

@Suite struct SimulatorScriptTests {
    @Test func parsesEveryStep() throws {
        let script = try SimulatorScript.parse(
            """
            # morning
            empty for 500ms
            show Tc99m 740 MBq for 8s chamber 2
            silence for 1m
            garbage for 2s
            bad-checksum for 2 requests
            split for 4s
            noise 64
            disconnect for 3s
            show F-18 370 MBq for 12 requests
            loop
            """, source: "t.sim")
        #expect(script.loops)
        #expect(script.steps.count == 9)
        #expect(script.steps[0] == .init(.empty, .seconds(0.5)))
        #expect(script.steps[1] == .init(.show(nuclide: "Tc-99m", value: 740, unit: .mbq, chamber: 2), .seconds(8)))
        #expect(script.steps[2] == .init(.silence, .seconds(60)))
        #expect(script.steps[4] == .init(.badChecksum, .requests(2)))
        #expect(script.steps[6] == .init(.noise(bytes: 64), .instant))
        #expect(script.steps[8] == .init(.show(nuclide: "F-18", value: 370, unit: .mbq, chamber: nil), .requests(12)))
        #expect(SimulatorScript.demo.loops)
    }

    @Test func errorsNameFileAndLine() {
        let cases: [(String, String)] = [
            ("empty for 1s\nshow Tc99m lots MBq for 1s", "t.sim line 2"),
            ("wobble for 1s", "unknown step"),
            ("empty for 1s\nloop\nempty for 1s", "nothing may follow"),
            ("show Tc99m 1 MBq for 1s chamber 9", "chamber"),
            ("silence 5s", "for DURATION"),
            ("disconnect for 3 requests", "give `disconnect` a time"),
            ("empty for 0 requests", "positive number of requests"),
            ("empty for soon", "not a duration"),
            ("noise 0", "noise BYTES"),
            ("", "no steps"),
        ]
        for (text, expected) in cases {
            #expect(throws: NMBridgeError.self) { try SimulatorScript.parse(text, source: "t.sim") }
            do {
                _ = try SimulatorScript.parse(text, source: "t.sim")
            } catch {
                #expect(error.message.contains(expected), "\(text) → \(error.message)")
                #expect(error.message.contains("t.sim"))
            }
        }
    }
}
