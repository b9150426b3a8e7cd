import ArgumentParser
import Foundation
import ModbusGantry

/// The registers the Modbus benchmarks read: `count` u16 input registers from address 0.
func benchRegisters(_ count: Int) -> [ModbusResource] {
    (0..<count).map { ModbusResource(name: "r\($0)", table: .input, address: $0, type: .u16, scale: 0.1, unit: "mm") }
}

/// Back-to-back polls through the driver's own path — a request queued to the bus thread,
/// libmodbus on that thread, the answer back to the task, every register decoded — with
/// the latency of each. With `--devices N`, N tasks poll the same bus at once (devices
/// sharing a gateway): the bus thread then serves requests back to back. The peer is
/// bench/peers/modbus_poll.c on the same server.
struct ModbusPoll: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "modbus-poll", abstract: "Polls/s and per-poll latency of the Modbus bus path, back to back.")

    @Option(help: "The server, HOST:PORT.") var tcp: String
    @Option(help: "Input registers read per poll (from address 0).") var registers: Int = 50
    @Option(help: "Polls measured per device (after 200 of warm-up).") var count: Int = 5000
    @Option(help: "Devices polling the bus at once.") var devices: Int = 1
    @Option(help: "A label for the server in the output.") var server: String = "server"

    func measure() async throws {
        guard let endpoint = ModbusEndpoint.tcp(tcp) else { throw ValidationError("--tcp \(tcp) is not HOST:PORT") }
        let plan = readPlan(resources: benchRegisters(registers))
        guard plan.count == 1 else { throw ValidationError("expected one request for \(registers) registers") }
        let request = plan[0]
        let bus = try ModbusBuses.acquire(endpoint, line: nil, device: "bench")
        defer { ModbusBuses.release(bus) }
        let count = count
        /// One device's loop: total and decode-only latency of each measured poll.
        @Sendable func device() async throws -> (total: [UInt64], decode: [UInt64]) {
            var total: [UInt64] = []
            var decode: [UInt64] = []
            total.reserveCapacity(count)
            decode.reserveCapacity(count)
            for i in -200..<count {
                let t0 = monotonicNanos()
                let raw = try await bus.perform(timeout: .seconds(2)) { session throws(ModbusError) in
                    try session.read(unit: 1, table: request.table, address: request.address, count: request.count)
                }
                let t1 = monotonicNanos()
                var decoded = 0
                for resource in request.resources {
                    if let part = request.raw(for: resource, in: raw), (try? resource.decode(part)) != nil { decoded += 1 }
                }
                guard decoded == request.resources.count else { throw ValidationError("decoded \(decoded) values") }
                let t2 = monotonicNanos()
                if i >= 0 {
                    total.append(t2 - t0)
                    decode.append(t2 - t1)
                }
            }
            return (total, decode)
        }
        let start = monotonicNanos()
        let results = try await withThrowingTaskGroup(of: (total: [UInt64], decode: [UInt64]).self) { group in
            for _ in 0..<devices { group.addTask { try await device() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let seconds = Double(monotonicNanos() - start) / 1e9 * Double(count) / Double(count + 200)
        let distribution = Distribution(results.flatMap(\.total))
        var out = JSONLine()
        out.add("bench", "modbus-poll")
        out.add("server", server)
        out.add("devices", devices)
        out.add("registers", registers)
        out.add("polls", count * devices)
        out.add("polls_per_s", Double(count * devices) / seconds, decimals: 1)
        out.add("p50_us", Double(distribution.percentile(50)) / 1000, decimals: 1)
        out.add("p99_us", Double(distribution.percentile(99)) / 1000, decimals: 1)
        out.add("decode_p50_us", Double(Distribution(results.flatMap(\.decode)).percentile(50)) / 1000, decimals: 1)
        out.print()
    }
}

/// CPU of the daemon polling one Modbus device of N registers at a fixed rate (one value
/// ramping, so every poll also journals a `gantry.state`), beside the C poller reading the
/// same registers at the same rate. The simulator is a separate process, not counted.
struct ModbusCPU: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "modbus-cpu", abstract: "Daemon CPU for one polled Modbus device, and a C poller's.")

    @Option(help: "nmbridged binary.") var daemon: String
    @Option(help: "nmbridge binary (for `simulate gantry`).") var cli: String
    @Option(help: "The C peer poller binary (bench/peers/modbus_poll.c).") var peer: String
    @Option(help: "Input registers per poll.") var registers: Int = 50
    @Option(help: "Poll interval in ms.") var pollMs: Int = 100
    @Option(help: "Seconds measured (after 3 s of warm-up).") var seconds: Double = 30
    @Option(help: "Working directory (created).") var dir: String

    func measure() async throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let profile = benchRegisters(registers).map { r in
            "[[resource]]\nname = \"\(r.name)\"\ntable = \"input\"\naddress = \(r.address)\ntype = \"u16\"\nscale = 0.1\nunit = \"mm\"\n"
        }.joined(separator: "\n")
        try profile.write(toFile: dir + "/bench.toml", atomically: true, encoding: .utf8)
        try "ramp r0 to 6500 over 65000s\n".write(toFile: dir + "/ramp.txt", atomically: true, encoding: .utf8)

        let simulator = Process()
        simulator.executableURL = URL(fileURLWithPath: cli)
        simulator.arguments = ["simulate", "gantry", "--profile", dir + "/bench.toml", "--tcp", "127.0.0.1:0", "--script", dir + "/ramp.txt"]
        let pipe = Pipe()
        simulator.standardOutput = pipe
        simulator.standardError = FileHandle.nullDevice
        try simulator.run()
        defer {
            simulator.terminate()
            simulator.waitUntilExit()
        }
        let address = String(decoding: pipe.fileHandleForReading.availableDataLine(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard let endpoint = ModbusEndpoint.tcp(address), case .tcp(let host, let port) = endpoint else {
            throw ValidationError("the simulator printed \"\(address)\", not HOST:PORT")
        }

        let idlePct = try await idleDaemonCPUPercent(binary: daemon, directory: dir + "/idle", seconds: seconds)

        let busyDir = dir + "/busy"
        try FileManager.default.createDirectory(atPath: busyDir, withIntermediateDirectories: true)
        let device = """
            [[device]]
            id = "gantry-bench"
            driver = "modbus"
            profile = "\(dir)/bench.toml"
            modbus = { tcp = "\(address)" }
            poll_ms = \(pollMs)
            """
        let busy = try DaemonChild(binary: daemon, directory: busyDir, devices: device, sync: "full")
        try await busy.waitUntilListening()
        let busyPct = try await cpuPercentOf(pid: busy.pid, seconds: seconds)
        busy.stop()

        let peerPct = try await peerCPUPercent(peer, [host, "\(port)", "\(registers)", "0", "\(pollMs)"], seconds: seconds)

        var out = JSONLine()
        out.add("bench", "modbus-cpu")
        out.add("registers", registers)
        out.add("poll_ms", pollMs)
        out.add("seconds", seconds, decimals: 0)
        out.add("daemon_idle_pct", idlePct, decimals: 3)
        out.add("daemon_pct", busyPct, decimals: 3)
        out.add("daemon_device_pct", busyPct - idlePct, decimals: 3)
        out.add("peer_pct", peerPct, decimals: 3)
        out.print()
    }
}

extension FileHandle {
    /// Reads up to the first newline (blocking): a child's first line of output.
    func availableDataLine() -> Data {
        var line = Data()
        while true {
            let byte = readData(ofLength: 1)
            if byte.isEmpty || byte == Data([0x0A]) { return line }
            line.append(byte)
        }
    }
}
