import Foundation
import Logging
import NMBridgeCore
import NMJournal
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Ships the local journal to `nmbridge.events` in PostgreSQL (docs/shipper.md).
///
/// - Resumes after the cursor the *server* holds for (node, journal id): the cursor row is
///   written by the same statement, hence the same transaction, as the batch, so a crash
///   at any moment leaves the two consistent.
/// - Inserts are idempotent (`ON CONFLICT DO NOTHING` on (node, journal, seq)): a batch
///   delivered twice (a commit whose acknowledgement was lost, a server restored from an
///   older backup) has no second effect. At-least-once delivery, exactly-once effect.
/// - While the server is unreachable the journal keeps accepting events; the shipper
///   retries with capped exponential backoff, reports its lag and journals
///   `shipper.lagging` / `shipper.caught_up`.
/// - A new journal id (a reset journal) is a new key prefix: a new history, never merged.
public struct JournalShipper: Service {
    public let journal: Journal
    public let settings: DaemonConfiguration.Shipper
    public let connector: PostgresConnector
    public let status: ShipperStatus
    let logger: Logger
    /// How often the lag is measured (and `shipper.lagging` / `caught_up` decided).
    var monitorInterval: Duration = .seconds(1)
    static let initialBackoff = 0.1
    /// A batch that takes longer is abandoned and re-sent on a new connection.
    static let batchDeadline: Duration = .seconds(60)

    public init(journal: Journal, settings: DaemonConfiguration.Shipper, connector: PostgresConnector, status: ShipperStatus? = nil, logger: Logger) {
        self.journal = journal
        self.settings = settings
        self.connector = connector
        self.status = status ?? ShipperStatus(server: connector.description)
        var logger = logger
        logger[metadataKey: "postgres.server"] = "\(connector)"
        self.logger = logger
    }

