import Foundation
import GRDB
import Logging
import NMBridgeCore
import Synchronization

/// Options for opening a journal.
public struct JournalOptions: Sendable {
    /// The SQLite file (created with its directory if missing).
    public var path: String
    /// The node name written into every event.
    public var node: String
    public var sync: DaemonConfiguration.SyncMode
    /// Events per live subscriber buffer before it overflows (`JournalFollower`).
    public var subscriberBuffer: Int
    /// Event kinds accepted by `append`, with their default severities
    /// (`EventKindRegistry.standard` from NMCatalog in the daemon).
    public var registry: EventKindRegistry

    public init(
        path: String, node: String, registry: EventKindRegistry, sync: DaemonConfiguration.SyncMode = .full,
        subscriberBuffer: Int = 4096
    ) {
        self.path = path
        self.node = node
        self.sync = sync
        self.subscriberBuffer = subscriberBuffer
        self.registry = registry
    }
}

/// Counters for `/metrics` and `nmbridge status`.
public struct JournalStatistics: Sendable {
    public var appendedEvents: Int64 = 0
    public var commits: Int64 = 0
    public var appendFailures: Int64 = 0
    public var lastAppendError: String?
    public var lastAppendErrorTime: Date?
    /// When the last commit succeeded.
    public var lastSuccessTime: Date?
    public var lastSeq: Int64 = 0
    public var liveSubscribers: Int = 0
    public var laggedSubscribers: Int64 = 0
}

/// The durable, ordered event journal: one SQLite file in WAL mode.
///
/// - `append` returns only after the events are committed (and fsynced with
///   `sync = full`). Concurrent appends share one transaction (group commit): while one
///   commit is in flight, new appends queue up and go into the next one.
/// - `seq` is `MAX(seq) + 1` computed inside the writing transaction, so it has no gaps or
///   duplicates even across crashes: a transaction either lands whole or not at all.
/// - The file is plain SQLite (`sqlite3 journal.db 'select * from events'`).
public final class Journal: Sendable {
    /// Fixed at creation; a new id means a new history.
    public let id: UUID
    public let path: String
    public let node: String
    let pool: DatabasePool
    let logger: Logger
    let registry: EventKindRegistry
    let subscriberBuffer: Int
    let hub = SubscriptionHub()
    private let writer = Mutex(WriterState())
    private let wakeup = DispatchSemaphore(value: 0)
    let stats = Mutex(JournalStatistics())

    /// SQLite `application_id` of an nmbridge journal: "NMBJ".
    static let applicationID: Int32 = 0x4E4D_424A
    /// 2: the device index is keyed by seq block first (`events_device_block`); 1 had
    /// `events_device(device, seq)`. Version 1 files are migrated when opened.
    static let schemaVersion = 2
    /// Events per block of the device index: `seq >> deviceBlockShift` (1024 events).
    static let deviceBlockShift = 10
    static let maxEventsPerCommit = 8192
    /// How long an idle writer thread waits for work before it exits.
    static let writerIdleExit: DispatchTimeInterval = .seconds(2)
    /// The longest a commit waits for appenders of the last one to come back (group commit).
    static let gatherWait: DispatchTimeInterval = .microseconds(200)

    private struct WriterState {
        var queue: [PendingWrite] = []
        /// A writer thread exists (it exits after `writerIdleExit` without work).
        var writerRunning = false
        /// The writer thread is waiting on `wakeup` until the queue holds `wakeAt` writes.
        var writerWaiting = false
        var wakeAt = 1
        /// Appends in flight at the end of the last commit (those it resumed plus those
        /// queued meanwhile): how many the next batch waits for, briefly (`gatherWait`).
        var concurrency = 1
        /// When the write now in progress was taken off the queue (nil when idle).
        var writingSince: ContinuousClock.Instant?
    }

    private enum PendingWrite {
        case append([PreparedRow], CheckedContinuation<[Event], any Error>)
        case retention(RetentionPolicy, Date, CheckedContinuation<[Event], any Error>)
    }

