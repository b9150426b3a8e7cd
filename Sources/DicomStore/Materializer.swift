import Foundation
import Logging
import NMBridgeCore
import Synchronization

/// Directories touched by a batch of renames, synced once each after all of them.
final class DirectoryBatch {
    var paths: Set<String> = []
}

/// An instance acknowledged from the spool, waiting to be put in place: its `.part` file
/// is written and checked but not yet synced (nor hashed: its SHA-256 is taken here).
struct SpooledInstance: Sendable {
    let file: InstanceFile
    let relativePath: String
    let device: String
    /// The event's fields known at receipt: calling AE, peer, transfer syntax, the
    /// dataset's summary.
    let data: [String: JSONValue]
    let study: String
    let series: String
    let record: InstanceSpool.Record
    let received: Date
}

/// Puts spooled instances in place behind the associations' backs, in batches: one pass
/// of file syncs, the renames, one sync per directory touched, then one journal
/// transaction for the batch's `dicom.instance.stored` (so the event keeps its meaning:
/// the file is in place and durable), then the spool records are released. The
/// receiver's other events (associations opened and closed, failures, instances stored
/// without the spool) pass through the same queue, so the journal keeps the order in which
/// things happened. A batch that cannot be put in place (a full disk) waits at the head of
/// the queue and is retried; its records stay in the spool meanwhile.
final class Materializer: Sendable {
    enum Item: Sendable {
        case instance(SpooledInstance)
        case work(@Sendable () async -> Void)
    }

    private struct State {
        var items: [Item] = []
        var finished = false
        /// Why the last batch could not be put in place, until one can.
        var fault: String?
        var materialized = 0
        var batches = 0
    }
    private let state = Mutex(State())
    private let bell: AsyncStream<Void>.Continuation
    private let rings: AsyncStream<Void>
    private let queue = DispatchQueue(label: "nmbridge.dicom.materializer")
    static let largestBatch = 256