    public func run() async throws {
        let stopping = StopFlag()
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await shipLoop(stopping) }
                group.addTask { try await monitorLoop(stopping) }
                _ = try await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            stopping.set()
        }
    }

    // MARK: - Shipping

    private func shipLoop(_ stopping: StopFlag) async {
        var connection: PostgresConnection?
        var iterator: JournalFollower.Iterator?
        // The batch being sent (kept until the server acknowledged it), and the next one,
        // read from the journal while `pending` was in flight.
        var pending: [Event] = []
        var upcoming: [Event] = []
        var journalClosed = false
        var backoff = Self.initialBackoff
        while !Task.isCancelled {
            do {
                if connection == nil {
                    let opened = try await connector.connect(logger: logger)
                    connection = opened
                    let (logger, connector) = (logger, connector)
                    let serverCursor = try await withDeadline(Self.batchDeadline, "preparing the schema", closing: opened) {
                        try await ShipperSchema.migrate(opened, server: connector.description, logger: logger)
                        return try await readCursor(opened)
                    }
                    // The server is the truth: if it knows less than we sent (restored from a
                    // backup), go back to its cursor; re-sent rows it has are ignored.
                    let resumeAfter = (pending.first ?? upcoming.first).map { $0.seq - 1 } ?? iterator?.cursor
                    if iterator == nil || serverCursor < (resumeAfter ?? 0) {
                        iterator = journal.follow(after: serverCursor).makeAsyncIterator()
                        pending = []
                        upcoming = []
                    }
                    status.update {
                        $0.connected = true
                        $0.shippedSeq = serverCursor
                    }
                    logger.info(
                        "shipping journal to PostgreSQL",
                        metadata: ["journal.id": "\(journal.id.uuidString.lowercased())", "shipper.resume_after": "\(serverCursor)"])
                }
                if pending.isEmpty && !upcoming.isEmpty {
                    (pending, upcoming) = (upcoming, [])
                } else if pending.isEmpty && !journalClosed && !stopping.isSet {
                    (pending, journalClosed) = try await nextBatch(&iterator!, stopping)
                }
                if !pending.isEmpty {
                    let (batch, open) = (pending, connection!)
                    async let shipped: Void = ship(batch, on: open)
                    // A full batch means a backlog: read the next one while the server
                    // inserts this one (our CPU and the server's overlap). When caught up,
                    // the next read would wait for new events, so it is not started.
                    if batch.count == settings.batchSize && upcoming.isEmpty && !journalClosed && !stopping.isSet {
                        (upcoming, journalClosed) = try await nextBatch(&iterator!, stopping)
                    }
                    try await shipped
                    pending = []
                }
                backoff = Self.initialBackoff
                if journalClosed || stopping.isSet {
                    // The journal closes its followers early in a shutdown, while drivers
                    // may still journal: drain only when it is this service's turn to stop.
                    if !stopping.isSet { try? await gracefulShutdown() }
                    upcoming = []  // the drain reads everything after the server's cursor
                    // The lag monitor journals nothing once stopping is set; wait for an
                    // event it was already writing, so the drain ships that one too.
                    while stopping.monitorJournaling { try await Task.sleep(for: .milliseconds(5)) }
                    try await finalDrain(connection!)
                    break
                }
            } catch is CancellationError {
                break
            } catch let expired as CursorExpired {
                // Reachable with retention_may_drop_unshipped (the deleted range is in the
                // journal.truncated event, which ships like any other), or when the server's
                // cursor went back behind retention: a database restored from an old backup.
                logger.warning(
                    "the server's cursor is older than the oldest event kept here: events retention deleted (retention_may_drop_unshipped, or a database restored from an older backup) cannot be shipped; continuing after them",
                    metadata: ["shipper.cursor": "\(expired.cursor)", "journal.oldest_seq": "\(expired.oldestSeq)"])
                iterator = journal.follow(after: expired.oldestSeq - 1).makeAsyncIterator()
                pending = []
                upcoming = []
            } catch {
                let message = PostgresFailure.explain(error)
                status.update {
                    $0.connected = false
                    $0.failures += 1
                    $0.lastError = message
                    $0.lastErrorTime = Date()
                }
                if let opened = connection { try? await opened.close() }
                connection = nil
                if stopping.isSet {
                    logger.notice("stopping with events not shipped; they ship at the next start", metadata: ["error": "\(message)"])
                    break
                }
                logger.warning("PostgreSQL shipping failed; retrying", metadata: ["error": "\(message)", "shipper.retry_in_s": "\(backoff)"])
                do {
                    try await Task.sleep(for: .seconds(backoff))
                } catch {
                    break
                }
                backoff = min(backoff * 2, settings.maxBackoff)
            }
        }
        if let connection { try? await connection.close() }
        status.update { $0.connected = false }
    }

    /// Waits for the first unshipped event, then gathers more for up to `flush_interval_ms`
    /// or until `batch_size`. `closed` is true when the journal closed its followers.
    private func nextBatch(_ iterator: inout JournalFollower.Iterator, _ stopping: StopFlag) async throws -> (events: [Event], closed: Bool) {
        var batch: [Event] = []
        while batch.isEmpty {
            if stopping.isSet { return ([], false) }
            switch try await iterator.step(idleTimeout: .milliseconds(500)) {
            case .event(let event): batch.append(event)
            case .idle: continue
            case nil: return ([], true)
            }
        }
        let deadline = ContinuousClock.now + .milliseconds(Int64(settings.flushInterval * 1000))
        gathering: while batch.count < settings.batchSize {
            // At least a millisecond: a backlog already in memory is taken without waiting.
            let remaining = max(deadline - .now, .milliseconds(1))
            switch try await iterator.step(idleTimeout: remaining) {
            case .event(let event): batch.append(event)
            case .idle: if ContinuousClock.now >= deadline { break gathering }
            case nil: return (batch, true)
            }
        }
        return (batch, false)
    }

    /// At shutdown: ships what the journal holds beyond the server's cursor (including
    /// `daemon.stopping`), one attempt per batch.
    private func finalDrain(_ connection: PostgresConnection) async throws {
        while true {
            let after = status.snapshot.shippedSeq ?? 0
            let page = try await journal.events(EventQuery(after: after, limit: settings.batchSize))
            guard !page.events.isEmpty else { return }
            try await ship(page.events, on: connection)
        }
    }

    private func readCursor(_ connection: PostgresConnection) async throws -> Int64 {
        let node = journal.node
        let id = journal.id.uuidString.lowercased()
        do {
            try connection.ensureOpen(connector.description)
            var cursor: Int64 = 0
            let rows = try await connection.query(
                "SELECT last_seq FROM nmbridge.cursors WHERE node = \(node) AND journal = \(id)::uuid", logger: logger)
            for try await seq in rows.decode(Int64.self) { cursor = seq }
            return cursor
        } catch {
            throw PostgresFailure("cannot read the shipping cursor of node \(node) from \(connector)", error)
        }
    }

    /// One statement, hence one transaction: the rows, the cursor and the NOTIFY.
    static let insertSQL = """
        WITH batch AS (
            SELECT * FROM jsonb_to_recordset($3::text::jsonb) AS r(
                seq bigint, time timestamptz, device text, driver text, kind text, severity text, data jsonb, raw text)
        ), inserted AS (
            INSERT INTO nmbridge.events (node, journal, seq, time, device, driver, kind, severity, data, raw)
            SELECT $1, $2::uuid, seq, time, device, driver, kind, severity, data, raw FROM batch
            ON CONFLICT DO NOTHING
            RETURNING 1
        ), cursor AS (
            INSERT INTO nmbridge.cursors AS c (node, journal, last_seq, updated_at) VALUES ($1, $2::uuid, $4, now())
            ON CONFLICT (node, journal) DO UPDATE SET last_seq = GREATEST(c.last_seq, EXCLUDED.last_seq), updated_at = now()
        )
        SELECT (SELECT count(*) FROM inserted), (SELECT 1 FROM pg_notify('\(ShipperSchema.notifyChannel)', $1))
        """

    /// Inserts `batch` (consecutive events of this journal) and moves the cursor to its end.
    func ship(_ batch: [Event], on connection: PostgresConnection) async throws {
        guard let first = batch.first, let last = batch.last else { return }
        var json = "["
        json.reserveCapacity(batch.count * 200)
        for (index, event) in batch.enumerated() {
            if index > 0 { json += "," }
            json += event.jsonText
        }
        json += "]"
        var binds = PostgresBindings(capacity: 4)
        binds.append(journal.node)
        binds.append(journal.id.uuidString.lowercased())
        binds.append(json)
        binds.append(last.seq)
        let query = PostgresQuery(unsafeSQL: Self.insertSQL, binds: binds)
        let inserted: Int64
        let logger = logger
        do {
            try connection.ensureOpen(connector.description)
            inserted = try await withDeadline(Self.batchDeadline, "inserting a batch", closing: connection) {
                var inserted: Int64 = 0
                let rows = try await connection.query(query, logger: logger)
                for try await (count, _) in rows.decode((Int64, Int32?).self) { inserted = count }
                return inserted
            }
        } catch {
            throw PostgresFailure("cannot ship events \(first.seq)…\(last.seq) of node \(journal.node) to \(connector)", error)
        }
        status.update {
            $0.shippedSeq = max($0.shippedSeq ?? 0, last.seq)
            $0.eventsShipped += inserted
            $0.duplicatesIgnored += Int64(batch.count) - inserted
            $0.batches += 1
            $0.lastShipTime = Date()
        }
    }

    // MARK: - Lag

    /// Measures the lag every `monitorInterval` and journals `shipper.lagging` when it
    /// crosses `lag_alert_s` or `lag_alert_events`, `shipper.caught_up` when it is back
    /// below half of both.
    private func monitorLoop(_ stopping: StopFlag) async throws {
        var episode: (start: ContinuousClock.Instant, maxLag: Int64)?
        while true {
            try await Task.sleep(for: monitorInterval)
            let snapshot = status.snapshot
            let shipped = snapshot.shippedSeq ?? 0
            let lagEvents = max(0, journal.lastSeq - shipped)
            var lagSeconds = 0.0
            if lagEvents > 0, let oldest = try? await journal.events(EventQuery(after: shipped, limit: 1)).events.first {
                lagSeconds = max(0, Date().timeIntervalSince(oldest.time))
            }
            status.update {
                $0.lagEvents = lagEvents
                $0.lagSeconds = lagSeconds
            }
            if var open = episode {
                open.maxLag = max(open.maxLag, lagEvents)
                episode = open
                if lagSeconds < settings.lagAlertSeconds / 2 && 2 * lagEvents < settings.lagAlertEvents {
                    episode = nil
                    status.update { $0.lagging = false }
                    await journalEventUnlessStopping(stopping,
                        "shipper.caught_up",
                        [
                            "shipped_seq": .int(shipped), "lagging_s": .double((open.start.duration(to: .now)).seconds),
                            "max_lag_events": .int(open.maxLag),
                        ])
                }
            } else if lagSeconds > settings.lagAlertSeconds || lagEvents > settings.lagAlertEvents {
                episode = (.now, lagEvents)
                status.update { $0.lagging = true }
                var data: [String: JSONValue] = [
                    "lag_events": .int(lagEvents), "lag_s": .double((lagSeconds * 1000).rounded() / 1000),
                    "shipped_seq": .int(shipped), "server": .string(connector.description),
                ]
                if !snapshot.connected, let error = snapshot.lastError { data["error"] = .string(error) }
                await journalEventUnlessStopping(stopping, "shipper.lagging", data)
            }
        }
    }

    /// The monitor's events: none once the final drain may have begun (it would never be
    /// shipped), and the drain waits for one already being written.
    private func journalEventUnlessStopping(_ stopping: StopFlag, _ kind: String, _ data: [String: JSONValue]) async {
        stopping.beginMonitorJournaling()
        defer { stopping.endMonitorJournaling() }
        guard !stopping.isSet else { return }
        await journalEvent(kind, data)
    }

    private static let kinds = EventKindRegistry(EventKindRegistry.shipperKinds)

    private func journalEvent(_ kind: String, _ data: [String: JSONValue]) async {
        let severity = Self.kinds.kind(named: kind)?.defaultSeverity ?? .info
        do {
            try await journal.append(EventDraft(kind: kind, severity: severity, data: data))
        } catch {
            logger.error("cannot journal \(kind)", metadata: ["error": "\(error)"])
        }
        logger.log(level: severity == .warning ? .warning : .notice, "\(kind)", metadata: data.mapValues { .string($0.jsonText) })
    }
}

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}

/// Set once graceful shutdown begins; also counts the lag monitor's event being written.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    private let journaling = Atomic<Int>(0)
    func set() { flag.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { flag.load(ordering: .sequentiallyConsistent) }
    func beginMonitorJournaling() { journaling.add(1, ordering: .sequentiallyConsistent) }
    func endMonitorJournaling() { journaling.subtract(1, ordering: .sequentiallyConsistent) }
    var monitorJournaling: Bool { journaling.load(ordering: .sequentiallyConsistent) > 0 }
}
