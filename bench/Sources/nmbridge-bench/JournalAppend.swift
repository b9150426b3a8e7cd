import ArgumentParser
import Foundation
import Logging
import NMBridgeCore
import NMCatalog
import NMJournal

/// N writer tasks, each appending single events in a loop; every `append` is awaited
/// (durable) before the writer's next one. The total number of events is fixed and
/// split evenly across writers. The journal is free to put concurrent appends into one
/// transaction (group commit): that is what is being measured.
///
/// Output, one line per writer count:
/// `{"bench":"journal-append","impl":"nmbridge","sync":"full","writers":8,"events":20000,
///   "seconds":…,"events_per_s":…,"p50_us":…,"p99_us":…,"max_us":…,"commits":…,
///   "events_per_commit":…,"cpu_s":…}`
struct JournalAppend: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal-append",
        abstract: "Concurrent single-event appends to a fresh journal; events/s and per-append latency.")

    @Option(help: "Comma-separated writer counts, each measured on a fresh journal file.")
    var writers: String = "1,8,64"

    @Option(help: "Total events per writer count (split across the writers).")
    var events: Int = 20_000

    @OptionGroup var storage: StorageOptions


    @Option(help: "Events appended by one writer before timing starts (same in the C peer).")
    var warmup: Int = 64

    func validate() throws {
        guard !writerCounts.isEmpty, writerCounts.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--writers must be a comma-separated list of positive integers")
        }
        guard events > 0 else { throw ValidationError("--events must be positive") }
    }

    var writerCounts: [Int] { writers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func measure() async throws {
        try FileManager.default.createDirectory(atPath: storage.dir, withIntermediateDirectories: true)
        var logger = Logger(label: "nmbridge-bench")
        logger.logLevel = .warning
        let syncMode = storage.syncMode
        for count in writerCounts {
            let path = "\(storage.dir)/nmbridge-\(storage.sync)-w\(count).db"
            removeDatabase(path)
            let journal = try Journal.open(JournalOptions(path: path, node: "bench", registry: .standard, sync: syncMode), logger: logger)
            for i in 0..<warmup {
                try await journal.append(Self.draft(writer: 0, index: i))
            }
            let commitsBefore = journal.statistics.commits
            let cpuBefore = processCPUSeconds()
            let total = events
            let start = monotonicNanos()
            let latencies = try await withThrowingTaskGroup(of: [UInt64].self) { group in
                for writer in 0..<count {
                    let share = total / count + (writer < total % count ? 1 : 0)
                    group.addTask {
                        var samples: [UInt64] = []
                        samples.reserveCapacity(share)
                        for i in 0..<share {
                            let draft = Self.draft(writer: writer, index: i)
                            let t0 = monotonicNanos()
                            try await journal.append(draft)
                            samples.append(monotonicNanos() - t0)
                        }
                        return samples
                    }
                }
                var all: [UInt64] = []
                all.reserveCapacity(total)
                for try await samples in group { all.append(contentsOf: samples) }
                return all
            }
            let elapsed = Double(monotonicNanos() - start) / 1e9
            let cpu = processCPUSeconds() - cpuBefore
            let commits = journal.statistics.commits - commitsBefore
            let distribution = Distribution(latencies)
            precondition(distribution.count == total, "lost samples")

            var line = JSONLine()
            line.add("bench", "journal-append")
            line.add("impl", "nmbridge")
            line.add("sync", storage.sync)
            line.add("writers", count)
            line.add("events", total)
            line.add("seconds", elapsed, decimals: 4)
            line.add("events_per_s", Double(total) / elapsed, decimals: 1)
            line.add("p50_us", Double(distribution.percentile(50)) / 1e3, decimals: 1)
            line.add("p99_us", Double(distribution.percentile(99)) / 1e3, decimals: 1)
            line.add("max_us", Double(distribution.max) / 1e3, decimals: 1)
            line.add("commits", commits)
            line.add("events_per_commit", Double(total) / Double(max(commits, 1)), decimals: 2)
            line.add("cpu_s", cpu, decimals: 3)
            line.print()
            journal.closeFollowers()
        }
    }

    /// What a driver appends: a device event with a small payload.
    static func draft(writer: Int, index: Int) -> EventDraft {
        EventDraft(
            device: "bench-\(writer)", driver: "bench", kind: "experimental.bench",
            data: ["writer": .int(Int64(writer)), "i": .int(Int64(index))])
    }
}
