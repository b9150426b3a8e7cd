import Foundation
import Logging
import NMBridgeCore
import PostgresNIO
import Synchronization

/// One node's journal history in the department table: events are ordered by `seq`
/// within it; a new journal id on the same node is a new history.
public struct HistoryKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var node: String
    /// Lower-case UUID text.
    public var journal: String

    public init(node: String, journal: String) {
        self.node = node
        self.journal = journal.lowercased()
    }

    public static func < (a: HistoryKey, b: HistoryKey) -> Bool { (a.node, a.journal) < (b.node, b.journal) }
    public var description: String { "\(node) \(journal)" }
}

/// Follows the department-wide stream in `nmbridge.events`: per history, every event after
/// the caller's cursor, in `seq` order, then new ones as shippers commit them.
///
/// Wake-ups come from LISTEN (the shipper NOTIFYs in each batch's transaction); data
/// comes from the table, read only up to the history's `nmbridge.cursors.last_seq`, which
/// commits with the rows, so a reader never sees a history with a hole. A periodic poll
/// covers notifications lost while reconnecting.
public struct DepartmentFollower: Sendable {
    public let connector: PostgresConnector
    /// Only these nodes (all when empty).
    public var nodes: [String]
    public var filter: EventFilter
    let logger: Logger
    /// Poll this often even without a notification.
    public var pollInterval: Duration = .seconds(5)
    static let pageSize = 1000
    /// A read that takes longer is abandoned and retried on a new connection.
    static let queryDeadline: Duration = .seconds(60)

    public init(connector: PostgresConnector, nodes: [String] = [], filter: EventFilter = EventFilter(), logger: Logger) {
        self.connector = connector
        self.nodes = nodes
        self.filter = filter
        self.logger = logger
    }

    /// The histories in the table with their last shipped seq.
    public func histories(_ connection: PostgresConnection) async throws -> [HistoryKey: Int64] {
        var result: [HistoryKey: Int64] = [:]
        do {
            try connection.ensureOpen(connector.description)
            let rows: PostgresRowSequence
            if nodes.isEmpty {
                rows = try await connection.query("SELECT node, journal::text, last_seq FROM nmbridge.cursors", logger: logger)
            } else {
                rows = try await connection.query(
                    "SELECT node, journal::text, last_seq FROM nmbridge.cursors WHERE node = ANY(\(nodes))", logger: logger)
            }
            for try await (node, journal, last) in rows.decode((String, String, Int64).self) {
                result[HistoryKey(node: node, journal: journal)] = last
            }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42P01" {
            return [:]  // no shipper has created the schema yet: no histories
        } catch {
            throw PostgresFailure("cannot read nmbridge.cursors from \(connector)", error)
        }
        return result
    }

    /// Events of one history with `after < seq <= through`, oldest first, at most `limit`.
    public func events(_ connection: PostgresConnection, history: HistoryKey, after: Int64, through: Int64, limit: Int) async throws -> [Event] {
        var events: [Event] = []
        let query: PostgresQuery = """
            SELECT node, journal::text, seq, to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   device, driver, kind, severity, data::text, raw
            FROM nmbridge.events
            WHERE node = \(history.node) AND journal = \(history.journal)::uuid AND seq > \(after) AND seq <= \(through)
            ORDER BY seq LIMIT \(Int64(limit))
            """
        do {
            try connection.ensureOpen(connector.description)
            let rows = try await connection.query(query, logger: logger)
            for try await (node, journal, seq, time, device, driver, kind, severity, data, raw) in rows.decode(
                (String, String, Int64, String, String?, String?, String, String, String, String?).self)
            {
                guard let id = UUID(uuidString: journal), let date = Timestamp.parse(time) else {
                    throw NMBridgeError(.journalUnusable, "row \(node)/\(journal)/\(seq) in nmbridge.events has an unreadable journal id or time")
                }
                events.append(
                    Event(
                        seq: seq, journal: id, time: date, node: node, device: device, driver: driver, kind: kind,
                        severity: Severity(rawValue: severity) ?? .info, dataJSON: Self.compact(data), raw: raw.flatMap(Hex.decode)))
            }
        } catch let error as NMBridgeError {
            throw error
        } catch {
            throw PostgresFailure("cannot read events of \(history) from \(connector)", error)
        }
        return events
    }

    /// jsonb's text has spaces after `:` and `,`; the envelope keeps data compact with
    /// sorted keys, as the journal does.
    static func compact(_ text: String) -> String {
        (try? JSONValue.parse(text))?.jsonText ?? text
    }

