import Foundation
import NMBridgeCore
import Synchronization

/// One job: a stored file to send to one destination. Its id is the seq of its
/// `dicom.forward.queued` event.
public struct OutboundJob: Sendable, Equatable {
    public var id: Int64
    public var destination: String
    public var what: String
    public var path: String
    public var sopInstance: String
    public var sopClass: String
    public var study: String?
    public var route: String?
    public var queued: Date
    public var attempts = 0

    /// The job a `dicom.forward.queued` event describes.
    init?(queued event: Event) {
        let data = event.data
        guard event.kind == "dicom.forward.queued", let destination = data["destination"]?.stringValue,
            let path = data["path"]?.stringValue
        else { return nil }
        id = event.seq
        self.destination = destination
        what = data["what"]?.stringValue ?? "instance"
        self.path = path
        sopInstance = data["sop_instance_uid"]?.stringValue ?? ""
        sopClass = data["sop_class_uid"]?.stringValue ?? ""
        study = data["study_uid"]?.stringValue
        route = data["route"]?.stringValue
        queued = event.time
    }

    var json: JSONValue {
        [
            "job": .int(id), "destination": .string(destination), "what": .string(what), "path": .string(path),
            "sop_instance_uid": .string(sopInstance), "sop_class_uid": .string(sopClass), "study_uid": study.map(JSONValue.string) ?? .null,
            "route": route.map(JSONValue.string) ?? .null, "queued": .string(Timestamp.format(queued)), "attempts": .int(Int64(attempts)),
        ]
    }
}

/// The jobs waiting, per destination in queue order, and what each destination's worker
/// last saw. Shared by the workers, the journal follower and the API.
public final class OutboundQueue: Sendable {
    struct DestinationState: Sendable {
        var jobs: [OutboundJob] = []
        var failures = 0
        var nextAttempt: Date?
        var lastError: String?
        var lastErrorTime: Date?
        var lastDelivery: Date?
        var delivered: Int64 = 0
        var gaveUp: Int64 = 0
        /// Jobs being sent by the worker now (not droppable until it is done with them).
        var inFlight: Set<Int64> = []
    }

    private let state: Mutex<[String: DestinationState]>

    init(destinations: [String]) {
        state = Mutex(Dictionary(uniqueKeysWithValues: destinations.map { ($0, DestinationState()) }))
    }

    /// Adds jobs (from `dicom.forward.queued` events, in seq order).
    func add(_ jobs: [OutboundJob]) {
        state.withLock { state in
            for job in jobs { state[job.destination, default: DestinationState()].jobs.append(job) }
        }
    }

    /// Replaces every waiting job (the queue rebuilt from the journal, also after the
    /// service started over); counters and last errors stay.
    func replaceJobs(_ jobs: [OutboundJob]) {
        state.withLock { state in
            for name in state.keys {
                state[name]?.jobs = []
                state[name]?.inFlight = []
            }
            for job in jobs { state[job.destination, default: DestinationState()].jobs.append(job) }
        }
    }

    /// Removes finished jobs (delivered, given up, dropped).
    func finish(_ ids: Set<Int64>, destination: String, delivered: Int = 0, gaveUp: Int = 0) {
        state.withLock { state in
            state[destination]?.jobs.removeAll { ids.contains($0.id) }
            state[destination]?.inFlight.subtract(ids)
            state[destination]?.delivered += Int64(delivered)
            state[destination]?.gaveUp += Int64(gaveUp)
            if delivered > 0 {
                state[destination]?.lastDelivery = Date()
                state[destination]?.failures = 0
            }
        }
    }

    /// The next jobs for a destination's worker, oldest first, when it is not backing off:
    /// at most `limit`, and no more distinct (SOP class, transfer syntax) pairs than one
    /// association can propose (the caller checks those after opening the files).
    func take(destination: String, limit: Int, now: Date = Date()) -> [OutboundJob] {
        state.withLock { state in
            guard var entry = state[destination], !entry.jobs.isEmpty else { return [] }
            if let next = entry.nextAttempt, next > now { return [] }
            let batch = Array(entry.jobs.prefix(limit))
            entry.inFlight = Set(batch.map(\.id))
            for index in entry.jobs.indices.prefix(batch.count) { entry.jobs[index].attempts += 1 }
            state[destination] = entry
            return entry.jobs.prefix(batch.count).map { $0 }
        }
    }

