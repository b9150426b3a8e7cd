import Foundation

/// Planar flood-field uniformity after NEMA NU 1 (2018, section 2.4 "intrinsic uniformity"
/// and the analysis it prescribes): pure, an image of counts in, numbers out (docs/qc.md).
///
/// The steps and the choices made where the standard leaves room (each is also what the
/// independent NumPy peer, Tests/Peers/nema_uniformity.py, implements from the text of
/// docs/qc.md):
///
/// 1. **Rebinning** to pixels of 6.4 mm ± 30 % (4.48–8.32 mm): the counts of whole blocks of
///    k × k' pixels are summed, k the integer factor whose pixel is closest to 6.4 mm, chosen
///    per axis from Pixel Spacing. A non-integer ratio is never interpolated: the nearest
///    integer factor is used (a 0.6 mm pixel gives k = 11, 6.6 mm), and the rows and columns
///    left over at the bottom and right that do not fill a whole block are dropped (they lie
///    at the edge of the matrix, outside any field). Pixels already larger than 8.32 mm are
///    used as they are and the result says so (`withinTolerance` false).
/// 2. **The field** (the standard takes the UFOV from the maker's specification; a daemon has
///    to find it in the image): pixels holding at least 50 % of the mean of the central
///    region of the matrix (the middle half of the rows and of the columns), the largest
///    4-connected such region, with holes in it filled (a dead tube inside the field stays in
///    the field). Any field shape — rectangular, circular, octagonal — comes out of this.
/// 3. **Edge rules** (NEMA): a pixel at the edge of the field holding less than 75 % of the
///    mean of the CFOV is set to zero; then every pixel with a zero 4-neighbour is set to zero,
///    where the outside of the field counts as zero (as in the standard, whose image is zero
///    outside the UFOV): the UFOV is what remains. So the UFOV always lies at least one pixel
///    inside the thresholded field. The CFOV mean of this step is that of the field's CFOV.
/// 4. **CFOV**: the UFOV scaled by 75 % in each linear dimension about the centre of its
///    bounding box: a pixel p of the UFOV belongs to the CFOV when c + (p − c) / 0.75,
///    rounded to the nearest pixel (halves up), is a pixel of the UFOV. This scales any shape.
/// 5. **Smoothing** once with (1 2 1 / 2 4 2 / 1 2 1) / 16, over the UFOV: a neighbour
///    outside it (outside the field, or set to zero by step 3) is left out and the weights of
///    the others are renormalized, so the zeros around the UFOV — and the partly covered edge
///    pixels step 3 removed — do not pull its edge pixels down.
/// 6. **Integral uniformity** 100 · (max − min) / (max + min) over the smoothed pixels of the
///    field; **differential uniformity** the largest such value over 5 contiguous pixels of a
///    row or a column, all of them in the field.
/// 7. **Counting noise**: what a perfectly uniform detector would show at this count density
///    over this UFOV (CFOV); see `expectedNoisePct`.
public enum FloodUniformity {
    /// The pixel size NEMA NU 1 analyses at, and the tolerance around it.
    public static let targetPixelMM = 6.4
    public static let pixelTolerance = 0.30
    /// Initial field threshold: a fraction of the mean of the matrix's central region.
    public static let fieldThreshold = 0.5
    /// NEMA's edge rule: edge pixels below this fraction of the CFOV mean are set to zero.
    public static let edgeFraction = 0.75
    /// NEMA's CFOV: the UFOV scaled by this in each linear dimension.
    public static let cfovScale = 0.75

    /// How the image was rebinned.
    public struct Rebinning: Sendable, Equatable {
        /// Original rows (columns) summed into one rebinned row (column).
        public var rowFactor: Int
        public var columnFactor: Int
        /// The rebinned pixel size, nil when the image has no Pixel Spacing.
        public var rowPixelMM: Double?
        public var columnPixelMM: Double?
        /// Whether the rebinned pixels are within 6.4 mm ± 30 % (false also without Pixel Spacing).
        public var withinTolerance: Bool
    }