    /// Follows until cancelled (or `deliver` throws), reconnecting with backoff.
    ///
    /// - Parameters:
    ///   - cursors: where to resume per history (the last seq already delivered).
    ///   - backlog: for histories not in `cursors` that exist at the first read: how many
    ///     of their last events to deliver (`nil`: all of them). Histories that appear later
    ///     are delivered from their beginning.
    ///   - follow: false to stop once everything present at the start was delivered.
    ///   - deliver: gets each matching event with the cursors after it; events of all
    ///     histories are merged by time, each history staying in seq order.
    public func run(
        cursors initial: [HistoryKey: Int64], backlog: Int64?, follow: Bool = true,
        onError: @Sendable (String) -> Void = { _ in },
        deliver: (Event, [HistoryKey: Int64]) async throws -> Void
    ) async throws {
        var cursors = initial
        var firstRound = true
        // Without `follow`: where each history ended at the first read. Reading stops there,
        // so that a busy department (events arriving faster than they are printed) cannot
        // keep a one-off `tail` running for ever.
        var ends: [HistoryKey: Int64]?
        var backoff = 0.25
        while !Task.isCancelled {
            let connection: PostgresConnection
            do {
                connection = try await connector.connect(logger: logger)
            } catch {
                if !follow { throw error }
                onError("\(error); retrying")
                try await Task.sleep(for: .seconds(backoff))
                backoff = min(backoff * 2, 5)
                continue
            }
            do {
                try await connection.listen(on: ShipperSchema.notifyChannel) { notifications in
                    let wake = WakeSignal()
                    let nodes = nodes
                    // Not a child task: the notification sequence need not end when
                    // cancelled, and a task group would wait for it.
                    let listener = Task {
                        for try await notification in notifications where nodes.isEmpty || nodes.contains(notification.payload) {
                            wake.signal()
                        }
                    }
                    defer { listener.cancel() }
                    do {
                        backoff = 0.25
                        while !Task.isCancelled {
                            // Read until nothing new is left, then wait for a wake-up.
                            while true {
                                let follower = self
                                var histories: [HistoryKey: Int64] = try await withDeadline(
                                    Self.queryDeadline, "reading nmbridge.cursors", closing: connection
                                ) {
                                    try await follower.histories(connection)
                                }
                                if !follow {
                                    if ends == nil { ends = histories }
                                    histories = ends ?? histories
                                }
                                if firstRound {
                                    firstRound = false
                                    for (key, last) in histories where cursors[key] == nil {
                                        if let backlog { cursors[key] = max(0, last - backlog) }
                                    }
                                }
                                var merged: [[Event]] = []
                                var more = false
                                for (key, last) in histories.sorted(by: { $0.key < $1.key }) {
                                    let after = cursors[key] ?? 0
                                    guard last > after else { continue }
                                    let page: [Event] = try await withDeadline(
                                        Self.queryDeadline, "reading events of \(key)", closing: connection
                                    ) {
                                        try await follower.events(connection, history: key, after: after, through: last, limit: Self.pageSize)
                                    }
                                    if page.count == Self.pageSize { more = true }
                                    if page.isEmpty {
                                        cursors[key] = last
                                    } else {
                                        merged.append(page)
                                    }
                                }
                                for event in Self.mergeByTime(merged) {
                                    cursors[HistoryKey(node: event.node, journal: event.journal.uuidString)] = event.seq
                                    if filter.matches(event) { try await deliver(event, cursors) }
                                }
                                if !more { break }
                            }
                            if !follow { break }
                            await wake.wait(timeout: pollInterval)
                        }
                    }
                }
                try? await connection.close()
                if !follow { return }
            } catch {
                // Every way out closes the connection first.
                try? await connection.close()
                let failure: PostgresFailure
                switch error {
                case let error as PostgresFailure: failure = error
                case let error as ConnectionLost: failure = PostgresFailure("lost \(connector)", error)
                case let error as DeadlineExceeded: failure = PostgresFailure("\(connector) does not answer", error)
                case let error as PSQLError: failure = PostgresFailure("lost \(connector)", error)
                default: throw error  // cancellation, or `deliver` failed: not ours to retry
                }
                if !follow { throw failure }
                onError("\(failure); reconnecting")
            }
            try await Task.sleep(for: .seconds(backoff))
            backoff = min(backoff * 2, 5)
        }
    }

    /// Merges per-history runs (each in seq order) into one sequence ordered by time,
    /// keeping each history's order (a k-way merge on the heads).
    static func mergeByTime(_ runs: [[Event]]) -> [Event] {
        if runs.count <= 1 { return runs.first ?? [] }
        var heads = Array(repeating: 0, count: runs.count)
        var out: [Event] = []
        out.reserveCapacity(runs.reduce(0) { $0 + $1.count })
        while true {
            var best: Int?
            for (index, run) in runs.enumerated() where heads[index] < run.count {
                if let current = best {
                    if run[heads[index]].time < runs[current][heads[current]].time { best = index }
                } else {
                    best = index
                }
            }
            guard let chosen = best else { return out }
            out.append(runs[chosen][heads[chosen]])
            heads[chosen] += 1
        }
    }
}

/// A level-triggered wake-up: `signal` before `wait` is not lost.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let waiter = s.waiter {
                s.waiter = nil
                return waiter
            }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns at the next signal (or a pending one) or after `timeout`.
    func wait(timeout: Duration) async {
        let timer = Task { [self] in
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            signal()
        }
        defer { timer.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.pending {
                    s.pending = false
                    return true
                }
                s.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
        state.withLock { $0.pending = false }
    }
}
