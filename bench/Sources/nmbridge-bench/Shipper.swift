import ArgumentParser
import Foundation
import Logging
import NMBridgeCore
import NMCatalog
import NMJournal
import NMShipper
import Synchronization

/// Where the PostgreSQL server is, shared by the shipper benchmarks.
struct PostgresOptions: ParsableArguments {
    @Option(help: "The server (postgres://USER@HOST:PORT/DB or …@/DB?host=/socket/dir). The nmbridge schema must be empty of this node's rows.")
    var postgres: String

    @Option(help: "File holding the password (else NMBRIDGE_POSTGRES_PASSWORD).")
    var passwordFile: String?

    func connector() throws -> PostgresConnector {
        PostgresConnector(
            url: try PostgresURL(postgres),
            password: try PostgresConnector.password(file: passwordFile, environment: ProcessInfo.processInfo.environment))
    }
}

func benchLogger() -> Logger {
    var logger = Logger(label: "nmbridge-bench")
    logger.logLevel = .error
    return logger
}

/// A backlog of N events in a fresh local journal, shipped from cursor 0 until the server
/// holds them all: throughput, and the catch-up time of that backlog. With `--csv` it also
/// writes the same rows as CSV for the peer (`COPY … FROM`), outside the timing.
///
/// Output: `{"bench":"shipper-catchup","impl":"nmbridge","events":N,"batch_size":B,
///   "seconds":…,"events_per_s":…,"batches":…,"fill_seconds":…,"cpu_s":…}`
struct ShipperCatchUp: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "shipper-catchup",
        abstract: "Ships a backlog of N journaled events to PostgreSQL; events/s and seconds to catch up.")

    @OptionGroup var server: PostgresOptions

    @Option(help: "Events in the backlog.")
    var events: Int = 100_000

    @Option(help: "[shipper] batch_size.")
    var batchSize: Int = 1000

    @Option(help: "Directory for the journal (created if missing).")
    var dir: String

    @Option(help: "Node name of the shipped events.")
    var node: String = "bench"

    @Option(help: "Also write the rows as CSV here (node, journal, seq, time, device, driver, kind, severity, data, raw).")
    var csv: String?

    func measure() async throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = "\(dir)/shipper-\(node).db"
        removeDatabase(path)
        let logger = benchLogger()
        let journal = try Journal.open(JournalOptions(path: path, node: node, registry: .standard, sync: .normal), logger: logger)
        // The backlog: events shaped like dose calibrator measurements.
        let fillStart = monotonicNanos()
        var appended = 0
        while appended < events {
            let count = min(8192, events - appended)
            try await journal.append((0..<count).map { i in
                EventDraft(
                    device: "dosecal-hotlab", driver: "capintec-crc15r", kind: "dosecal.measurement",
                    data: [
                        "nuclide": "Tc-99m", "activity_bq": .double(7.4e8 + Double(appended + i)), "reading": "20.00 mCi",
                        "unit": "mCi",
                    ],
                    raw: [0x46, 0x20, 0x31, 0x38, 0x20, 0x20, 0x05, 0xcc, 0x85, 0x35, 0x40])
            })
            appended += count
        }
        let fillSeconds = Double(monotonicNanos() - fillStart) / 1e9
        if let csv { try await writeCSV(journal, to: csv) }

        var settings = DaemonConfiguration.Shipper(url: try PostgresURL(server.postgres))
        settings.batchSize = batchSize
        let shipper = JournalShipper(journal: journal, settings: settings, connector: try server.connector(), logger: logger)
        let cpuBefore = processCPUSeconds()
        let start = monotonicNanos()
        let task = Task { try await shipper.run() }
        while (shipper.status.snapshot.shippedSeq ?? 0) < Int64(events) {
            if let error = shipper.status.snapshot.lastError, shipper.status.snapshot.failures > 3 {
                task.cancel()
                throw ValidationError("shipping fails: \(error)")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        let seconds = Double(monotonicNanos() - start) / 1e9
        let cpu = processCPUSeconds() - cpuBefore
        task.cancel()
        _ = await task.result
        var line = JSONLine()
        line.add("bench", "shipper-catchup")
        line.add("impl", "nmbridge")
        line.add("events", events)
        line.add("batch_size", batchSize)
        line.add("seconds", seconds)
        line.add("events_per_s", Double(events) / seconds, decimals: 0)
        line.add("batches", Int(shipper.status.snapshot.batches))
        line.add("fill_seconds", fillSeconds)
        line.add("cpu_s", cpu)
        line.print()
    }

    private func writeCSV(_ journal: Journal, to path: String) async throws {
        FileManager.default.createFile(atPath: path, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: path) else { throw ValidationError("cannot write \(path)") }
        defer { try? handle.close() }
        func quote(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
        let id = journal.id.uuidString.lowercased()
        var after: Int64 = 0
        while true {
            let page = try await journal.events(EventQuery(after: after, limit: 10_000))
            guard let last = page.events.last else { return }
            var text = ""
            for e in page.events {
                let fields = [
                    quote(e.node), id, String(e.seq), Timestamp.format(e.time), e.device.map(quote) ?? "",
                    e.driver.map(quote) ?? "", quote(e.kind), e.severity.rawValue, quote(e.dataJSON), e.raw.map { Hex.encode($0) } ?? "",
                ]
                text += fields.joined(separator: ",") + "\n"
            }
            handle.write(Data(text.utf8))
            after = last.seq
        }
    }
}

/// End-to-end latency: append on node A (one event every 1/rate s) → the shipper (default
/// flush interval unless `--flush-ms`) → PostgreSQL → a `DepartmentFollower` (the code of
/// `nmbridge tail -f --postgres`) woken by NOTIFY. Both ends in this process, so one
/// monotonic clock measures the whole path.
///
/// Output: `{"bench":"shipper-latency","impl":"nmbridge","flush_ms":…,"rate":…,"samples":…,
///   "p50_ms":…,"p99_ms":…,"max_ms":…}`
struct ShipperLatency: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "shipper-latency",
        abstract: "Append on one node → department subscriber through PostgreSQL; p50/p99 latency.")

    @OptionGroup var server: PostgresOptions

    @Option(help: "Events per second appended on node A.")
    var rate: Int = 50

    @Option(help: "Seconds of appending.")
    var seconds: Int = 20

    @Option(help: "[shipper] flush_interval_ms (default: the shipper's default).")
    var flushMs: Int?

    @Option(help: "Directory for the journal (created if missing).")
    var dir: String

    func measure() async throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let node = "latency-a"
        let path = "\(dir)/shipper-latency.db"
        removeDatabase(path)
        let logger = benchLogger()
        let journal = try Journal.open(JournalOptions(path: path, node: node, registry: .standard, sync: .normal), logger: logger)
        var settings = DaemonConfiguration.Shipper(url: try PostgresURL(server.postgres))
        if let flushMs { settings.flushInterval = Double(flushMs) / 1000 }
        let connector = try server.connector()
        let shipper = JournalShipper(journal: journal, settings: settings, connector: connector, logger: logger)
        let shipping = Task { try await shipper.run() }
        let samples = Mutex<[UInt64]>([])
        let follower = DepartmentFollower(connector: connector, nodes: [node], filter: EventFilter(kinds: ["experimental.latency"]), logger: logger)
        let following = Task {
            try await follower.run(cursors: [:], backlog: 0) { event, _ in
                let now = monotonicNanos()
                if let sent = event.data["t_ns"]?.intValue { samples.withLock { $0.append(now - UInt64(sent)) } }
            }
        }
        // Let the shipper connect and the follower LISTEN before timing.
        try await journal.append(EventDraft(kind: "experimental.warmup"))
        while (shipper.status.snapshot.shippedSeq ?? 0) < 1 { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(500))
        let total = rate * seconds
        let interval = 1_000_000_000 / UInt64(rate)
        let start = monotonicNanos()
        for i in 0..<total {
            let due = start + UInt64(i) * interval
            let now = monotonicNanos()
            if due > now { try await Task.sleep(for: .nanoseconds(Int64(due - now))) }
            try await journal.append(EventDraft(kind: "experimental.latency", data: ["t_ns": .int(Int64(monotonicNanos()))]))
        }
        let deadline = monotonicNanos() + 30_000_000_000
        while samples.withLock({ $0.count }) < total && monotonicNanos() < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        following.cancel()
        shipping.cancel()
        _ = await following.result
        _ = await shipping.result
        let distribution = Distribution(samples.withLock { $0 })
        var line = JSONLine()
        line.add("bench", "shipper-latency")
        line.add("impl", "nmbridge")
        line.add("flush_ms", Int(settings.flushInterval * 1000))
        line.add("rate", rate)
        line.add("samples", distribution.count)
        line.add("expected", total)
        line.add("p50_ms", Double(distribution.percentile(50)) / 1e6)
        line.add("p99_ms", Double(distribution.percentile(99)) / 1e6)
        line.add("max_ms", Double(distribution.max) / 1e6)
        line.print()
    }
}