    /// The uniformity of one field (UFOV or CFOV).
    public struct Measures: Sendable, Equatable {
        public var integralPct: Double
        public var differentialPct: Double
        /// Smoothed counts of the coldest and hottest pixel, and where they are (rebinned grid).
        public var minimum: Double
        public var maximum: Double
        public var minimumAt: Pixel
        public var maximumAt: Pixel
        /// Pixels in the field.
        public var pixels: Int
        /// Mean counts per rebinned pixel in the field, before smoothing.
        public var meanCounts: Double
        /// The integral uniformity counting noise alone would give (see `expectedNoisePct`).
        public var expectedNoisePct: Double
    }

    /// A pixel position on the rebinned grid.
    public struct Pixel: Sendable, Equatable, CustomStringConvertible {
        public var row: Int
        public var column: Int
        public init(row: Int, column: Int) {
            self.row = row
            self.column = column
        }
        public var description: String { "(\(row), \(column))" }
    }

    /// The whole analysis of one detector's flood.
    public struct Result: Sendable, Equatable {
        public var rebinning: Rebinning
        /// The rebinned image (before smoothing) and the smoothed one (zero outside the UFOV).
        public var rebinned: CountImage
        public var smoothed: [Double]
        /// Masks on the rebinned grid, row-major.
        public var ufovMask: [Bool]
        public var cfovMask: [Bool]
        public var ufov: Measures
        public var cfov: Measures
        /// All counts of the image as received (before rebinning).
        public var totalCounts: Double
        /// Pixels the edge rule (step 3a) set to zero.
        public var edgePixelsDropped: Int
    }

    /// Analyses one detector's flood image.
    public static func analyze(_ image: CountImage) throws(CameraQCError) -> Result {
        guard image.rows >= 8, image.columns >= 8 else {
            throw CameraQCError("a \(image.rows)×\(image.columns) image is too small for a flood analysis")
        }
        let total = image.total
        guard total > 0, total.isFinite else { throw CameraQCError("the flood image holds no counts") }
        let (binned, rebinning) = rebin(image)
        let rows = binned.rows, columns = binned.columns
        var field = initialField(binned)
        guard field.contains(true) else { throw CameraQCError("no field found: no pixel reaches 50 % of the central region's mean") }
        // NEMA edge rule (a): edge pixels below 75 % of the CFOV mean set to zero.
        let firstCFOV = scaledField(field, rows: rows, columns: columns)
        let cfovMean = mean(binned.counts, in: firstCFOV)
        var dropped = 0
        let isEdge = edgePixels(field, rows: rows, columns: columns)
        for i in 0..<field.count where isEdge[i] && binned.counts[i] < edgeFraction * cfovMean {
            field[i] = false
            dropped += 1
        }
        // (b): pixels with a zero 4-neighbour (the outside of the field is zero) set to zero.
        let afterEdgeRule = field
        let remainingEdge = edgePixels(afterEdgeRule, rows: rows, columns: columns)
        var ufov = afterEdgeRule
        for i in 0..<ufov.count where remainingEdge[i] { ufov[i] = false }
        guard ufov.contains(true) else { throw CameraQCError("the edge rules leave no UFOV (the field is too small)") }
        let cfov = scaledField(ufov, rows: rows, columns: columns)
        let smoothed = smooth(binned, within: ufov, keep: ufov)
        let ufovMeasures = try measures(smoothed, binned: binned.counts, field: ufov, support: ufov, rows: rows, columns: columns, name: "UFOV")
        let cfovMeasures = try measures(smoothed, binned: binned.counts, field: cfov, support: ufov, rows: rows, columns: columns, name: "CFOV")
        return Result(
            rebinning: rebinning, rebinned: binned, smoothed: smoothed, ufovMask: ufov, cfovMask: cfov, ufov: ufovMeasures, cfov: cfovMeasures,
            totalCounts: total, edgePixelsDropped: dropped)
    }

    // MARK: Rebinning

    /// The integer factor that brings `spacing` closest to 6.4 mm (1 when unknown or already larger).
    public static func rebinFactor(spacingMM: Double?) -> Int {
        guard let spacing = spacingMM, spacing > 0, spacing.isFinite, spacing < targetPixelMM else { return 1 }
        let exact = targetPixelMM / spacing
        let low = max(1, Int(exact.rounded(.down)))
        let high = low + 1
        return abs(Double(low) * spacing - targetPixelMM) <= abs(Double(high) * spacing - targetPixelMM) ? low : high
    }