    /// An event ready for the INSERT: text fields computed outside the writer thread.
    struct PreparedRow: Sendable {
        var time: Date
        var timeText: String
        var device: String?
        var driver: String?
        var kind: String
        var severity: Severity
        var dataJSON: String
        var raw: [UInt8]?
        var rawHex: String?
    }

    private init(id: UUID, path: String, node: String, pool: DatabasePool, logger: Logger, options: JournalOptions) {
        self.id = id
        self.path = path
        self.node = node
        self.pool = pool
        self.logger = logger
        self.registry = options.registry
        self.subscriberBuffer = options.subscriberBuffer
    }

    /// Opens the journal at `options.path`, creating it if the file does not exist.
    ///
    /// Never replaces an existing file: a file that is not SQLite, an SQLite database of
    /// another application, or a damaged journal is an error naming the file.
    public static func open(_ options: JournalOptions, logger: Logger) throws -> Journal {
        let path = options.path
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        let exists = fm.fileExists(atPath: path, isDirectory: &isDirectory)
        if exists && isDirectory.boolValue {
            throw NMBridgeError(.journalUnusable, "journal \(path) is a directory, not a file")
        }
        if exists {
            try checkHeader(path: path)
        } else {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                do {
                    try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
                } catch {
                    throw NMBridgeError(.journalUnusable, "cannot create the directory of journal \(path)", underlying: error)
                }
            }
        }
        try restrictFileModes(path: path, logger: logger)

