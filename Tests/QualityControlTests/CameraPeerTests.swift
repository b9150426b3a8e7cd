import Foundation
import NMBridgeCore
import TestSupport
import Testing

@testable import NMQualityControl

/// The flood analysis against an independent NumPy implementation written from docs/qc.md
/// (Tests/Peers/nema_uniformity.py, run by the test Python with numpy and pydicom).
@Suite struct CameraPeerTests {
    static let peer = repositoryRoot + "/Tests/Peers/nema_uniformity.py"

    /// Whether the peer can run; says loudly why not.
    static func peerAvailable() async -> Bool {
        guard let result = try? await runToEnd(testPython, ["-c", "import numpy, pydicom"]), result.status == 0 else {
            print("⚠️ SKIPPED: the NumPy peer needs \(testPython) with numpy and pydicom (Tests/Peers/requirements.txt)")
            return false
        }
        return true
    }

    /// Noisy floods of several shapes, sizes and pixel sizes, with defects.
    static func images() -> [(name: String, image: CountImage)] {
        var random = TestRandom(seed: 99)
        var out: [(String, CountImage)] = []
        // 256 × 256 at 1.6 mm (rebinned by 4), rectangular, 3000 counts per 6.4 mm pixel, a cold tube.
        var rect = CountImage(rows: 256, columns: 256, value: 0, rowSpacingMM: 1.6, columnSpacingMM: 1.6)
        for r in 20..<236 {
            for c in 12..<244 {
                let d2 = pow(Double(r) - 100, 2) + pow(Double(c) - 150, 2)
                rect[r, c] = random.poisson(187.5 * (1 - 0.08 * exp(-d2 / 200)))
            }
        }
        out.append(("rectangular-256", rect))
        // 128 × 128 at 4.42 mm (not rebinned: factor 1 is closer to 6.4 than 2), circular, soft edge.
        var disk = CountImage(rows: 128, columns: 128, value: 0, rowSpacingMM: 4.42, columnSpacingMM: 4.42)
        for r in 0..<128 {
            for c in 0..<128 {
                let d = ((Double(r) - 63.5) * (Double(r) - 63.5) + (Double(c) - 63.5) * (Double(c) - 63.5)).squareRoot()
                let edge = d < 55 ? 1.0 : d < 58 ? 0.6 : 0.02
                disk[r, c] = random.poisson(2500 * edge)
            }
        }
        out.append(("circular-128", disk))
        // 512 × 512 at 0.6 mm → factor 11 (6.6 mm, 46 × 46 with 6 rows/columns left over), octagonal, a hot spot.
        var octagon = CountImage(rows: 512, columns: 512, value: 0, rowSpacingMM: 0.6, columnSpacingMM: 0.6)
        for r in 30..<482 {
            for c in 30..<482 {
                let dr = min(r - 30, 481 - r), dc = min(c - 30, 481 - c)
                guard dr + dc >= 120 else { continue }
                let hot = pow(Double(r) - 300, 2) + pow(Double(c) - 200, 2) < 400 ? 1.06 : 1.0
                octagon[r, c] = random.poisson(40 * hot)
            }
        }
        out.append(("octagonal-512", octagon))
        // 64 × 64 at 6.4 mm with an edge that must be dropped.
        var edgy = CountImage(rows: 64, columns: 64, value: 0, rowSpacingMM: 6.4, columnSpacingMM: 6.4)
        for r in 3..<61 { for c in 3..<61 { edgy[r, c] = random.poisson(r == 3 || c == 60 ? 500 : 1500) } }
        out.append(("edge-64", edgy))
        return out
    }

    @Test func numpyPeerAgreesOnNoisyFloods() async throws {
        guard await Self.peerAvailable() else { return }
        let directory = try makeTemporaryDirectory("camera-peer")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (name, image) in Self.images() {
            let path = directory + "/\(name).raw"
            let bytes = image.counts.withUnsafeBufferPointer { Data(buffer: $0) }  // little-endian float64 on this platform
            try bytes.write(to: URL(fileURLWithPath: path))
            let run = try await runToEnd(
                testPython,
                [Self.peer, "flood", path, "\(image.rows)", "\(image.columns)", "\(image.rowSpacingMM ?? 0)", "\(image.columnSpacingMM ?? 0)"])
            #expect(run.status == 0, "\(name): \(run.output)")
            let peer = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any], "\(name): \(run.output)")
            let ours = try FloodUniformity.analyze(image)
            #expect(peer["row_factor"] as? Int == ours.rebinning.rowFactor, "\(name)")
            #expect(peer["edge_pixels_dropped"] as? Int == ours.edgePixelsDropped, "\(name)")
            for (field, measures) in [("ufov", ours.ufov), ("cfov", ours.cfov)] {
                let theirs = try #require(peer[field] as? [String: Any])
                #expect(theirs["pixels"] as? Int == measures.pixels, "\(name) \(field) pixels")
                for (key, value) in [
                    ("integral_pct", measures.integralPct), ("differential_pct", measures.differentialPct), ("expected_noise_pct", measures.expectedNoisePct),
                ] {
                    let other = try #require(theirs[key] as? Double)
                    // The target is 0.1 percentage point; the two agree to rounding error.
                    #expect(abs(other - value) < 1e-6, "\(name) \(field) \(key): ours \(value), NumPy \(other)")
                }
            }
        }
    }

    @Test func numpyPeerReadsTheSameTwoHeadDicomFlood() async throws {
        guard await Self.peerAvailable() else { return }
        let directory = try makeTemporaryDirectory("camera-peer")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = TestRandom(seed: 5)
        let frames = (0..<2).map { head in
            (0..<(128 * 128)).map { i -> Double in
                let r = i / 128, c = i % 128
                return (8..<120).contains(r) && (6..<122).contains(c) ? random.poisson(head == 0 ? 600 : 500) : 0
            }
        }
        let data = Part10Writer.nm(frames: frames, rows: 128, columns: 128, spacingMM: 3.2, detectors: [1, 2], description: "FLOOD")
        let path = directory + "/flood.dcm"
        try data.write(to: URL(fileURLWithPath: path))
        let run = try await runToEnd(testPython, [Self.peer, "dicom", path])
        #expect(run.status == 0, "\(run.output)")
        let lines = run.output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let file = try NMImageFile.read(path: path)
        let heads = file.floodPerHead()
        #expect(lines.count == heads.count)
        for (line, (head, image)) in zip(lines, heads) {
            #expect(line["detector"] as? Int == head)
            let ours = try FloodUniformity.analyze(image)
            let ufov = try #require(line["ufov"] as? [String: Any])
            #expect(abs((ufov["integral_pct"] as? Double ?? -1) - ours.ufov.integralPct) < 1e-6)
            #expect(abs((ufov["differential_pct"] as? Double ?? -1) - ours.ufov.differentialPct) < 1e-6)
        }
    }
}
