import DicomStore
import Foundation
import Logging
import NMBridgeCore
import NMJournal
import NMQualityControl
import ServiceLifecycle
import Synchronization

/// Sends what nmbridge stored onward (docs/dicom.md, "Forwarding"): follows the journal's
/// stored instances, stable studies and reconciled administrations, queues a job per
/// instance (or RRDSR) and destination as the routes say, and delivers each destination's
/// jobs in queue order over associations of its own.
///
/// The journal is the queue: a job is a `dicom.forward.queued` event and ends with its
/// `dicom.forward.delivered`, `gave_up` or `dropped`. At start the jobs without an end are
/// queued again, so a restart (or `kill -9`) loses none; one delivered but not yet
/// journaled is sent again, which the destination answers with success or "duplicate"
/// (at-least-once).
public struct OutboundService: Service {
    let journal: Journal
    let dicom: DaemonConfiguration.Dicom
    let settings: DaemonConfiguration.Dicom.Outbound
    let zone: TimeZone
    let node: String
    let logger: Logger
    let router: OutboundRouter
    /// The jobs waiting, for the API (`GET /v1/outbound`, health, metrics).
    public let queue: OutboundQueue
    let progress = ProgressCell()

    public init(
        journal: Journal, dicom: DaemonConfiguration.Dicom, qualityControl: DaemonConfiguration.QualityControl?, zone: TimeZone, node: String,
        logger: Logger
    ) {
        self.journal = journal
        self.dicom = dicom
        settings = dicom.outbound
        self.zone = zone
        self.node = node
        self.logger = logger
        queue = OutboundQueue(destinations: dicom.outbound.destinations.map(\.name))
        let engine = qualityControl.map { QCEngine(settings: $0, zone: zone, journal: journal) }
        router = OutboundRouter(routes: dicom.outbound.routes, isQualityControl: { event in engine?.isQualityControlAcquisition(event) ?? false })
    }

    /// The inputs the service follows.
    static let inputKinds = ["dicom.instance.stored", "dicom.study.stable", "qc.administration.reconciled"]

