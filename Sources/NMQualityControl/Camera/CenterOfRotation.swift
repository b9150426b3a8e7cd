import Foundation

/// Centre of rotation from the SPECT projections of a point source: pure, projections in,
/// numbers out (docs/qc.md).
///
/// In each projection the point's centroid is taken: the background (the mean of the pixels
/// outside a window around the point) is subtracted, and the centroid is the count-weighted
/// mean position inside the window, a square of half-width max(3, min(rows, columns) / 8)
/// pixels centred on the brightest pixel of the 3 × 3-summed image. A point on the orbit
/// projects to x(θ) = A·cos θ + B·sin θ + C; the least-squares fit of that to the centroids
/// gives C, and the COR offset is C minus the matrix centre, (columns − 1) / 2 in the
/// coordinates of pixel centres (column 0 at 0). The fit's residual is the RMS of the
/// differences between the centroids and the fitted curve; the axial drift is the range
/// (max − min) of the centroids' row position over the orbit, which for a point source on
/// a well-aligned head stays constant.
///
/// Only relative angles matter: a start angle or a rotation direction changes A and B, not C.
public enum CenterOfRotation {
    /// One projection: its gantry angle and its image.
    public struct Projection: Sendable {
        public var angleDeg: Double
        public var image: CountImage
        public init(angleDeg: Double, image: CountImage) {
            self.angleDeg = angleDeg
            self.image = image
        }
    }

    public struct Result: Sendable, Equatable {
        /// C − (columns − 1) / 2.
        public var offsetPx: Double
        /// The same in mm (nil without Pixel Spacing).
        public var offsetMM: Double?
        /// RMS of the fit's residuals.
        public var residualPx: Double
        public var residualMM: Double?
        /// Range of the centroids' row position over the orbit.
        public var axialDriftPx: Double
        public var axialDriftMM: Double?
        /// The orbit's radius as seen in the projections, √(A² + B²).
        public var amplitudePx: Double
        public var projections: Int
        /// Centroids per projection (column, row), in pixel-centre coordinates.
        public var centroids: [(x: Double, y: Double)]

        public static func == (a: Result, b: Result) -> Bool {
            a.offsetPx == b.offsetPx && a.residualPx == b.residualPx && a.axialDriftPx == b.axialDriftPx && a.projections == b.projections
                && a.centroids.map(\.x) == b.centroids.map(\.x) && a.centroids.map(\.y) == b.centroids.map(\.y)
        }
    }

    /// The background-subtracted centroid of the point source in one projection.
    public static func centroid(_ image: CountImage) throws(CameraQCError) -> (x: Double, y: Double) {
        let rows = image.rows, columns = image.columns
        guard rows >= 3, columns >= 3 else { throw CameraQCError("a \(rows)×\(columns) projection is too small") }
        // Brightest 3 × 3 sum: one hot pixel of noise does not pull the window away.
        var best = -Double.infinity, peakR = 0, peakC = 0
        for r in 1..<(rows - 1) {
            for c in 1..<(columns - 1) {
                var s = 0.0
                for dr in -1...1 { for dc in -1...1 { s += image[r + dr, c + dc] } }
                if s > best {
                    best = s
                    peakR = r
                    peakC = c
                }
            }
        }
        let half = max(3, min(rows, columns) / 8)
        let r0 = max(0, peakR - half), r1 = min(rows - 1, peakR + half)
        let c0 = max(0, peakC - half), c1 = min(columns - 1, peakC + half)
        var inside = 0.0, insideN = 0
        for r in r0...r1 { for c in c0...c1 { inside += image[r, c]; insideN += 1 } }
        let outsideN = rows * columns - insideN
        let background = outsideN > 0 ? (image.total - inside) / Double(outsideN) : 0
        var sum = 0.0, sx = 0.0, sy = 0.0
        for r in r0...r1 {
            for c in c0...c1 {
                let v = image[r, c] - background
                sum += v
                sx += v * Double(c)
                sy += v * Double(r)
            }
        }
        guard sum > 0, sum.isFinite else { throw CameraQCError("the projection shows no point source above its background") }
        return (sx / sum, sy / sum)
    }

    /// Least-squares fit of x(θ) = A cos θ + B sin θ + C; returns A, B, C and the RMS residual.
    public static func fit(anglesDeg: [Double], x: [Double]) throws(CameraQCError) -> (a: Double, b: Double, c: Double, rms: Double) {
        guard anglesDeg.count == x.count, x.count >= 4 else { throw CameraQCError("a COR fit needs at least 4 projections, got \(x.count)") }
        // Normal equations MᵀM p = Mᵀx, rows of M = (cos θ, sin θ, 1).
        var m = [[Double]](repeating: [0, 0, 0, 0], count: 3)
        for (deg, value) in zip(anglesDeg, x) {
            let t = deg * Double.pi / 180
            let row = [cos(t), sin(t), 1.0]
            for i in 0..<3 {
                for j in 0..<3 { m[i][j] += row[i] * row[j] }
                m[i][3] += row[i] * value
            }
        }
        // Gaussian elimination with partial pivoting.
        for col in 0..<3 {
            let pivot = (col..<3).max { abs(m[$0][col]) < abs(m[$1][col]) } ?? col
            guard abs(m[pivot][col]) > 1e-9 * Double(x.count) else {
                throw CameraQCError("the projection angles do not span enough of the orbit for a COR fit")
            }
            m.swapAt(col, pivot)
            for r in 0..<3 where r != col {
                let f = m[r][col] / m[col][col]
                for k in col..<4 { m[r][k] -= f * m[col][k] }
            }
        }
        let a = m[0][3] / m[0][0], b = m[1][3] / m[1][1], c = m[2][3] / m[2][2]
        var squares = 0.0
        for (deg, value) in zip(anglesDeg, x) {
            let t = deg * Double.pi / 180
            let e = value - (a * cos(t) + b * sin(t) + c)
            squares += e * e
        }
        return (a, b, c, (squares / Double(x.count)).squareRoot())
    }

    /// Analyses the projections of one head.
    public static func analyze(_ projections: [Projection]) throws(CameraQCError) -> Result {
        guard let first = projections.first else { throw CameraQCError("no projections") }
        var centroids: [(x: Double, y: Double)] = []
        for (i, p) in projections.enumerated() {
            do {
                centroids.append(try centroid(p.image))
            } catch {
                throw CameraQCError("projection \(i + 1) (\(p.angleDeg)°): \(error)")
            }
        }
        let fitted = try fit(anglesDeg: projections.map(\.angleDeg), x: centroids.map(\.x))
        let offset = fitted.c - Double(first.image.columns - 1) / 2
        let ys = centroids.map(\.y)
        let drift = (ys.max() ?? 0) - (ys.min() ?? 0)
        let xmm = first.image.columnSpacingMM, ymm = first.image.rowSpacingMM
        return Result(
            offsetPx: offset, offsetMM: xmm.map { offset * $0 }, residualPx: fitted.rms, residualMM: xmm.map { fitted.rms * $0 },
            axialDriftPx: drift, axialDriftMM: ymm.map { drift * $0 }, amplitudePx: (fitted.a * fitted.a + fitted.b * fitted.b).squareRoot(),
            projections: projections.count, centroids: centroids)
    }
}