        var config = GRDB.Configuration()
        config.label = "nmbridge.journal"
        config.maximumReaderCount = 4
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: config)
            // After the pool exists: GRDB sets synchronous=NORMAL on the writer while it
            // switches to WAL, which would override a pragma set in prepareDatabase.
            let synchronous = options.sync == .full ? "FULL" : "NORMAL"
            try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = \(synchronous)") }
        } catch {
            throw NMBridgeError(.journalUnusable, "cannot open journal \(path) (damaged or not an SQLite file?)", underlying: error)
        }

        let id: UUID
        do {
            id = try pool.write { db -> UUID in
                let appID = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
                let tableCount = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") ?? 0
                if appID == 0 && tableCount == 0 {
                    return try createSchema(db)
                }
                guard appID == applicationID else {
                    throw NMBridgeError(
                        .journalUnusable,
                        "\(path) is an SQLite database of another application (application_id \(appID)), not an nmbridge journal; refusing to touch it"
                    )
                }
                var version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                if version == 1 {
                    try migrateFromVersion1(db, path: path, logger: logger)
                    version = schemaVersion
                }
                guard version == schemaVersion else {
                    throw NMBridgeError(
                        .journalUnusable,
                        "journal \(path) has schema version \(version); this nmbridge reads version \(schemaVersion)")
                }
                guard let text = try String.fetchOne(db, sql: "SELECT value FROM journal_meta WHERE key = 'journal_id'"),
                    let id = UUID(uuidString: text)
                else {
                    throw NMBridgeError(.journalUnusable, "journal \(path) has no valid journal id in journal_meta")
                }
                // Reads the whole events b-tree root and the last page: catches the common damage early.
                _ = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events")
                return id
            }
        } catch let error as NMBridgeError {
            throw error
        } catch {
            throw NMBridgeError(.journalUnusable, "journal \(path) is damaged or unreadable", underlying: error)
        }
        let journal = Journal(id: id, path: path, node: options.node, pool: pool, logger: logger, options: options)
        let last = try journal.readBoundsSync().last
        journal.stats.withLock { $0.lastSeq = last }
        return journal
    }

    /// The journal holds patient names: it is created 0640 whatever the umask (SQLite
    /// gives its -wal and -shm files the database file's mode), and an existing file (or
    /// WAL, SHM) that others may read loses those bits.
    private static func restrictFileModes(path: String, logger: Logger) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw NMBridgeError(.journalUnusable, "cannot create journal \(path): \(String(cString: strerror(errno)))")
        }
        close(fd)
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            guard stat(file, &info) == 0, info.st_mode & 0o007 != 0 else { continue }
            let mode = info.st_mode & 0o770
            if chmod(file, mode) == 0 {
                logger.notice("journal: \(file) was readable by others; now mode \(String(mode, radix: 8))")
            }
        }
        // A new (empty) file gets exactly 0640.
        var info = stat()
        if stat(path, &info) == 0, info.st_size == 0 { chmod(path, 0o640) }
    }

    private static func checkHeader(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw NMBridgeError(.journalUnusable, "cannot read journal \(path) (permissions?)")
        }
        defer { try? handle.close() }
        let header = (try? handle.read(upToCount: 16)) ?? Data()
        if header.isEmpty { return }  // an empty file: SQLite treats it as a new database
        guard header == Data("SQLite format 3\0".utf8) else {
            throw NMBridgeError(
                .journalUnusable, "\(path) is not an SQLite database, so not an nmbridge journal; refusing to overwrite it")
        }
    }

    /// The device index. Keyed by the event's block of 1024 seqs first, so that the
    /// entries a commit adds sit together at the end of the index, whichever devices the
    /// events come from; keyed by device first, every device in a commit dirtied an index
    /// page of its own, each written to the WAL and fsynced. A query by device seeks
    /// (block, device) block by block (see `readPage`).
    static let deviceIndexSQL = "CREATE INDEX events_device_block ON events(seq >> \(deviceBlockShift), device)"

    /// Version 1 → 2: replaces the device index, once, inside the opening transaction (an
    /// interrupted migration leaves version 1).
    private static func migrateFromVersion1(_ db: Database, path: String, logger: Logger) throws {
        let count = try Int64.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0
        logger.notice(
            "journal: migrating schema version 1 to \(schemaVersion) (device index)",
            metadata: ["journal.path": "\(path)", "journal.events": "\(count)"])
        try db.execute(
            sql: """
                DROP INDEX IF EXISTS events_device;
                \(deviceIndexSQL);
                PRAGMA user_version = \(schemaVersion);
                """)
    }

    private static func createSchema(_ db: Database) throws -> UUID {
        let id = UUID()
        try db.execute(
            sql: """
                PRAGMA application_id = \(applicationID);
                PRAGMA user_version = \(schemaVersion);
                CREATE TABLE journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE events (
                    seq      INTEGER PRIMARY KEY,  -- gapless, assigned inside the writing transaction
                    time     TEXT NOT NULL,        -- RFC 3339 UTC, microseconds, fixed width
                    node     TEXT NOT NULL,
                    device   TEXT,
                    driver   TEXT,
                    kind     TEXT NOT NULL,
                    severity TEXT NOT NULL,
                    data     TEXT NOT NULL,        -- JSON object
                    raw      TEXT                  -- hex
                );
                CREATE INDEX events_time ON events(time);
                \(deviceIndexSQL);
                """)
        try db.execute(
            sql: "INSERT INTO journal_meta(key, value) VALUES ('journal_id', ?), ('created', ?)",
            arguments: [id.uuidString.lowercased(), Timestamp.format(Date())])
        return id
    }

    // MARK: - Append

    /// Appends one event; returns it with its `seq` once it is durable.
    @discardableResult
    public func append(_ draft: EventDraft) async throws -> Event {
        try await append([draft])[0]
    }

    /// Appends events in order, atomically; returns them once they are durable.
    @discardableResult
    public func append(_ drafts: [EventDraft]) async throws -> [Event] {
        if drafts.isEmpty { return [] }
        var rows: [PreparedRow] = []
        rows.reserveCapacity(drafts.count)
        for draft in drafts {
            guard registry.accepts(draft.kind) else {
                throw NMBridgeError(
                    .unknownEventKind,
                    "event kind \"\(draft.kind)\" from \(draft.device ?? "the daemon") is not registered (docs/events.md)")
            }
            let timeText = Timestamp.format(draft.time)
            rows.append(
                PreparedRow(
                    time: Timestamp.parse(timeText) ?? draft.time, timeText: timeText, device: draft.device,
                    driver: draft.driver, kind: draft.kind,
                    severity: draft.severity ?? registry.kind(named: draft.kind)?.defaultSeverity ?? .info,
                    dataJSON: JSONValue.object(draft.data).jsonText, raw: draft.raw, rawHex: draft.raw.map(Hex.encode)))
        }
        return try await withCheckedThrowingContinuation { continuation in
            enqueue(.append(rows, continuation))
        }
    }

    /// Applies retention through the writer (so `journal.truncated` gets its seq in order).
    func enqueueRetention(_ policy: RetentionPolicy, now: Date) async throws -> [Event] {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(.retention(policy, now, continuation))
        }
    }

    private func enqueue(_ write: PendingWrite) {
        enum Action { case none, signal, start }
        let action = writer.withLock { state -> Action in
            state.queue.append(write)
            if !state.writerRunning {
                state.writerRunning = true
                return .start
            }
            if state.writerWaiting && state.queue.count >= state.wakeAt {
                state.writerWaiting = false
                return .signal
            }
            return .none
        }
        switch action {
        case .none: break
        case .signal: wakeup.signal()
        case .start:
            let thread = Thread { [self] in writerLoop() }
            thread.name = "nmbridge-journal-writer"
            thread.start()
        }
    }

    /// The body of the writer thread: commits queued writes in order, one transaction per
    /// batch, with GRDB's synchronous API (no hop through the cooperative pool per commit).
    /// Only one writer thread runs at a time, so commits and their notifications to
    /// subscribers happen in seq order. The thread exits after a while without work and
    /// the next append starts a new one.
    ///
    /// Group commit: when the last commit had N appends in flight and fewer are queued, the
    /// writer waits up to `gatherWait` for the others (like PostgreSQL's `commit_delay`),
    /// so that concurrent appenders share one fsync instead of splitting into cohorts that
    /// alternate. A lone appender never waits.
    private func writerLoop() {
        enum Step {
            case idle
            case gather
            case write([PendingWrite])
        }
        var gathered = false
        while true {
            let step = writer.withLock { state -> Step in
                state.writingSince = nil
                if state.queue.isEmpty {
                    state.writerWaiting = true
                    state.wakeAt = 1
                    return .idle
                }
                if !gathered, state.queue.count < state.concurrency, case .append = state.queue[0] {
                    state.writerWaiting = true
                    state.wakeAt = state.concurrency
                    return .gather
                }
                state.writingSince = .now
                return .write(Self.takeBatch(&state.queue))
            }
            switch step {
            case .idle:
                gathered = false
                if wakeup.wait(timeout: .now() + Self.writerIdleExit) == .timedOut {
                    let exit = writer.withLock { state -> Bool in
                        guard state.queue.isEmpty else { return false }
                        state.writerWaiting = false
                        state.writerRunning = false
                        return true
                    }
                    if exit { return }
                    // Work arrived while timing out; a signal it may have sent only makes
                    // one later wait return early.
                }
            case .gather:
                gathered = true
                if wakeup.wait(timeout: .now() + Self.gatherWait) == .timedOut {
                    writer.withLock { $0.writerWaiting = false }
                }
            case .write(let batch):
                gathered = false
                if case .retention(let policy, let now, let continuation) = batch[0] {
                    do {
                        let events = try performRetention(policy, now: now)
                        publish(events)
                        continuation.resume(returning: events)
                    } catch {
                        continuation.resume(throwing: error)
                    }
                    continue
                }
                commit(batch)
            }
        }
    }

    /// Takes appends up to the commit size, or one retention job on its own.
    private static func takeBatch(_ queue: inout [PendingWrite]) -> [PendingWrite] {
        var count = 0
        var events = 0
        for write in queue {
            if case .append(let rows, _) = write {
                if count > 0 && events + rows.count > maxEventsPerCommit { break }
                events += rows.count
                count += 1
            } else {
                if count == 0 { count = 1 }
                break
            }
        }
        let taken = Array(queue[..<count])
        queue.removeFirst(count)
        return taken
    }

    private func commit(_ batch: [PendingWrite]) {
        var allRows: [PreparedRow] = []
        for case .append(let rows, _) in batch { allRows.append(contentsOf: rows) }
        let rows = allRows
        let journalID = id
        let node = node
        do {
            let events = try pool.write { db -> [Event] in
                var seq = (try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0)
                let insert = try db.cachedStatement(
                    sql: "INSERT INTO events(seq, time, node, device, driver, kind, severity, data, raw) VALUES (?,?,?,?,?,?,?,?,?)"
                )
                var events: [Event] = []
                events.reserveCapacity(rows.count)
                for row in rows {
                    seq += 1
                    try insert.execute(arguments: [
                        seq, row.timeText, node, row.device, row.driver, row.kind, row.severity.rawValue, row.dataJSON,
                        row.rawHex,
                    ])
                    events.append(
                        Event(
                            seq: seq, journal: journalID, time: row.time, node: node, device: row.device,
                            driver: row.driver, kind: row.kind, severity: row.severity, dataJSON: row.dataJSON,
                            raw: row.raw))
                }
                return events
            }
            stats.withLock {
                $0.appendedEvents += Int64(events.count)
                $0.commits += 1
                $0.lastSuccessTime = Date()
                $0.lastSeq = events.last?.seq ?? $0.lastSeq
            }
            publish(events)
            // Counted before resuming: an appender resumed here may queue again at once.
            writer.withLock { $0.concurrency = batch.count + $0.queue.count }
            var offset = 0
            for case .append(let rows, let continuation) in batch {
                continuation.resume(returning: Array(events[offset..<(offset + rows.count)]))
                offset += rows.count
            }
        } catch {
            let wrapped = NMBridgeError(.journalWriteFailed, "cannot append to journal \(path)", underlying: error)
            stats.withLock {
                $0.appendFailures += 1
                $0.lastAppendError = wrapped.description
                $0.lastAppendErrorTime = Date()
            }
            logger.error("journal append failed", metadata: ["journal.path": "\(path)", "error": "\(error)"])
            for case .append(_, let continuation) in batch {
                continuation.resume(throwing: wrapped)
            }
        }
    }

    private func publish(_ events: [Event]) {
        if !events.isEmpty { hub.publish(events) }
    }

    // MARK: - State

    /// How long the current write has been going on (nil when the writer is idle): the
    /// watchdog's measure of a hung commit, which reads would not reveal.
    public var writeInProgressFor: Duration? {
        writer.withLock { $0.writingSince.map { $0.duration(to: .now) } }
    }

    /// The last committed seq (0 for an empty journal).
    public var lastSeq: Int64 { stats.withLock { $0.lastSeq } }

    /// Counters since the journal was opened.
    public var statistics: JournalStatistics {
        var s = stats.withLock { $0 }
        s.liveSubscribers = hub.count
        return s
    }

    /// The oldest and last seq in the file (`oldest` is `nil` when it is empty).
    public func bounds() async throws -> (oldest: Int64?, last: Int64) {
        try await pool.read { db in try Self.readBounds(db) }
    }

    func readBoundsSync() throws -> (oldest: Int64?, last: Int64) {
        try pool.read { db in try Self.readBounds(db) }
    }

    static func readBounds(_ db: Database) throws -> (oldest: Int64?, last: Int64) {
        // Two subqueries: SQLite answers a lone MIN or MAX of the rowid from the b-tree's
        // ends, but `SELECT MIN(seq), MAX(seq)` scans the whole table (an index), which made
        // every follower page cost O(journal size) (found by bench/shipper/run).
        let row = try Row.fetchOne(db, sql: "SELECT (SELECT MIN(seq) FROM events), (SELECT MAX(seq) FROM events)")
        let oldest: Int64? = row?[0]
        let last: Int64? = row?[1]
        return (oldest, last ?? 0)
    }

    /// Bytes of the file in use (pages minus free pages), as retention counts them.
    public func usedBytes() async throws -> Int64 {
        try await pool.read { db in try Self.usedBytes(db) }
    }

    static func usedBytes(_ db: Database) throws -> Int64 {
        let pageCount = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
        let freePages = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
        let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
        return (pageCount - freePages) * pageSize
    }
}