    public func run() async throws {
        var pause = 1.0
        while !Task.isCancelled, !journal.followersClosed {
            do {
                let (cursor, state, _) = try await rebuild()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for destination in settings.destinations {
                        group.addTask { await worker(destination) }
                    }
                    group.addTask { await keepSnapshot(state) }
                    group.addTask { try await follow(from: cursor) }
                    // The follower ends at shutdown (the journal closes its followers); the workers then stop.
                    try await group.next()
                    group.cancelAll()
                }
                return
            } catch is CancellationError {
                return
            } catch {
                logger.error("outbound service failed; starting over from the journal", metadata: ["error": "\(error)", "retry_s": "\(pause)"])
                try? await Task.sleep(for: .seconds(pause))
                pause = min(pause * 2, 60)
            }
        }
    }

    // MARK: Rebuilding the queue from the journal

    /// What the journal says of the queue through `throughSeq` (the last `dicom.forward.*` or
    /// `dicom.rrdsr.*` event read): the jobs without an end, by their queued event, and the
    /// last input that caused one.
    public struct QueueState: Equatable, Sendable {
        var throughSeq: Int64 = 0
        var open: [Int64: Event] = [:]
        var lastSource: Int64 = 0
    }

    /// Queues every job without an end, and returns the cursor to follow from and the
    /// queue's state (which `keepSnapshot` carries on). Reads the journal from the snapshot's
    /// seq on (docs/dicom.md, "The queue is the journal"), or from the start without one.
    public func rebuild() async throws -> (cursor: Int64, state: QueueState, eventsRead: Int) {
        let clock = ContinuousClock()
        let started = clock.now
        let snapshot = loadSnapshot()
        var state = snapshot ?? QueueState()
        let scanned = try await advance(&state)
        if state != snapshot { saveSnapshot(state) }
        let known = Set(settings.destinations.map(\.name))
        let jobs = state.open.values.compactMap(OutboundJob.init(queued:)).sorted { $0.id < $1.id }
        let orphans = jobs.filter { !known.contains($0.destination) }
        if !orphans.isEmpty {
            logger.warning(
                "jobs for destinations no longer configured stay in the journal unsent",
                metadata: ["outbound.jobs": "\(orphans.count)", "outbound.destinations": "\(Set(orphans.map(\.destination)).sorted())"])
        }
        queue.replaceJobs(jobs.filter { known.contains($0.destination) })
        let cursor = max(loadCursor(), state.lastSource)
        logger.info(
            "outbound queue rebuilt from the journal",
            metadata: [
                "outbound.waiting": "\(queue.waiting)", "outbound.cursor": "\(cursor)", "outbound.destinations": "\(known.sorted())",
                "outbound.snapshot_seq": "\(snapshot?.throughSeq ?? 0)", "outbound.events_read": "\(scanned)",
                "outbound.rebuild_ms": "\(Int((started.duration(to: clock.now) / .milliseconds(1)).rounded()))",
            ])
        return (min(cursor, journal.lastSeq), state, scanned)
    }

    /// Applies the queue's events after `state.throughSeq`; returns how many were read.
    func advance(_ state: inout QueueState) async throws -> Int {
        let pageSize = 10_000
        var read = 0
        while true {
            let page = try await journal.events(
                EventQuery(after: state.throughSeq, filter: EventFilter(kinds: ["dicom.forward.*", "dicom.rrdsr.*"]), limit: pageSize))
            for event in page.events {
                switch event.kind {
                case "dicom.forward.queued":
                    state.open[event.seq] = event
                    state.lastSource = max(state.lastSource, event.data["source_seq"]?.intValue ?? 0)
                case "dicom.forward.delivered", "dicom.forward.gave_up", "dicom.forward.dropped":
                    if let job = event.data["job"]?.intValue { state.open[job] = nil }
                case "dicom.rrdsr.created", "dicom.rrdsr.skipped":
                    state.lastSource = max(state.lastSource, event.data["source_seq"]?.intValue ?? 0)
                default:
                    break
                }
                state.throughSeq = event.seq
            }
            read += page.events.count
            guard page.events.count == pageSize else { return read }
        }
    }

    /// Every `snapshotInterval`, reads the queue's new events and saves the snapshot, so
    /// that a start after months of forwarding reads only what came since.
    func keepSnapshot(_ state: QueueState) async {
        var state = state
        while !Task.isCancelled {
            guard (try? await Task.sleep(for: Self.snapshotInterval)) != nil else { return }
            do {
                let before = state
                _ = try await advance(&state)
                if state != before { saveSnapshot(state) }
            } catch {
                logger.warning("cannot read the journal for the outbound queue's snapshot", metadata: ["error": "\(error)"])
            }
        }
    }

    static let snapshotInterval = Duration.seconds(600)

    // MARK: Following the journal

    func follow(from start: Int64) async throws {
        try await journal.consume(
            after: start, kinds: Self.inputKinds,
            expired: { expired in
                logger.warning(
                    "outbound cursor is older than the journal's retention: events were removed before they were routed",
                    metadata: ["outbound.cursor": "\(expired.cursor)", "journal.oldest_seq": "\(expired.oldestSeq)"])
            },
            handle: { event in
                let drafts = try await handle(event)
                if !drafts.isEmpty {
                    let events = try await appendRetrying(drafts)
                    queue.add(events.compactMap(OutboundJob.init(queued:)))
                }
            },
            progress: { progress.set($0) },
            save: saveCursor)
    }

    /// The events one input causes: jobs queued, an RRDSR created (or skipped).
    func handle(_ event: Event) async throws -> [EventDraft] {
        switch event.kind {
        case "dicom.instance.stored":
            guard event.data["duplicate"] == nil else { return [] }  // the same bytes again: already routed
            return router.destinations(for: event, when: .instance).compactMap { queued(event, route: $0.route, destination: $0.destination, source: event.seq) }
        case "dicom.study.stable":
            guard settings.routes.contains(where: { $0.when == .stable && $0.instances }), let study = event.data["study_uid"]?.stringValue else {
                return []
            }
            var drafts: [EventDraft] = []
            var seen = Set<String>()
            for instance in try await instances(of: study, before: event.seq) where seen.insert(instance.data["path"]?.stringValue ?? "").inserted {
                for match in router.destinations(for: instance, when: .stable) {
                    if let draft = queued(instance, route: match.route, destination: match.destination, source: event.seq) { drafts.append(draft) }
                }
            }
            return drafts
        case "qc.administration.reconciled":
            guard settings.rrdsr else { return [] }
            return try await rrdsrEvents(for: event)
        default:
            return []
        }
    }

    /// The stored instances of a study, newest event per file.
    func instances(of study: String, before seq: Int64) async throws -> [Event] {
        var out: [Event] = []
        var after: Int64 = 0
        while true {
            let page = try await journal.events(
                EventQuery(
                    after: after, before: seq, filter: EventFilter(kinds: ["dicom.instance.stored"]), limit: 10_000, dataEquals: ["study_uid": study]))
            out += page.events
            guard let last = page.events.last, page.events.count == 10_000 else { break }
            after = last.seq
        }
        return out.filter { $0.data["duplicate"] == nil }
    }

    func queued(_ instance: Event, route: String, destination: String, source: Int64) -> EventDraft? {
        let data = instance.data
        guard let path = data["path"]?.stringValue, let sop = data["sop_instance_uid"]?.stringValue else { return nil }
        var out: [String: JSONValue] = [
            "destination": .string(destination), "what": .string("instance"), "path": .string(path), "sop_instance_uid": .string(sop),
            "sop_class_uid": data["sop_class_uid"] ?? .string(""), "source_seq": .int(source), "route": .string(route),
        ]
        if let study = data["study_uid"]?.stringValue { out["study_uid"] = .string(study) }
        return EventDraft(driver: "outbound", kind: "dicom.forward.queued", data: out)
    }

    /// Appends; a failing journal (disk full) is retried, never skipped.
    @discardableResult
    func appendRetrying(_ drafts: [EventDraft]) async throws -> [Event] {
        try await journal.appendRetrying(drafts, what: "outbound events", logger: logger)
    }

    // MARK: Cursor file

    struct CursorFile: Codable {
        var journal: String
        var seq: Int64
    }

    func loadCursor() -> Int64 {
        guard let bytes = FileManager.default.contents(atPath: settings.cursorFile),
            let file = try? JSONDecoder().decode(CursorFile.self, from: bytes), file.journal == journal.id.uuidString.lowercased()
        else { return 0 }
        return file.seq
    }

    func saveCursor(_ cursor: Int64) {
        let text = "{\"journal\":\"\(journal.id.uuidString.lowercased())\",\"seq\":\(cursor)}\n"
        let temporary = settings.cursorFile + ".tmp"
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
            if rename(temporary, settings.cursorFile) != 0 {
                logger.error("cannot save the outbound cursor", metadata: ["outbound.cursor_file": "\(settings.cursorFile)"])
            }
        } catch {
            logger.error("cannot save the outbound cursor", metadata: ["outbound.cursor_file": "\(settings.cursorFile)", "error": "\(error)"])
        }
    }

    // MARK: Snapshot file

    /// Beside the cursor file: a header line (journal id, seq, last source, job count), then
    /// each open job's `dicom.forward.queued` event, one JSON object per line.
    public var snapshotFile: String {
        URL(fileURLWithPath: settings.cursorFile).deletingLastPathComponent().appendingPathComponent(".outbound-queue.jsonl").path
    }

    struct SnapshotHeader: Codable {
        var journal: String
        var throughSeq: Int64
        var lastSource: Int64
        var jobs: Int
    }

    /// The saved state, if it belongs to this journal and is whole; else nil (a full scan).
    func loadSnapshot() -> QueueState? {
        guard let bytes = FileManager.default.contents(atPath: snapshotFile) else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
        func unusable(_ why: String) -> QueueState? {
            logger.warning("outbound queue snapshot not used; reading the whole journal", metadata: ["file": "\(snapshotFile)", "reason": "\(why)"])
            return nil
        }
        guard let first = lines.first, let header = try? JSONDecoder().decode(SnapshotHeader.self, from: Data(first.utf8)) else {
            return unusable("line 1 is not its header")
        }
        guard header.journal == journal.id.uuidString.lowercased() else { return nil }  // another journal's: silently stale
        guard header.throughSeq <= journal.lastSeq else { return unusable("seq \(header.throughSeq) is past the journal's end") }
        guard lines.count == header.jobs + 1 else { return unusable("\(lines.count - 1) jobs where the header says \(header.jobs)") }
        var state = QueueState(throughSeq: header.throughSeq, lastSource: header.lastSource)
        for (index, line) in lines.dropFirst().enumerated() {
            guard let event = try? Event(json: String(line)), event.kind == "dicom.forward.queued" else {
                return unusable("line \(index + 2) is not a dicom.forward.queued event")
            }
            state.open[event.seq] = event
        }
        return state
    }

    func saveSnapshot(_ state: QueueState) {
        let header = SnapshotHeader(
            journal: journal.id.uuidString.lowercased(), throughSeq: state.throughSeq, lastSource: state.lastSource, jobs: state.open.count)
        var text = String(decoding: (try? JSONEncoder().encode(header)) ?? Data(), as: UTF8.self) + "\n"
        for (_, event) in state.open.sorted(by: { $0.key < $1.key }) { text += event.jsonText + "\n" }
        // Not synced: a snapshot lost in a crash only means reading more of the journal.
        let temporary = snapshotFile + ".tmp"
        var failure: String?
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
            if rename(temporary, snapshotFile) != 0 { failure = "rename: \(String(cString: strerror(errno)))" }
        } catch {
            failure = "\(error)"
        }
        if let failure {
            logger.warning("cannot save the outbound queue's snapshot", metadata: ["file": "\(snapshotFile)", "error": "\(failure)"])
        }
    }

    /// The journal seq through which inputs have been routed.
    public var routedSeq: Int64 { progress.get() }
}

/// A seq shared between the follower and the API.
final class ProgressCell: Sendable {
    private let value = Mutex<Int64>(0)
    func set(_ seq: Int64) { value.withLock { $0 = seq } }
    func get() -> Int64 { value.withLock { $0 } }
}
