import ArgumentParser
import Foundation
import NMQualityControl

/// CPU time to judge a flood: read the stored Part-10 file, split it by Detector Vector and
/// run the NEMA NU 1 analysis of every head, as the QC service does for each flood it
/// receives. Process CPU time (all threads), per run; `bench/camera/run` compares it with the
/// NumPy peer on the same file.
///
/// Output, one line per run: `{"bench":"camera-flood","impl":"nmbridge","heads":2,"cpu_ms":…,"analysis_cpu_ms":…}`
struct CameraFloodCPU: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "camera-flood", abstract: "CPU time to read and judge a multi-head NM flood file (NEMA NU 1 uniformity).")

    @Option(help: "The NM flood file (Part 10).")
    var file: String

    @Option(help: "Runs.")
    var runs: Int = 7

    static func cpuSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    func measure() async throws {
        for _ in 0..<max(1, runs) {
            let start = Self.cpuSeconds()
            let image = try NMImageFile.read(path: file)
            let heads = image.floodPerHead()
            let decoded = Self.cpuSeconds()
            var integral = 0.0
            for (_, frame) in heads { integral += try FloodUniformity.analyze(frame).ufov.integralPct }
            let end = Self.cpuSeconds()
            var line = JSONLine()
            line.add("bench", "camera-flood")
            line.add("impl", "nmbridge")
            line.add("heads", heads.count)
            line.add("rows", image.rows)
            line.add("cpu_ms", (end - start) * 1000)
            line.add("analysis_cpu_ms", (end - decoded) * 1000)
            line.add("ufov_iu_sum", integral)
            line.print()
        }
    }
}
