import Foundation

/// Nanoseconds on CLOCK_MONOTONIC: one clock shared by every task of the process, so a
/// time taken in the producer can be subtracted from a time taken in a subscriber.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Percentiles by nearest rank over samples sorted once.
struct Distribution {
    let sorted: [UInt64]

    init(_ samples: [UInt64]) { sorted = samples.sorted() }

    var count: Int { sorted.count }

    /// The smallest sample such that at least `p` percent of the samples are ≤ it.
    func percentile(_ p: Double) -> UInt64 {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[Swift.min(Swift.max(rank, 1), sorted.count) - 1]
    }

    var max: UInt64 { sorted.last ?? 0 }
}

/// Seconds of CPU (user + system) used by this process so far.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// One flat JSON object with keys in insertion order (numbers, strings, booleans, arrays of integers).
struct JSONLine {
    private var fields: [String] = []

    mutating func add(_ key: String, _ value: String) { fields.append("\"\(key)\":\"\(value)\"") }
    mutating func add(_ key: String, _ value: Int) { fields.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: Int64) { fields.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: Bool) { fields.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: [Int]) {
        fields.append("\"\(key)\":[" + value.map(String.init).joined(separator: ",") + "]")
    }
    mutating func add(_ key: String, _ value: Double, decimals: Int = 3) {
        fields.append("\"\(key)\":" + String(format: "%.\(decimals)f", value))
    }

    var text: String { "{" + fields.joined(separator: ",") + "}" }

    func print() {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}

/// Removes a database and its WAL/SHM companions.
func removeDatabase(_ path: String) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        unlink(path + suffix)
    }
}