    /// Sums whole blocks of pixels (see the type's notes); leftover rows and columns are dropped.
    public static func rebin(_ image: CountImage) -> (CountImage, Rebinning) {
        let kr = min(max(1, rebinFactor(spacingMM: image.rowSpacingMM)), max(1, image.rows))
        let kc = min(max(1, rebinFactor(spacingMM: image.columnSpacingMM)), max(1, image.columns))
        let rows = image.rows / kr, columns = image.columns / kc
        var out = [Double](repeating: 0, count: rows * columns)
        image.counts.withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { target in
                for r in 0..<(rows * kr) {
                    let base = r * image.columns
                    let targetBase = (r / kr) * columns
                    var c = 0
                    for bc in 0..<columns {
                        var sum = 0.0
                        for _ in 0..<kc {
                            sum += source[base + c]
                            c += 1
                        }
                        target[targetBase + bc] += sum
                    }
                }
            }
        }
        let rowMM = image.rowSpacingMM.map { $0 * Double(kr) }
        let columnMM = image.columnSpacingMM.map { $0 * Double(kc) }
        let range = (targetPixelMM * (1 - pixelTolerance))...(targetPixelMM * (1 + pixelTolerance))
        let within = rowMM.map { range.contains($0) } == true && columnMM.map { range.contains($0) } == true
        let binned = CountImage(rows: rows, columns: columns, counts: out, rowSpacingMM: rowMM, columnSpacingMM: columnMM)
        return (binned, Rebinning(rowFactor: kr, columnFactor: kc, rowPixelMM: rowMM, columnPixelMM: columnMM, withinTolerance: within))
    }

    // MARK: Field

    /// Pixels ≥ 50 % of the central region's mean; the largest 4-connected region; holes filled.
    static func initialField(_ image: CountImage) -> [Bool] {
        let rows = image.rows, columns = image.columns
        var sum = 0.0, n = 0
        for r in (rows / 4)..<max(rows / 4 + 1, rows - rows / 4) {
            for c in (columns / 4)..<max(columns / 4 + 1, columns - columns / 4) {
                sum += image[r, c]
                n += 1
            }
        }
        let threshold = fieldThreshold * sum / Double(max(n, 1))
        guard threshold > 0 else { return [Bool](repeating: false, count: rows * columns) }
        let candidate = image.counts.map { $0 >= threshold }
        // Largest 4-connected component.
        var label = [Int32](repeating: 0, count: rows * columns)
        var best: Int32 = 0, bestSize = 0, next: Int32 = 0
        var stack: [Int] = []
        for start in 0..<(rows * columns) where candidate[start] && label[start] == 0 {
            next += 1
            label[start] = next
            stack.append(start)
            var size = 0
            while let i = stack.popLast() {
                size += 1
                let r = i / columns, c = i % columns
                for j in neighbours(r, c, rows: rows, columns: columns) where candidate[j] && label[j] == 0 {
                    label[j] = next
                    stack.append(j)
                }
            }
            if size > bestSize {
                bestSize = size
                best = next
            }
        }
        let component = label.map { $0 == best && best != 0 }
        // Fill holes: whatever the outside cannot reach through non-field pixels.
        var outside = [Bool](repeating: false, count: rows * columns)
        for r in 0..<rows {
            for c in 0..<columns where (r == 0 || c == 0 || r == rows - 1 || c == columns - 1) {
                let i = r * columns + c
                if !component[i] && !outside[i] {
                    outside[i] = true
                    stack.append(i)
                }
            }
        }
        while let i = stack.popLast() {
            for j in neighbours(i / columns, i % columns, rows: rows, columns: columns) where !component[j] && !outside[j] {
                outside[j] = true
                stack.append(j)
            }
        }
        return outside.map { !$0 }
    }

    @inline(__always) static func neighbours(_ r: Int, _ c: Int, rows: Int, columns: Int) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(4)
        if r > 0 { out.append((r - 1) * columns + c) }
        if r < rows - 1 { out.append((r + 1) * columns + c) }
        if c > 0 { out.append(r * columns + c - 1) }
        if c < columns - 1 { out.append(r * columns + c + 1) }
        return out
    }

    /// Field pixels with a 4-neighbour outside the field (or on the border of the matrix).
    static func edgePixels(_ field: [Bool], rows: Int, columns: Int) -> [Bool] {
        var edge = [Bool](repeating: false, count: field.count)
        for r in 0..<rows {
            for c in 0..<columns where field[r * columns + c] {
                let interior =
                    r > 0 && r < rows - 1 && c > 0 && c < columns - 1 && field[(r - 1) * columns + c] && field[(r + 1) * columns + c]
                    && field[r * columns + c - 1] && field[r * columns + c + 1]
                edge[r * columns + c] = !interior
            }
        }
        return edge
    }

    /// The field scaled by 75 % about the centre of its bounding box (any shape).
    static func scaledField(_ field: [Bool], rows: Int, columns: Int) -> [Bool] {
        var r0 = rows, r1 = -1, c0 = columns, c1 = -1
        for r in 0..<rows {
            for c in 0..<columns where field[r * columns + c] {
                r0 = min(r0, r)
                r1 = max(r1, r)
                c0 = min(c0, c)
                c1 = max(c1, c)
            }
        }
        var out = [Bool](repeating: false, count: field.count)
        guard r1 >= 0 else { return out }
        let cr = Double(r0 + r1) / 2, cc = Double(c0 + c1) / 2
        for r in r0...r1 {
            let sr = ((Double(r) - cr) / cfovScale + cr + 0.5).rounded(.down).clampedInt(-1, rows)
            guard sr >= 0, sr < rows else { continue }
            for c in c0...c1 where field[r * columns + c] {
                let sc = ((Double(c) - cc) / cfovScale + cc + 0.5).rounded(.down).clampedInt(-1, columns)
                if sc >= 0, sc < columns, field[sr * columns + sc] { out[r * columns + c] = true }
            }
        }
        return out
    }

    static func mean(_ values: [Double], in field: [Bool]) -> Double {
        var sum = 0.0, n = 0
        for i in 0..<values.count where field[i] {
            sum += values[i]
            n += 1
        }
        return n == 0 ? 0 : sum / Double(n)
    }

    // MARK: Smoothing and measures

    /// The 9-point smoothing of the pixels in `keep`, from neighbours in `within` (renormalized).
    static func smooth(_ image: CountImage, within: [Bool], keep: [Bool]) -> [Double] {
        let rows = image.rows, columns = image.columns
        var out = [Double](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for c in 0..<columns where keep[r * columns + c] {
                var sum = 0.0, weight = 0.0
                for dr in -1...1 {
                    let rr = r + dr
                    guard rr >= 0, rr < rows else { continue }
                    for dc in -1...1 {
                        let cc = c + dc
                        guard cc >= 0, cc < columns, within[rr * columns + cc] else { continue }
                        let w = Double((2 - abs(dr)) * (2 - abs(dc)))
                        sum += w * image[rr, cc]
                        weight += w
                    }
                }
                out[r * columns + c] = sum / weight
            }
        }
        return out
    }

    static func measures(_ smoothed: [Double], binned: [Double], field: [Bool], support: [Bool], rows: Int, columns: Int, name: String)
        throws(CameraQCError)
        -> Measures
    {
        var lo = Double.infinity, hi = -Double.infinity, loAt = 0, hiAt = 0, n = 0
        for i in 0..<smoothed.count where field[i] {
            n += 1
            if smoothed[i] < lo {
                lo = smoothed[i]
                loAt = i
            }
            if smoothed[i] > hi {
                hi = smoothed[i]
                hiAt = i
            }
        }
        guard n > 0, hi + lo > 0 else { throw CameraQCError("the \(name) is empty or holds no counts") }
        var differential = 0.0
        func window(_ indices: [Int]) {
            var a = Double.infinity, b = -Double.infinity
            for i in indices {
                a = min(a, smoothed[i])
                b = max(b, smoothed[i])
            }
            if a + b > 0 { differential = max(differential, 100 * (b - a) / (b + a)) }
        }
        if columns >= 5 {
            for r in 0..<rows {
                for c in 0...(columns - 5) {
                    let indices = (0..<5).map { r * columns + c + $0 }
                    if indices.allSatisfy({ field[$0] }) { window(indices) }
                }
            }
        }
        if rows >= 5 {
            for c in 0..<columns {
                for r in 0...(rows - 5) {
                    let indices = (0..<5).map { (r + $0) * columns + c }
                    if indices.allSatisfy({ field[$0] }) { window(indices) }
                }
            }
        }
        let meanCounts = mean(binned, in: field)
        return Measures(
            integralPct: 100 * (hi - lo) / (hi + lo), differentialPct: differential, minimum: lo, maximum: hi,
            minimumAt: Pixel(row: loAt / columns, column: loAt % columns), maximumAt: Pixel(row: hiAt / columns, column: hiAt % columns),
            pixels: n, meanCounts: meanCounts,
            expectedNoisePct: expectedNoisePct(meanCounts: meanCounts, field: field, support: support, rows: rows, columns: columns))
    }

    // MARK: Counting noise

    /// The integral uniformity a perfectly uniform detector would show over `field` from
    /// counting noise alone, with `meanCounts` per rebinned pixel, smoothed within `support`.
    ///
    /// Derivation: a pixel's counts are Poisson, σ = √μ. Smoothing with weights wᵢ (the kernel's
    /// over the neighbours used) leaves σₚ = sₚ·√μ with sₚ = √(Σwᵢ²)/Σwᵢ: 0.375 inside the
    /// UFOV (√36/16), more at its edge (√30/12 = 0.456) and corners (√25/9 = 0.556), where fewer
    /// neighbours are averaged. The largest of N independent normal deviations is expected
    /// about where N·(1 − Φ(x/σ)) = 0.625 (Blom's approximation, Φ(z) = (N − 0.375)/(N + 0.25));
    /// with unequal σₚ, x solves Σₚ (1 − Φ(x/σₚ)) = 0.625. The minimum mirrors it, so
    /// IU ≈ 100·(2x)/(2μ) = 100·x/μ. Smoothing correlates neighbours (ρ = 2/3 for adjacent
    /// pixels), so the sum is divided by 1.2, the factor for which this matches the mean IU of
    /// simulated uniform Poisson floods (fields of 24² to 64² pixels, 200 to 10 000 counts a
    /// pixel) within 1.5 % (a unit test repeats the check).
    public static func expectedNoisePct(meanCounts: Double, field: [Bool], support: [Bool], rows: Int, columns: Int) -> Double {
        guard meanCounts > 0, meanCounts.isFinite else { return 0 }
        // Pixels grouped by their smoothing factor sₚ (a handful of distinct values).
        var groups: [Double: Int] = [:]
        for r in 0..<rows {
            for c in 0..<columns where field[r * columns + c] {
                var s1 = 0.0, s2 = 0.0
                for dr in -1...1 {
                    for dc in -1...1 {
                        let rr = r + dr, cc = c + dc
                        guard rr >= 0, rr < rows, cc >= 0, cc < columns, support[rr * columns + cc] else { continue }
                        let w = Double((2 - abs(dr)) * (2 - abs(dc)))
                        s1 += w
                        s2 += w * w
                    }
                }
                if s1 > 0 { groups[s2.squareRoot() / s1, default: 0] += 1 }
            }
        }
        let sorted = groups.sorted { $0.key < $1.key }  // a fixed order: the same sum every time
        guard !sorted.isEmpty else { return 0 }
        var low = 0.0, high = 12.0
        for _ in 0..<60 {
            let z = (low + high) / 2
            var tail = 0.0
            for (s, count) in sorted { tail += Double(count) * 0.5 * erfc(z / s / 2.0.squareRoot()) }
            if tail / 1.2 > 0.625 { low = z } else { high = z }
        }
        return 100 * (low + high) / 2 / meanCounts.squareRoot()
    }
}

extension Double {
    /// Converted to Int only when finite and in range (a hostile value never traps).
    func clampedInt(_ low: Int, _ high: Int) -> Int {
        guard isFinite else { return self > 0 ? high : low }
        return Int(Swift.min(Swift.max(self, Double(low)), Double(high)))
    }
}
