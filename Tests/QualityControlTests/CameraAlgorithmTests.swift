import Foundation
import Testing

@testable import NMQualityControl

/// A small deterministic generator (SplitMix64) for noisy test images: the same seed gives
/// the same image on every run and machine.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func gaussian() -> Double {
        let u = max(uniform(), 1e-300), v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
    /// Poisson: Knuth's method for small means, a rounded normal above 50.
    mutating func poisson(_ mean: Double) -> Double {
        if mean <= 0 { return 0 }
        if mean > 50 { return max(0, (mean + mean.squareRoot() * gaussian()).rounded()) }
        let l = exp(-mean)
        var k = 0.0, p = 1.0
        repeat {
            k += 1
            p *= uniform()
        } while p > l
        return k - 1
    }
}

/// Hand-computed flood and COR cases (docs/qc.md, "Camera QC").
@Suite struct CameraAlgorithmTests {
    /// A 64 × 64 image at 6.4 mm (no rebinning) with `value` in rows/columns `field`, zero outside.
    func flood(_ value: Double = 1000, field: ClosedRange<Int> = 4...59, size: Int = 64, spacing: Double = 6.4) -> CountImage {
        var image = CountImage(rows: size, columns: size, value: 0, rowSpacingMM: spacing, columnSpacingMM: spacing)
        for r in field { for c in field { image[r, c] = value } }
        return image
    }

    @Test func noiselessFloodWithAColdAndAHotPixel() throws {
        // Field rows/columns 4…59; the edge rule (b) strips the ring: UFOV 5…58 (54 × 54).
        // CFOV: c = 31.5, row r kept when ⌊(r − 31.5)/0.75 + 32⌋ ∈ 5…58: rows 12…51 (40 × 40).
        // Cold pixel 900 at (30, 30): smoothed (4·900 + 12·1000)/16 = 975.
        // Hot pixel 1100 at (55, 55), in the UFOV but not the CFOV: smoothed (4·1100 + 12·1000)/16 = 1025.
        var image = flood()
        image[30, 30] = 900
        image[55, 55] = 1100
        let result = try FloodUniformity.analyze(image)
        #expect(result.rebinning.rowFactor == 1 && result.rebinning.withinTolerance)
        #expect(result.ufov.pixels == 54 * 54)
        #expect(result.cfov.pixels == 40 * 40)
        #expect(result.edgePixelsDropped == 0)
        // UFOV IU = 100·(1025 − 975)/(1025 + 975) = 2.5 %; no 5-pixel window holds both spots,
        // so DU = 100·(1000 − 975)/(1000 + 975) = 1.26582 %.
        #expect(abs(result.ufov.integralPct - 2.5) < 1e-9)
        #expect(abs(result.ufov.differentialPct - 1.265_822_784_8) < 1e-9)
        #expect(result.ufov.minimumAt == .init(row: 30, column: 30))
        #expect(result.ufov.maximumAt == .init(row: 55, column: 55))
        // CFOV: the cold pixel only: 1.26582 % both.
        #expect(abs(result.cfov.integralPct - 1.265_822_784_8) < 1e-9)
        #expect(abs(result.cfov.differentialPct - 1.265_822_784_8) < 1e-9)
        #expect(result.totalCounts == 56 * 56 * 1000)
        #expect(abs(result.ufov.meanCounts - 1000) < 1e-9)
    }

    @Test func coldSpotOfKnownDepthAndSize() throws {
        // A 3 × 3 cold block of depth 20 % (800), rows/columns 31…33. Smoothed at its centre
        // (32, 32) all nine neighbours are 800 → 800; at (32, 31) two of three kernel columns
        // are cold → (12·800 + 4·1000)/16 = 850; at (32, 30) one → (4·800 + 12·1000)/16 = 950;
        // (32, 29) is untouched. IU = 100·200/1800 = 11.1111 %; the window (32, 28…32) holds
        // 1000 and 800, so DU is the same.
        var image = flood()
        for r in 31...33 { for c in 31...33 { image[r, c] = 800 } }
        let result = try FloodUniformity.analyze(image)
        #expect(abs(result.ufov.integralPct - 100.0 * 200 / 1800) < 1e-9)
        #expect(abs(result.ufov.differentialPct - 100.0 * 200 / 1800) < 1e-9)
        #expect(abs(result.cfov.integralPct - 100.0 * 200 / 1800) < 1e-9)
        #expect(result.smoothed[32 * 64 + 32] == 800)
        #expect(result.smoothed[32 * 64 + 31] == 850)
        #expect(result.smoothed[32 * 64 + 30] == 950)
        #expect(result.smoothed[32 * 64 + 29] == 1000)
    }