    /// Jobs handed back by a worker (not sent on this attempt).
    func release(destination: String) {
        state.withLock { $0[destination]?.inFlight = [] }
    }

    /// Records a failed attempt; returns the back-off chosen and the number waiting.
    func failed(destination: String, error: String, initial: Double, maximum: Double, now: Date = Date()) -> (delay: Double, failures: Int, waiting: Int) {
        state.withLock { state in
            var entry = state[destination] ?? DestinationState()
            entry.failures += 1
            let delay = min(maximum, initial * pow(2, Double(min(entry.failures - 1, 30))))
            entry.nextAttempt = now.addingTimeInterval(delay)
            entry.lastError = error
            entry.lastErrorTime = now
            entry.inFlight = []
            state[destination] = entry
            return (delay, entry.failures, entry.jobs.count)
        }
    }

    /// Clears the back-off (an operator's retry).
    func wake(destination: String) {
        state.withLock { $0[destination]?.nextAttempt = nil }
    }

    func job(_ id: Int64) -> OutboundJob? {
        state.withLock { state in state.values.lazy.compactMap { $0.jobs.first { $0.id == id } }.first }
    }

    func lastError(_ destination: String) -> String? { state.withLock { $0[destination]?.lastError } }

    func isInFlight(_ id: Int64) -> Bool {
        state.withLock { state in state.values.contains { $0.inFlight.contains(id) } }
    }

    /// Jobs older than `age` seconds, for give-up.
    func expired(destination: String, age: Double, now: Date = Date()) -> [OutboundJob] {
        state.withLock { state in
            (state[destination]?.jobs ?? []).filter { now.timeIntervalSince($0.queued) > age && !(state[destination]?.inFlight.contains($0.id) ?? false) }
        }
    }

    public var waiting: Int { state.withLock { $0.values.reduce(0) { $0 + $1.jobs.count } } }

    /// Per destination: depth, oldest job, failures, last error, counters; and the jobs
    /// (at most `jobLimit` per destination).
    public func snapshot(jobLimit: Int = 100, now: Date = Date()) -> JSONValue {
        state.withLock { state in
            var destinations: [JSONValue] = []
            for name in state.keys.sorted() {
                let entry = state[name]!
                let oldest = entry.jobs.map(\.queued).min()
                destinations.append([
                    "destination": .string(name), "waiting": .int(Int64(entry.jobs.count)),
                    "oldest_job": oldest.map { .string(Timestamp.format($0)) } ?? .null,
                    "oldest_age_s": oldest.map { .double((now.timeIntervalSince($0) * 10).rounded() / 10) } ?? .null,
                    "failures": .int(Int64(entry.failures)),
                    "next_attempt": entry.nextAttempt.flatMap { $0 > now ? JSONValue.string(Timestamp.format($0)) : nil } ?? .null,
                    "last_error": entry.lastError.map(JSONValue.string) ?? .null,
                    "last_error_time": entry.lastErrorTime.map { .string(Timestamp.format($0)) } ?? .null,
                    "last_delivery": entry.lastDelivery.map { .string(Timestamp.format($0)) } ?? .null,
                    "delivered": .int(entry.delivered), "gave_up": .int(entry.gaveUp),
                    "jobs": .array(entry.jobs.prefix(jobLimit).map(\.json)),
                ])
            }
            return ["destinations": .array(destinations), "waiting": .int(Int64(state.values.reduce(0) { $0 + $1.jobs.count }))]
        }
    }

    /// For `/metrics`: (destination, waiting, oldest age s, failures, delivered, gave up).
    public func metrics(now: Date = Date()) -> [(destination: String, waiting: Int, oldestAge: Double, failures: Int, delivered: Int64, gaveUp: Int64)] {
        state.withLock { state in
            state.keys.sorted().map { name in
                let entry = state[name]!
                let oldest = entry.jobs.map(\.queued).min().map { now.timeIntervalSince($0) } ?? 0
                return (name, entry.jobs.count, oldest, entry.failures, entry.delivered, entry.gaveUp)
            }
        }
    }
}
