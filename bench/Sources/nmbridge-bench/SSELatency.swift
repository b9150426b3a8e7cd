import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NMBridgeCore
import NMCatalog
import NMClient
import NMJournal
import NMServer
import ServiceLifecycle
import Synchronization

/// End-to-end latency from `Journal.append` to a Server-Sent Event arriving at a client.
///
/// In one process: a journal, the daemon's real API router served by Hummingbird on a
/// unix socket, `subscribers` `APIClient` streams (one task each), and one producer
/// appending at a steady rate. The producer is open-loop: event i is started at
/// t0 + i/rate whether or not earlier appends have committed, so a slow commit delays
/// the events behind it instead of silently lowering the rate. Each event carries the
/// monotonic time at which `append` was called (`data.t_ns`); each subscriber records
/// receive time − `t_ns`. The latency therefore includes the commit (fsync with
/// sync=full), the fan-out, the HTTP write, and the client's parsing.
///
/// Output: one JSON line with p50/p99/max over all subscribers' samples and the number
/// of events each subscriber received (which must equal `sent`).
struct SSELatency: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "sse-latency",
        abstract: "Append-to-SSE-delivery latency with many live subscribers, in one process.")

    @Option(help: "Events per second appended by the producer.")
    var rate: Int = 1000

    @Option(help: "Number of SSE subscribers.")
    var subscribers: Int = 16

    @Option(help: "How long the producer runs.")
    var seconds: Double = 10

    @OptionGroup var storage: StorageOptions


    @Option(help: "Seconds to wait after the last append for subscribers to receive everything.")
    var drainTimeout: Double = 15

    func validate() throws {
        guard rate > 0, subscribers > 0, seconds > 0 else { throw ValidationError("--rate, --subscribers and --seconds must be positive") }
    }

    struct SubscriberResult: Sendable {
        var latencies: [UInt64]
        var received: Int
        var error: String?
    }

    func measure() async throws {
        try FileManager.default.createDirectory(atPath: storage.dir, withIntermediateDirectories: true)
        var logger = Logger(label: "nmbridge-bench")
        logger.logLevel = .warning
        let journalPath = "\(storage.dir)/sse-\(storage.sync).db"
        removeDatabase(journalPath)
        let socketPath = "\(storage.dir)/api.sock"
        unlink(socketPath)

        let journal = try Journal.open(
            JournalOptions(path: journalPath, node: "bench", registry: .standard, sync: storage.syncMode),
            logger: logger)
        let routes = APIRoutes(journal: journal, monitor: DeviceMonitor(journal: journal, devices: [], logger: logger), node: "bench")
        let (listening, listeningContinuation) = AsyncStream<Void>.makeStream()
        let app = Application(
            router: routes.router(token: nil),
            configuration: ApplicationConfiguration(address: .unixDomainSocket(path: socketPath), serverName: "nmbridge-bench"),
            onServerRunning: { _ in listeningContinuation.yield() },
            logger: logger)
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: app)], gracefulShutdownSignals: [], logger: logger))
        let server = Task { try await serviceGroup.run() }
        for await _ in listening { break }

        // Connect every subscriber before the first event; each stream starts after the
        // current last seq, so nothing the producer appends can be missed.
        let total = Int((Double(rate) * seconds).rounded())
        let after = journal.lastSeq
        let client = APIClient(endpoint: .unixSocket(path: socketPath))
        var streams: [ServerSentEventStream] = []
        for _ in 0..<subscribers {
            streams.append(try await client.stream("/v1/events/stream?after=\(after)"))
        }
        let subscriberTasks = streams.map { stream in
            Task { () -> SubscriberResult in
                var result = SubscriberResult(latencies: [], received: 0)
                result.latencies.reserveCapacity(total)
                do {
                    for try await event in stream {
                        let now = monotonicNanos()
                        guard event.event == "experimental.bench", let sent = Self.sentNanos(event.data) else { continue }
                        result.latencies.append(now &- sent)
                        result.received += 1
                        if result.received == total { break }
                    }
                } catch {
                    result.error = "\(error)"
                }
                return result
            }
        }
        // Let the subscriptions reach the live feed before timing.
        try await Task.sleep(for: .milliseconds(300))

        let cpuBefore = processCPUSeconds()
        let clock = ContinuousClock()
        let intervalNanos = 1e9 / Double(rate)
        let start = clock.now
        var maxScheduleLagNanos: Int64 = 0
        let appendLatencies = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for i in 0..<total {
                let due = start + .nanoseconds(Int64((Double(i) * intervalNanos).rounded()))
                if clock.now < due {
                    try await Task.sleep(until: due, tolerance: .zero, clock: clock)
                }
                let lag = (clock.now - due).components
                maxScheduleLagNanos = max(maxScheduleLagNanos, lag.seconds * 1_000_000_000 + lag.attoseconds / 1_000_000_000)
                group.addTask {
                    let t0 = monotonicNanos()
                    try await journal.append(
                        EventDraft(
                            device: "bench-producer", driver: "bench", kind: "experimental.bench",
                            data: ["t_ns": .int(Int64(t0)), "i": .int(Int64(i))]))
                    return monotonicNanos() - t0
                }
            }
            var all: [UInt64] = []
            all.reserveCapacity(total)
            for try await latency in group { all.append(latency) }
            return all
        }
        let producerSeconds = Double((clock.now - start).components.seconds)
            + Double((clock.now - start).components.attoseconds) / 1e18

        // Give subscribers time to receive the tail, then stop whoever is still waiting.
        let drainTimeout = self.drainTimeout
        let watchdog = Task {
            try await Task.sleep(for: .seconds(drainTimeout))
            for task in subscriberTasks { task.cancel() }
        }
        var results: [SubscriberResult] = []
        for task in subscriberTasks { results.append(await task.value) }
        watchdog.cancel()
        let cpu = processCPUSeconds() - cpuBefore

        journal.closeFollowers()
        await serviceGroup.triggerGracefulShutdown()
        _ = try? await server.value
        unlink(socketPath)

        let latency = Distribution(results.flatMap(\.latencies))
        let append = Distribution(appendLatencies)
        let received = results.map(\.received)
        var line = JSONLine()
        line.add("bench", "sse-latency")
        line.add("impl", "nmbridge")
        line.add("sync", storage.sync)
        line.add("rate", rate)
        line.add("subscribers", subscribers)
        line.add("sent", total)
        line.add("achieved_rate", Double(total) / producerSeconds, decimals: 1)
        line.add("max_schedule_lag_ms", Double(maxScheduleLagNanos) / 1e6, decimals: 3)
        line.add("samples", latency.count)
        line.add("p50_ms", Double(latency.percentile(50)) / 1e6)
        line.add("p99_ms", Double(latency.percentile(99)) / 1e6)
        line.add("max_ms", Double(latency.max) / 1e6)
        line.add("append_p50_ms", Double(append.percentile(50)) / 1e6)
        line.add("append_p99_ms", Double(append.percentile(99)) / 1e6)
        line.add("commits", journal.statistics.commits)
        line.add("lagged_subscribers", journal.statistics.laggedSubscribers)
        line.add("all_received", received.allSatisfy { $0 == total })
        line.add("received", received)
        line.add("cpu_s", cpu)
        line.print()
        for (i, result) in results.enumerated() where result.error != nil {
            FileHandle.standardError.write(Data("subscriber \(i): \(result.error!)\n".utf8))
        }
        if !received.allSatisfy({ $0 == total }) { throw ExitCode(1) }
    }

    /// `data.t_ns` from an envelope, found by text so that the measuring client spends
    /// little CPU (it shares the process and the cores with the server).
    static func sentNanos(_ envelope: String) -> UInt64? {
        var text = envelope
        return text.withUTF8 { bytes -> UInt64? in
            let key: [UInt8] = Array("\"t_ns\":".utf8)
            guard bytes.count >= key.count else { return nil }
            var i = 0
            search: while i <= bytes.count - key.count {
                for j in 0..<key.count where bytes[i + j] != key[j] {
                    i += 1
                    continue search
                }
                break
            }
            guard i <= bytes.count - key.count else { return nil }
            var value: UInt64 = 0
            var digits = 0
            var k = i + key.count
            while k < bytes.count, bytes[k] >= UInt8(ascii: "0"), bytes[k] <= UInt8(ascii: "9") {
                value = value &* 10 &+ UInt64(bytes[k] - UInt8(ascii: "0"))
                digits += 1
                k += 1
            }
            return digits > 0 ? value : nil
        }
    }
}