    @Test func edgePixelsBelow75PercentAreDropped() throws {
        // Field rows/columns 4…59; its top row (4) holds 600 < 75 % of the CFOV mean (1000):
        // rule (a) drops those 56 pixels; rule (b) then strips the ring of what is left: UFOV
        // rows 6…58, columns 5…58. Row 5 holds 800: kept by (a) (not an edge of the field),
        // removed by (b), so it does not enter the smoothing. Row 6 holds 900: smoothed within
        // the UFOV it is (8·900 + 4·1000)/12 = 933.33 (no row above it), row 7 is
        // (4·900 + 12·1000)/16 = 975: IU = 100·(1000 − 933.33)/(1000 + 933.33) = 3.4483 %.
        var image = flood()
        for c in 4...59 { image[4, c] = 600 }
        for c in 4...59 { image[5, c] = 800 }
        for c in 4...59 { image[6, c] = 900 }
        let result = try FloodUniformity.analyze(image)
        #expect(result.edgePixelsDropped == 56)
        #expect(result.ufov.pixels == 53 * 54)
        #expect(!result.ufovMask[5 * 64 + 30] && result.ufovMask[6 * 64 + 30] && result.ufovMask[58 * 64 + 30] && !result.ufovMask[59 * 64 + 30])
        #expect(!result.ufovMask[30 * 64 + 4] && result.ufovMask[30 * 64 + 5])
        #expect(abs(result.smoothed[6 * 64 + 30] - 11_200.0 / 12) < 1e-9 && abs(result.smoothed[6 * 64 + 5] - 8_400.0 / 9) < 1e-9)
        #expect(result.smoothed[7 * 64 + 30] == 975)
        let expected = 100 * (1000 - 11_200.0 / 12) / (1000 + 11_200.0 / 12)
        #expect(abs(result.ufov.integralPct - expected) < 1e-9)
        #expect(abs(result.ufov.differentialPct - expected) < 1e-9)
        // CFOV: rows 13…51 (centre 32), all 1000: perfectly uniform.
        #expect(result.cfov.integralPct == 0)
        #expect(result.cfovMask[13 * 64 + 30] && !result.cfovMask[12 * 64 + 30] && result.cfovMask[51 * 64 + 30] && !result.cfovMask[52 * 64 + 30])
    }

    @Test func circularField() throws {
        // A disk of radius 26 px about (31.5, 31.5) with a cold pixel at its centre, scatter
        // of 5 counts outside, and a dim spot outside the disk that must not join the field.
        var image = CountImage(rows: 64, columns: 64, value: 5, rowSpacingMM: 6.4, columnSpacingMM: 6.4)
        for r in 0..<64 {
            for c in 0..<64 where (Double(r) - 31.5) * (Double(r) - 31.5) + (Double(c) - 31.5) * (Double(c) - 31.5) <= 26 * 26 { image[r, c] = 1000 }
        }
        image[31, 31] = 900
        image[1, 1] = 400  // below 50 % of the central mean: outside any field
        let result = try FloodUniformity.analyze(image)
        #expect(!result.ufovMask[1 * 64 + 1])
        // UFOV = the disk less its edge ring; CFOV ≈ (0.75)² of it.
        let diskPixels = (0..<64 * 64).filter { i in
            let r = Double(i / 64) - 31.5, c = Double(i % 64) - 31.5
            return r * r + c * c <= 26 * 26
        }.count
        #expect(result.ufov.pixels < diskPixels && result.ufov.pixels > diskPixels - 4 * 26 * 2)
        let ratio = Double(result.cfov.pixels) / Double(result.ufov.pixels)
        #expect(abs(ratio - 0.5625) < 0.03)
        #expect(abs(result.ufov.integralPct - 1.265_822_784_8) < 1e-9)
        #expect(abs(result.cfov.integralPct - 1.265_822_784_8) < 1e-9)
        // Every CFOV pixel lies within 0.75 · 26 + 1 px of the centre.
        for i in 0..<(64 * 64) where result.cfovMask[i] {
            let r = Double(i / 64) - 31.5, c = Double(i % 64) - 31.5
            #expect((r * r + c * c).squareRoot() <= 0.75 * 26 + 1.5)
        }
    }

