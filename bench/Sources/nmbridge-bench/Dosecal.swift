import ArgumentParser
import Foundation
import NMClient
import NMTransport

/// Starts an `nmbridged` child on a generated configuration and stops it at the end.
final class DaemonChild {
    let process = Process()
    let socket: String

    init(binary: String, directory: String, devices: String, sync: String) throws {
        socket = directory + "/api.sock"
        let config = """
            [daemon]
            node = "bench"
            state_dir = "\(directory)"
            [journal]
            sync = "\(sync)"
            [api]
            socket = "\(socket)"
            \(devices)
            """
        try config.write(toFile: directory + "/nmbridge.toml", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--config", directory + "/nmbridge.toml", "--log-level", "warning"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: "/dev/stderr")
        try process.run()
    }

    func waitUntilListening() async throws {
        let client = APIClient(endpoint: .unixSocket(path: socket))
        for _ in 0..<1000 {
            if (try? await client.get("/v1/health")) != nil { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ValidationError("nmbridged did not start listening on \(socket)")
    }

    var pid: Int32 { process.processIdentifier }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

/// % of one core that process `pid` uses over `seconds`, after 3 s of warm-up.
func cpuPercentOf(pid: Int32, seconds: Double) async throws -> Double {
    try await Task.sleep(for: .seconds(3))
    let before = processCPUSeconds(pid: pid) ?? 0
    try await Task.sleep(for: .seconds(seconds))
    return ((processCPUSeconds(pid: pid) ?? 0) - before) / seconds * 100
}

/// The idle floor: an nmbridged without devices, its % of one core over `seconds`.
func idleDaemonCPUPercent(binary: String, directory: String, seconds: Double) async throws -> Double {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let idle = try DaemonChild(binary: binary, directory: directory, devices: "", sync: "full")
    defer { idle.stop() }
    try await idle.waitUntilListening()
    return try await cpuPercentOf(pid: idle.pid, seconds: seconds)
}

/// Runs a C peer poller and returns its % of one core over `seconds`, then stops it.
func peerCPUPercent(_ binary: String, _ arguments: [String], seconds: Double) async throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    defer {
        process.terminate()
        process.waitUntilExit()
    }
    return try await cpuPercentOf(pid: process.processIdentifier, seconds: seconds)
}

/// CPU seconds (user + system) of another process, from /proc/PID/stat.
func processCPUSeconds(pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
    return (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Latency from a calibrator's line on the wire to an SSE subscriber of the daemon.
///
/// The bench plays a "printer port" calibrator itself: it owns a pty, writes one line per
/// measurement at a steady rate and notes the monotonic time of each write. A real
/// `nmbridged` (a child process) runs the `dosecal-line` driver on the other side of the
/// pty; the bench subscribes to `/v1/events/stream?kind=dosecal.measurement` and matches
/// each event to its line by the activity value. The latency includes the driver's read,
/// decoding, the durable append (fsync with sync=full), fan-out and HTTP delivery.
struct DosecalLatency: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "dosecal-latency", abstract: "Calibrator line written → dosecal.measurement received over SSE.")

    @Option(help: "nmbridged binary.") var daemon: String
    @Option(help: "Lines (measurements) to send.") var lines: Int = 1000
    @Option(help: "Lines per second.") var rate: Double = 20
    @Option(help: "Journal sync mode.") var sync: String = "full"
    @Option(help: "Working directory (created).") var dir: String

    func measure() async throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let pty = try PseudoTerminal()
        try pty.link(at: dir + "/dosecal.tty")
        let child = try DaemonChild(
            binary: daemon, directory: dir,
            devices: """
                [[device]]
                id = "dosecal-bench"
                driver = "dosecal-line"
                path = "\(dir)/dosecal.tty"
                """, sync: sync)
        defer { child.stop() }
        try await child.waitUntilListening()
        let client = APIClient(endpoint: .unixSocket(path: child.socket))
        let stream = try await client.stream("/v1/events/stream?kind=dosecal.measurement")
        // Wait for the driver to open the port (it journals device.connected).
        for _ in 0..<500 {
            let devices = try await client.get("/v1/devices").text
            if devices.contains("\"link\":\"up\"") { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let sentAt = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: lines)
        sentAt.initialize(repeating: 0)
        defer { sentAt.deallocate() }
        nonisolated(unsafe) let times = sentAt
        let lines = self.lines
        let receiver = Task { () -> [UInt64] in
            var latencies: [UInt64] = []
            for try await event in stream {
                let now = monotonicNanos()
                // "activity_bq":<1000+i>e6 → i; the value is unique per line.
                guard let range = event.data.range(of: "\"activity_bq\":") else { continue }
                let digits = event.data[range.upperBound...].prefix { $0.isNumber || $0 == "." || $0 == "e" || $0 == "E" || $0 == "+" }
                guard let bq = Double(digits) else { continue }
                let i = Int((bq / 1e6).rounded()) - 1000
                guard i >= 0, i < lines, times[i] != 0 else { continue }
                latencies.append(now &- times[i])
                if latencies.count == lines { break }
            }
            return latencies
        }
        let cpuBefore = processCPUSeconds(pid: child.pid) ?? 0
        let interval = 1e9 / rate
        let start = monotonicNanos()
        for i in 0..<lines {
            let due = start + UInt64(Double(i) * interval)
            let now = monotonicNanos()
            if now < due { try await Task.sleep(for: .nanoseconds(Int64(due - now))) }
            let line = Array("Tc99m \(1000 + i) MBq\r\n".utf8)
            times[i] = monotonicNanos()
            pty.write(line)
        }
        let watchdog = Task {
            try await Task.sleep(for: .seconds(15))
            receiver.cancel()
        }
        let latencies = (try? await receiver.value) ?? []
        watchdog.cancel()
        let seconds = Double(monotonicNanos() - start) / 1e9
        let cpu = (processCPUSeconds(pid: child.pid) ?? 0) - cpuBefore
        let d = Distribution(latencies)
        var out = JSONLine()
        out.add("bench", "dosecal-latency")
        out.add("impl", "nmbridge")
        out.add("sync", sync)
        out.add("rate", rate, decimals: 1)
        out.add("sent", lines)
        out.add("received", latencies.count)
        out.add("p50_ms", Double(d.percentile(50)) / 1e6)
        out.add("p99_ms", Double(d.percentile(99)) / 1e6)
        out.add("max_ms", Double(d.max) / 1e6)
        out.add("daemon_cpu_pct", cpu / seconds * 100, decimals: 2)
        out.print()
        if latencies.count != lines { throw ExitCode(1) }
    }
}

/// CPU of the daemon polling N simulated CRC-15R calibrators at a fixed rate, against a
/// minimal C poller doing the same exchanges on the same kind of simulators.
///
/// The simulators are separate `nmbridge simulate` processes (their CPU is not counted).
/// Each run measures the daemon with no devices (its idle floor), the daemon with N
/// devices, and the peer with N devices, over the same interval.
struct DosecalCPU: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "dosecal-cpu", abstract: "Daemon CPU per polled dose calibrator, and a C poller's.")

    @Option(help: "nmbridged binary.") var daemon: String
    @Option(help: "nmbridge binary (for `simulate`).") var cli: String
    @Option(help: "The C peer poller binary (bench/peers/crc15r_poll.c).") var peer: String
    @Option(help: "Simulated calibrators.") var devices: Int = 8
    @Option(help: "Poll interval in ms.") var pollMs: Int = 100
    @Option(help: "Seconds measured (after 3 s of warm-up).") var seconds: Double = 30
    @Option(help: "Working directory (created).") var dir: String

    func measure() async throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "show Tc-99m 740 MBq for 86400s\n".write(toFile: dir + "/vial.sim", atomically: true, encoding: .utf8)
        var simulators: [Process] = []
        defer {
            for s in simulators where s.isRunning {
                s.terminate()
                s.waitUntilExit()
            }
        }
        for i in 0..<devices {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: cli)
            p.arguments = ["simulate", "dosecal", "--model", "crc15r", "--pty", "--link", "\(dir)/dev\(i).tty", "--script", dir + "/vial.sim"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            simulators.append(p)
        }
        for i in 0..<devices {
            for _ in 0..<500 where (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/dev\(i).tty")) == nil {
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        // The daemon alone (idle floor), then with the devices.
        let idlePct = try await idleDaemonCPUPercent(binary: daemon, directory: dir + "/idle", seconds: seconds)

        let busyDir = dir + "/busy"
        try FileManager.default.createDirectory(atPath: busyDir, withIntermediateDirectories: true)
        let tables = (0..<devices).map { i in
            """
            [[device]]
            id = "dosecal-\(i)"
            driver = "capintec-crc15r"
            path = "\(dir)/dev\(i).tty"
            poll_ms = \(pollMs)
            """
        }.joined(separator: "\n")
        let busy = try DaemonChild(binary: daemon, directory: busyDir, devices: tables, sync: "full")
        try await busy.waitUntilListening()
        let busyPct = try await cpuPercentOf(pid: busy.pid, seconds: seconds)
        let devicesText = try await APIClient(endpoint: .unixSocket(path: busy.socket)).get("/v1/devices").text
        busy.stop()
        let measured = devicesText.components(separatedBy: "\"link\":\"up\"").count - 1

        let peerPct = try await peerCPUPercent(peer, ["\(pollMs)"] + (0..<devices).map { "\(dir)/dev\($0).tty" }, seconds: seconds)

        var out = JSONLine()
        out.add("bench", "dosecal-cpu")
        out.add("devices", devices)
        out.add("devices_up", measured)
        out.add("poll_ms", pollMs)
        out.add("seconds", seconds, decimals: 0)
        out.add("daemon_idle_pct", idlePct, decimals: 3)
        out.add("daemon_pct", busyPct, decimals: 3)
        out.add("daemon_per_device_pct", (busyPct - idlePct) / Double(devices), decimals: 3)
        out.add("peer_pct", peerPct, decimals: 3)
        out.add("peer_per_device_pct", peerPct / Double(devices), decimals: 3)
        out.print()
    }
}
