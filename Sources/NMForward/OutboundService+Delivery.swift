import DicomStore
import Foundation
import Logging
import NMBridgeCore
import NMJournal

extension OutboundService {
    typealias Destination = DaemonConfiguration.Dicom.Destination

    /// Delivers one destination's jobs until cancelled: a batch per association, in queue
    /// order; a failed association backs off (capped, doubling) and the jobs wait.
    func worker(_ destination: Destination) async {
        while !Task.isCancelled {
            do {
                try await giveUpExpired(destination)
                let jobs = queue.take(destination: destination.name, limit: settings.batchSize)
                if jobs.isEmpty {
                    try await Task.sleep(for: .milliseconds(50))
                    continue
                }
                try await deliver(jobs, to: destination)
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                // A journal that cannot be written: the jobs stay queued; try again later.
                queue.release(destination: destination.name)
                logger.error("outbound worker failed", metadata: ["outbound.destination": "\(destination.name)", "error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Jobs queued longer ago than `give_up_after_h` are given up.
    func giveUpExpired(_ destination: Destination) async throws {
        let expired = queue.expired(destination: destination.name, age: settings.giveUpAfter)
        guard !expired.isEmpty else { return }
        let hours = (settings.giveUpAfter / 360).rounded() / 10
        try await appendRetrying(
            expired.map {
                gaveUp($0, reason: "undelivered for more than \(hours) h (give_up_after_h); last error: \(lastError(destination.name) ?? "none")")
            })
        queue.finish(Set(expired.map(\.id)), destination: destination.name, gaveUp: expired.count)
    }

    func lastError(_ destination: String) -> String? { queue.lastError(destination) }

    /// One association: sends `jobs` in order. Delivered and rejected jobs are journaled (in
    /// groups, so that the journal's fsync does not set the pace: a group is journaled while
    /// the association goes on with the next) and leave the queue; a transient failure ends
    /// the association and leaves the rest waiting.
    func deliver(_ jobs: [OutboundJob], to destination: Destination) async throws {
        var finished: [EventDraft] = []
        var delivered = Set<Int64>()
        var rejected = Set<Int64>()
        /// The previous group's journaling, when it runs beside the association.
        var journaling: Task<Void, any Error>?
        func flush(wait: Bool = true) async throws {
            // Groups are journaled in order, one at a time.
            try await journaling?.value
            journaling = nil
            guard !finished.isEmpty else { return }
            let (drafts, done, refused) = (finished, delivered, rejected)
            finished = []
            delivered = []
            rejected = []
            let group = Task {
                _ = try await appendRetrying(drafts)
                // Out of the queue only once journaled: a crash before re-sends them.
                queue.finish(done, destination: destination.name, delivered: done.count)
                queue.finish(refused, destination: destination.name, gaveUp: refused.count)
            }
            if wait { try await group.value } else { journaling = group }
        }
        // Open the files first: one that is gone or unreadable is given up, not sent.
        var sendable: [(job: OutboundJob, instance: StoredInstance)] = []
        var pairs = Set<PresentationContextRequest>()
        for job in jobs {
            do {
                let instance = try StoredInstance.open(path: job.path)
                let pair = PresentationContextRequest(abstractSyntax: instance.sopClass, transferSyntaxes: [instance.transferSyntax])
                if !pairs.contains(pair), pairs.count == 128 { break }  // the rest on the next association
                pairs.insert(pair)
                sendable.append((job, instance))
            } catch {
                finished.append(gaveUp(job, reason: "\(error)"))
                rejected.insert(job.id)
            }
        }
        try await flush()
        guard !sendable.isEmpty else { return queue.release(destination: destination.name) }
        var failure: String?
        do {
            try await DicomRequester.withAssociation(
                to: destination, contexts: PresentationContextRequest.forSending(sendable.map(\.instance)), logger: logger
            ) { association in
                for (index, (job, instance)) in sendable.enumerated() {
                    let status: UInt16
                    let syntax: String
                    do {
                        // The next file is read while the destination answers this one.
                        let next = index + 1 < sendable.count ? sendable[index + 1].instance : nil
                        (status, syntax) = try await association.store(instance, next: next)
                    } catch let error as RequesterError where !error.isTransient {
                        finished.append(gaveUp(job, reason: error.message))
                        rejected.insert(job.id)
                        continue
                    }
                    let outcome = StoreStatusClass(status)
                    let hex = String(format: "0x%04X", status)
                    if outcome.isDelivered {
                        var data: [String: JSONValue] = [
                            "job": .int(job.id), "destination": .string(destination.name), "sop_instance_uid": .string(job.sopInstance),
                            "status": .string(hex), "attempts": .int(Int64(job.attempts)), "transfer_syntax": .string(syntax),
                        ]
                        if outcome == .duplicate { data["duplicate"] = .bool(true) }
                        finished.append(EventDraft(driver: "outbound", kind: "dicom.forward.delivered", data: data))
                        delivered.insert(job.id)
                    } else if outcome == .transient {
                        throw RequesterError(
                            .aborted, "\(destination.aeTitle)@\(destination.host):\(destination.port) answered \(hex) (\(StoreStatusClass.meaning(status))) for \(job.sopInstance)")
                    } else {
                        var draft = gaveUp(job, reason: "\(destination.aeTitle) answered \(hex): \(StoreStatusClass.meaning(status))")
                        draft.data["status"] = .string(hex)
                        finished.append(draft)
                        rejected.insert(job.id)
                    }
                    if finished.count >= 64 { try await flush(wait: false) }
                }
            }
        } catch let error as RequesterError {
            failure = error.message
        } catch is CancellationError {
            try? await flush()
            queue.release(destination: destination.name)
            throw CancellationError()
        } catch {
            failure = "\(destination.name): \(error)"
        }
        try await flush()
        if let failure {
            let (delay, failures, waiting) = queue.failed(
                destination: destination.name, error: failure, initial: settings.initialBackoff, maximum: settings.maxBackoff)
            logger.warning(
                "outbound association failed; retrying later",
                metadata: ["outbound.destination": "\(destination.name)", "error": "\(failure)", "outbound.retry_s": "\(delay)"])
            try await appendRetrying([
                EventDraft(
                    driver: "outbound", kind: "dicom.forward.attempt_failed",
                    data: [
                        "destination": .string(destination.name), "error": .string(failure), "waiting": .int(Int64(waiting)),
                        "failures": .int(Int64(failures)), "retry_in_s": .double(delay),
                    ])
            ])
        } else {
            queue.release(destination: destination.name)
        }
    }

    func gaveUp(_ job: OutboundJob, reason: String) -> EventDraft {
        EventDraft(
            driver: "outbound", kind: "dicom.forward.gave_up",
            data: [
                "job": .int(job.id), "destination": .string(job.destination), "sop_instance_uid": .string(job.sopInstance),
                "reason": .string(reason), "attempts": .int(Int64(job.attempts)),
            ])
    }

    // MARK: Operator actions

    /// Why an operator's request was refused (unknown job, job being sent).
    public struct ActionError: Error, Sendable, CustomStringConvertible {
        public var notFound: Bool
        public var message: String
        public var description: String { message }
    }

    /// `nmbridge outbound retry JOB`: a waiting job's destination is tried at once; a
    /// given-up or dropped job is queued again as a new job. Journaled.
    public func retry(job id: Int64) async throws -> JSONValue {
        if let job = queue.job(id) {
            queue.wake(destination: job.destination)
            try await appendRetrying([
                EventDraft(
                    driver: "outbound", kind: "dicom.forward.retried",
                    data: ["job": .int(id), "destination": .string(job.destination), "requested_by": .string("api")])
            ])
            return ["job": .int(id), "state": "waiting", "destination": .string(job.destination)]
        }
        let page = try await journal.events(EventQuery(after: id - 1, filter: EventFilter(kinds: ["dicom.forward.queued"]), limit: 1))
        guard let event = page.events.first, event.seq == id, let old = OutboundJob(queued: event) else {
            throw ActionError(notFound: true, message: "no outbound job \(id) (a job is the seq of its dicom.forward.queued event)")
        }
        guard settings.destinations.contains(where: { $0.name == old.destination }) else {
            throw ActionError(notFound: false, message: "job \(id)'s destination \"\(old.destination)\" is no longer configured")
        }
        var data = event.data
        data["retry_of"] = .int(id)
        let events = try await appendRetrying([
            EventDraft(
                driver: "outbound", kind: "dicom.forward.retried",
                data: ["job": .int(id), "destination": .string(old.destination), "requested_by": .string("api")]),
            EventDraft(driver: "outbound", kind: "dicom.forward.queued", data: data),
        ])
        let jobs = events.compactMap(OutboundJob.init(queued:))
        queue.add(jobs)
        queue.wake(destination: old.destination)
        return ["job": .int(id), "state": "queued again", "new_job": jobs.first.map { .int($0.id) } ?? .null, "destination": .string(old.destination)]
    }

    /// `nmbridge outbound drop JOB`: a waiting job leaves the queue unsent. Journaled.
    public func drop(job id: Int64) async throws -> JSONValue {
        guard let job = queue.job(id) else {
            throw ActionError(notFound: true, message: "no waiting outbound job \(id)")
        }
        guard !queue.isInFlight(id) else {
            throw ActionError(notFound: false, message: "job \(id) is being sent to \(job.destination) now; try again when the association ends")
        }
        try await appendRetrying([
            EventDraft(
                driver: "outbound", kind: "dicom.forward.dropped",
                data: [
                    "job": .int(id), "destination": .string(job.destination), "sop_instance_uid": .string(job.sopInstance),
                    "requested_by": .string("api"),
                ])
        ])
        queue.finish([id], destination: job.destination)
        return ["job": .int(id), "state": "dropped", "destination": .string(job.destination)]
    }
}