    @Test func octagonalField() throws {
        // A 56 × 56 square (rows/columns 4…59) with its corners cut at 45° (16 px along each
        // edge): an octagon. A hot pixel in the UFOV near a cut corner, a cold one at the centre.
        var image = CountImage(rows: 64, columns: 64, value: 0, rowSpacingMM: 6.4, columnSpacingMM: 6.4)
        for r in 4...59 {
            for c in 4...59 {
                let dr = min(r - 4, 59 - r), dc = min(c - 4, 59 - c)
                if dr + dc >= 16 { image[r, c] = 1000 }
            }
        }
        image[31, 31] = 900
        image[14, 14] = 1100  // dr + dc = 20: inside, 2+ pixels from the cut edge
        let result = try FloodUniformity.analyze(image)
        #expect(result.ufovMask[14 * 64 + 14])
        #expect(!result.ufovMask[8 * 64 + 8])  // cut off
        #expect(!result.cfovMask[14 * 64 + 14])
        #expect(abs(result.ufov.integralPct - 2.5) < 1e-9)  // (1025 − 975)/(1025 + 975)
        #expect(abs(result.cfov.integralPct - 1.265_822_784_8) < 1e-9)
        let ratio = Double(result.cfov.pixels) / Double(result.ufov.pixels)
        #expect(abs(ratio - 0.5625) < 0.04)
    }

    @Test(arguments: [(1024, 16), (512, 8), (256, 4), (128, 2)])
    func rebinningFromLargeMatrices(size: Int, factor: Int) throws {
        // A 409.6 mm field of view: 0.4, 0.8, 1.6 and 3.2 mm pixels all rebin to 64 × 64 at
        // 6.4 mm. The image is the hand case above with each 6.4 mm pixel's counts spread
        // evenly over its k × k pixels, so the analysis must give the same numbers.
        var reference = flood()
        reference[30, 30] = 900
        reference[55, 55] = 1100
        let spacing = 409.6 / Double(size)
        var image = CountImage(rows: size, columns: size, value: 0, rowSpacingMM: spacing, columnSpacingMM: spacing)
        let share = 1.0 / Double(factor * factor)
        for r in 0..<size { for c in 0..<size { image[r, c] = reference[r / factor, c / factor] * share } }
        let result = try FloodUniformity.analyze(image)
        #expect(result.rebinning.rowFactor == factor && result.rebinning.columnFactor == factor)
        #expect(result.rebinned.rows == 64 && result.rebinned.columns == 64)
        #expect(abs(result.rebinning.rowPixelMM! - 6.4) < 1e-9 && result.rebinning.withinTolerance)
        #expect(abs(result.ufov.integralPct - 2.5) < 1e-9)
        #expect(abs(result.ufov.differentialPct - 1.265_822_784_8) < 1e-9)
        #expect(abs(result.cfov.integralPct - 1.265_822_784_8) < 1e-9)
        #expect(abs(result.totalCounts - 56 * 56 * 1000) < 1e-6)
    }

    @Test func nonIntegerRebinningFactors() {
        #expect(FloodUniformity.rebinFactor(spacingMM: 0.6) == 11)  // 6.6 mm (6.0 for 10)
        #expect(FloodUniformity.rebinFactor(spacingMM: 2.21) == 3)  // 6.63 mm
        #expect(FloodUniformity.rebinFactor(spacingMM: 9.0) == 1)  // already too large
        #expect(FloodUniformity.rebinFactor(spacingMM: nil) == 1)
        // 1024 × 0.6 mm: 93 blocks of 11, the last 1 row/column dropped.
        let image = CountImage(rows: 1024, columns: 1024, value: 1, rowSpacingMM: 0.6, columnSpacingMM: 0.6)
        let (binned, rebinning) = FloodUniformity.rebin(image)
        #expect(binned.rows == 93 && binned.columns == 93 && binned.counts.allSatisfy { $0 == 121 })
        #expect(abs(rebinning.rowPixelMM! - 6.6) < 1e-9 && rebinning.withinTolerance)
        let coarse = FloodUniformity.rebin(CountImage(rows: 40, columns: 40, value: 1, rowSpacingMM: 9, columnSpacingMM: 9)).1
        #expect(!coarse.withinTolerance && coarse.rowFactor == 1)
    }

    @Test func emptyAndTinyImagesAreRefusedNotCrashed() {
        #expect(throws: CameraQCError.self) { try FloodUniformity.analyze(CountImage(rows: 64, columns: 64, value: 0)) }
        #expect(throws: CameraQCError.self) { try FloodUniformity.analyze(CountImage(rows: 4, columns: 4, value: 10)) }
        var spike = CountImage(rows: 16, columns: 16, value: 0)
        spike[8, 8] = 100  // one pixel: no UFOV survives the edge rules
        #expect(throws: CameraQCError.self) { try FloodUniformity.analyze(spike) }
    }

