// bench/camera: CPU time to judge a stored NM flood as the QC service does — read the
// Part-10 file, split it by Detector Vector, run the NEMA NU 1 analysis of every head.
// Built by bench/camera/run with `swiftc -O` together with Sources/NMQualityControl/Camera
// (pure Swift on Foundation, nothing else of the package), so the benchmark needs no
// release build of the whole daemon.
//
//   camera-bench FILE RUNS   → one JSON line a run
import Foundation

func cpuSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

@main
struct CameraBench {
    static func main() throws {
        let arguments = CommandLine.arguments
        guard arguments.count == 3, let runs = Int(arguments[2]) else {
            FileHandle.standardError.write(Data("usage: camera-bench FILE RUNS\n".utf8))
            exit(64)
        }
        for _ in 0..<max(1, runs) {
            let start = cpuSeconds()
            let file = try NMImageFile.read(path: arguments[1])
            let heads = file.floodPerHead()
            let decoded = cpuSeconds()
            var sum = 0.0
            for (_, image) in heads { sum += try FloodUniformity.analyze(image).ufov.integralPct }
            let end = cpuSeconds()
            print(
                String(
                    format: "{\"bench\":\"camera-flood\",\"impl\":\"nmbridge\",\"heads\":%d,\"cpu_ms\":%.3f,\"analysis_cpu_ms\":%.3f,\"ufov_iu_sum\":%.6f}",
                    heads.count, (end - start) * 1000, (end - decoded) * 1000, sum))
        }
    }
}