    init() {
        (rings, bell) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func enqueue(_ item: Item) {
        state.withLock { $0.items.append(item) }
        bell.yield()
    }

    /// No more items will come: `run` returns once the queue is empty.
    func finish() {
        bell.finish()
    }

    /// What waits, how late the oldest waiting instance is, and why nothing moves (if so).
    var status: (pending: Int, lagSeconds: Double, fault: String?, materialized: Int) {
        state.withLock { s in
            let oldest = s.items.lazy.compactMap { item -> Date? in
                if case .instance(let instance) = item { return instance.received }
                return nil
            }.first
            return (s.items.count, oldest.map { max(0, Date().timeIntervalSince($0)) } ?? 0, s.fault, s.materialized)
        }
    }

    func run(_ shared: ReceiverContext) async {
        for await _ in rings {
            while true {
                // The batch stays in `items` while it is processed, so that `status` counts
                // it (a retried batch once read as nothing pending); items only ever come
                // at the end, so the batch is still the front when it is done.
                let batch = state.withLock { Array($0.items.prefix(Self.largestBatch)) }
                if batch.isEmpty { break }
                let left = await process(batch, shared)
                state.withLock { s in
                    s.items.removeFirst(batch.count)
                    s.items.insert(contentsOf: left, at: 0)
                }
                if !left.isEmpty { try? await Task.sleep(for: .seconds(1)) }
            }
        }
    }

    /// Returns what could not be done now (from the first instance that could not be put
    /// in place on).
    private func process(_ batch: [Item], _ shared: ReceiverContext) async -> [Item] {
        var index = 0
        while index < batch.count {
            if case .work(let work) = batch[index] {
                await work()
                index += 1
                continue
            }
            var run: [SpooledInstance] = []
            while index < batch.count, case .instance(let instance) = batch[index] {
                run.append(instance)
                index += 1
            }
            let waiting = await materialize(run, shared)
            if !waiting.isEmpty { return waiting.map(Item.instance) + batch[index...] }
        }
        return []
    }

    private enum Placed {
        case placed(SpooledInstance, path: String, sha256: String, outcome: StoragePath.Outcome)
        case failed(SpooledInstance, StoreError)
    }

    /// Puts a run of instances in place and journals them; returns those that must wait.
    private func materialize(_ run: [SpooledInstance], _ shared: ReceiverContext) async -> [SpooledInstance] {
        let policy = shared.settings.duplicates
        let (placed, waiting, fault) = await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: Self.place(run, policy: policy)) }
        }
        if let fault {
            let first = state.withLock { s -> Bool in
                defer { s.fault = fault }
                return s.fault == nil
            }
            if first { shared.logger.error("cannot put received instances in place; they stay in the spool and are retried", metadata: ["error": "\(fault)"]) }
        } else {
            state.withLock { $0.fault = nil }
        }
        var drafts: [EventDraft] = []
        var completions: [@Sendable () -> Void] = []
        for outcome in placed {
            switch outcome {
            case .placed(let instance, let path, let sha256, let committed):
                var data = instance.data
                data["path"] = .string(path)
                data["bytes"] = .int(Int64(instance.file.size))
                data["sha256"] = .string(sha256)
                var counted = true
                switch committed {
                case .stored(let replaced):
                    if let replaced {
                        drafts.append(
                            EventDraft(
                                device: instance.device, driver: "dicom", kind: "dicom.instance.replaced", severity: .notice,
                                data: [
                                    "path": .string(path), "old_sha256": .string(replaced), "new_sha256": .string(sha256),
                                    "sop_instance_uid": data["sop_instance_uid"] ?? .null,
                                ]))
                        completions.append {}
                    }
                case .identical:
                    counted = false
                    data["duplicate"] = .string("identical bytes were already stored")
                case .kept(let existing):
                    counted = false
                    data["sha256"] = .string(existing)
                    data["duplicate"] = .string(
                        "different bytes (SHA-256 \(sha256)) were received and discarded: duplicates = \"keep\"")
                }
                drafts.append(EventDraft(device: instance.device, driver: "dicom", kind: "dicom.instance.stored", data: data))
                let stored = data
                let isNew = counted
                completions.append {
                    instance.file.unstage()
                    if isNew {
                        shared.studies.add(
                            study: instance.study, series: instance.series, device: instance.device, fields: stored,
                            bytes: instance.file.size)
                    }
                    shared.spool?.release(instance.record)
                }
            case .failed(let instance, let error):
                // Acknowledged, yet it cannot be put in place (another association stored
                // other bytes of the same instance meanwhile, duplicates = "reject").
                var data = instance.data
                data["status"] = .string(String(format: "0x%04X", error.status))
                data["error"] = .string(error.message + " (after its sender was answered success; its bytes were in the spool)")
                drafts.append(EventDraft(device: instance.device, driver: "dicom", kind: "dicom.instance.failed", severity: .error, data: data))
                completions.append {
                    instance.file.discard()
                    shared.spool?.release(instance.record)
                }
            }
        }
        if !drafts.isEmpty {
            do {
                try await shared.sink.emit(drafts)
                for completion in completions { completion() }
            } catch {
                shared.logger.error("cannot journal stored instances; kept to journal later", metadata: ["error": "\(error)", "count": "\(drafts.count)"])
                for (draft, completion) in zip(drafts, completions) {
                    shared.backlog.add(draft, journaled: completion, sink: shared.sink, logger: shared.logger)
                }
            }
        }
        state.withLock {
            $0.materialized += placed.count
            $0.batches += 1
        }
        return waiting
    }

    /// On the materializer's queue: syncs, renames, directory syncs. Stops at the first
    /// instance that cannot be made durable for want of resources.
    private static func place(_ run: [SpooledInstance], policy: DaemonConfiguration.Dicom.Duplicates) -> (
        placed: [Placed], waiting: [SpooledInstance], fault: String?
    ) {
        var ready = run.count
        var fault: String?
        for (index, instance) in run.enumerated() {
            do throws(StoreError) {
                try instance.file.sync()
            } catch {
                ready = index
                fault = error.message
                break
            }
        }
        let directories = DirectoryBatch()
        var placed: [Placed] = []
        for index in 0..<ready {
            let instance = run[index]
            do throws(StoreError) {
                let sha256 = try instance.file.sha256()  // read back: a spooled file was not hashed on receipt
                let committed = try StoragePath.commit(
                    instance.file, sha256: sha256, relativePath: instance.relativePath, policy: policy, directories: directories)
                placed.append(.placed(instance, path: committed.path, sha256: sha256, outcome: committed.outcome))
            } catch where error.status == DICOM.Status.outOfResources {
                ready = index
                fault = error.message
                break
            } catch {
                placed.append(.failed(instance, error))
            }
        }
        for directory in directories.paths.sorted(by: { $0.count > $1.count }) { StoragePath.syncDirectory(directory) }
        return (placed, Array(run[ready...]), fault)
    }
}