    @Test func expectedNoiseMatchesSimulatedPoissonFloods() throws {
        // The counting-noise estimate against the mean IU of simulated uniform floods
        // (the derivation is in FloodUniformity.expectedNoisePct).
        var random = TestRandom(seed: 17)
        for mean in [200.0, 2000.0] {
            var sum = 0.0, expected = 0.0
            let trials = 30
            for _ in 0..<trials {
                var image = CountImage(rows: 48, columns: 48, value: 0, rowSpacingMM: 6.4, columnSpacingMM: 6.4)
                for r in 2...45 { for c in 2...45 { image[r, c] = random.poisson(mean) } }
                let result = try FloodUniformity.analyze(image)
                sum += result.ufov.integralPct
                expected = result.ufov.expectedNoisePct
            }
            let simulated = sum / Double(trials)
            #expect(abs(simulated - expected) / expected < 0.10, "mean \(mean): simulated \(simulated) %, expected \(expected) %")
        }
    }

    // MARK: COR

    /// Projections of a Gaussian point (σ 1.2 px, `counts` counts) on an orbit of radius 15 px
    /// whose centre sits `offset` px right of the matrix centre, with Poisson noise.
    func projections(offset: Double, counts: Double = 20_000, angles: Int = 64, y: Double = 30, drift: Double = 0, random: inout TestRandom)
        -> [CenterOfRotation.Projection]
    {
        (0..<angles).map { i in
            let deg = Double(i) * 360 / Double(angles)
            let t = deg * Double.pi / 180
            let x = 31.5 + offset + 15 * cos(t + 0.7)
            let yy = y + drift * Double(i) / Double(angles - 1)
            var image = CountImage(rows: 64, columns: 64, value: 0, rowSpacingMM: 4.8, columnSpacingMM: 4.8)
            let norm = counts / (2 * Double.pi * 1.44)
            for r in 0..<64 {
                for c in 0..<64 {
                    let d2 = (Double(c) - x) * (Double(c) - x) + (Double(r) - yy) * (Double(r) - yy)
                    image[r, c] = random.poisson(norm * exp(-d2 / (2 * 1.44)) + 2)
                }
            }
            return CenterOfRotation.Projection(angleDeg: deg, image: image)
        }
    }

    @Test func corOffsetWithNoiseWithin005Pixel() throws {
        var random = TestRandom(seed: 2026)
        for offset in [0.0, 1.3, -2.25] {
            let result = try CenterOfRotation.analyze(projections(offset: offset, random: &random))
            #expect(abs(result.offsetPx - offset) < 0.05, "offset \(offset): fitted \(result.offsetPx)")
            #expect(abs(result.offsetMM! - offset * 4.8) < 0.05 * 4.8)
            #expect(abs(result.amplitudePx - 15) < 0.1)
            #expect(result.residualPx < 0.1)
            #expect(result.axialDriftPx < 0.2)
        }
    }

    @Test func corAxialDriftAndResidual() throws {
        var random = TestRandom(seed: 7)
        let result = try CenterOfRotation.analyze(projections(offset: 0.5, drift: 1.5, random: &random))
        #expect(abs(result.axialDriftPx - 1.5) < 0.15)
        #expect(abs(result.axialDriftMM! - 1.5 * 4.8) < 0.15 * 4.8)
        // A wobble of ±1 px at twice the rotation frequency is not a sinusoid at θ: the residual shows it.
        var wobbly = projections(offset: 0.5, random: &random)
        for i in wobbly.indices {
            let t = wobbly[i].angleDeg * Double.pi / 180
            let shift = (cos(2 * t)).rounded()  // −1, 0 or +1 whole pixel
            var moved = CountImage(rows: 64, columns: 64, value: 2, rowSpacingMM: 4.8, columnSpacingMM: 4.8)
            for r in 0..<64 { for c in 0..<64 where c - Int(shift) >= 0 && c - Int(shift) < 64 { moved[r, c] = wobbly[i].image[r, c - Int(shift)] } }
            wobbly[i].image = moved
        }
        let fitted = try CenterOfRotation.analyze(wobbly)
        #expect(fitted.residualPx > 0.4)
    }

    @Test func corFitIsExactOnANoiselessSinusoid() throws {
        let angles = stride(from: 0.0, to: 360, by: 6).map { $0 }
        let x = angles.map { 32.1 + 10 * cos(($0 + 20) * Double.pi / 180) }
        let fit = try CenterOfRotation.fit(anglesDeg: angles, x: x)
        #expect(abs(fit.c - 32.1) < 1e-9 && fit.rms < 1e-9)
        #expect(throws: CameraQCError.self) { try CenterOfRotation.fit(anglesDeg: [0, 0, 0, 0], x: [1, 2, 3, 4]) }
    }
}
