import Foundation
import GRDB
import NMBridgeCore

/// A range query over the journal.
public struct EventQuery: Sendable, Equatable {
    /// Only events with `seq > after`.
    public var after: Int64?
    /// Only events with `seq < before`.
    public var before: Int64?
    public var filter: EventFilter
    /// At most this many events.
    public var limit: Int
    /// Newest first (used to find the last N events); results are still returned oldest first.
    public var newestFirst: Bool
    /// Only events whose top-level `data` field `key` is the string `value` (keys are
    /// identifiers of `a`–`z`, `0`–`9` and `_`; others match nothing).
    public var dataEquals: [String: String]

    public init(
        after: Int64? = nil, before: Int64? = nil, filter: EventFilter = EventFilter(), limit: Int = 1000, newestFirst: Bool = false,
        dataEquals: [String: String] = [:]
    ) {
        self.after = after
        self.before = before
        self.filter = filter
        self.limit = limit
        self.newestFirst = newestFirst
        self.dataEquals = dataEquals
    }
}

/// One page of events plus the journal's bounds read in the same snapshot.
public struct EventPage: Sendable {
    public var events: [Event]
    /// Oldest seq in the journal, `nil` if it is empty.
    public var oldestSeq: Int64?
    /// Last seq in the journal when the page was read.
    public var lastSeq: Int64
}

extension Journal {
    /// Events matching `query`, oldest first, read from one consistent snapshot.
    public func events(_ query: EventQuery) async throws -> EventPage {
        let journalID = id
        return try await pool.read { db in try Self.readPage(db, query: query, journalID: journalID) }
    }

    /// Reads a page for a follower after `cursor`; throws `cursor_expired` when retention
    /// has deleted events the cursor has not seen yet.
    func followPage(after cursor: Int64, filter: EventFilter, limit: Int) async throws -> EventPage {
        let journalID = id
        let page = try await pool.read { db in
            try Self.readPage(db, query: EventQuery(after: cursor, filter: filter, limit: limit), journalID: journalID)
        }
        if let oldest = page.oldestSeq, cursor < oldest - 1 {  // not cursor + 1: cursor may be Int64.max
            throw CursorExpired(cursor: cursor, oldestSeq: oldest)
        }
        return page
    }

    static func readPage(_ db: Database, query: EventQuery, journalID: UUID) throws -> EventPage {
        let bounds = try readBounds(db)
        var page = EventPage(events: [], oldestSeq: bounds.oldest, lastSeq: bounds.last)
        // The seqs the answer can come from, narrowed below.
        var low = bounds.oldest ?? 1
        var high = bounds.last
        var conditions: [String] = []
        var arguments: [(any DatabaseValueConvertible)?] = []
        if let after = query.after {
            conditions.append("seq > ?")
            arguments.append(after)
            guard after < high else { return page }
            low = max(low, after + 1)
        }
        if let before = query.before {
            conditions.append("seq < ?")
            arguments.append(before)
            guard before > low else { return page }
            high = min(high, before - 1)
        }
        let filter = query.filter
        if !filter.kinds.isEmpty {
            conditions.append("(" + filter.kinds.map { _ in "kind GLOB ?" }.joined(separator: " OR ") + ")")
            arguments.append(contentsOf: filter.kinds.map { $0 as (any DatabaseValueConvertible)? })
        }
        var timeConditions: [String] = []
        var timeArguments: [String] = []
        if let since = filter.since {
            timeConditions.append("time >= ?")
            timeArguments.append(Timestamp.format(since))
        }
        if let until = filter.until {
            timeConditions.append("time < ?")
            timeArguments.append(Timestamp.format(until))
        }
        // Ordered by seq with a LIMIT, SQLite walks the primary key from the start and
        // tests every row's time: a scan of the whole journal for a recent window. The time
        // index names the seqs of the window (times need not grow with seq: a QC finding is
        // dated at the event it judged), so the walk can start and stop there.
        if !timeConditions.isEmpty {
            conditions += timeConditions
            arguments += timeArguments.map { $0 as (any DatabaseValueConvertible)? }
            let sql = "SELECT MIN(seq), MAX(seq) FROM events WHERE " + timeConditions.joined(separator: " AND ")
            let row = try Row.fetchOne(db, sql: sql, arguments: StatementArguments(timeArguments))
            guard let windowLow: Int64 = row?[0], let windowHigh: Int64 = row?[1] else { return page }
            conditions.append("seq BETWEEN ? AND ?")
            arguments.append(windowLow)
            arguments.append(windowHigh)
            low = max(low, windowLow)
            high = min(high, windowHigh)
        }
        for (key, value) in query.dataEquals.sorted(by: { $0.key < $1.key }) {
            guard !key.isEmpty, key.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F }) else {
                conditions.append("0")
                continue
            }
            conditions.append("json_extract(data, '$.\(key)') = ?")
            arguments.append(value)
        }
        let limit = max(0, query.limit)
        let order = query.newestFirst ? " ORDER BY seq DESC LIMIT ?" : " ORDER BY seq LIMIT ?"
        let columns = "SELECT seq, time, node, device, driver, kind, severity, data, raw FROM events"

        if filter.devices.isEmpty {
            let sql = columns + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")) + order
            let statement = try db.makeStatement(sql: sql)
            page.events = try fetch(statement, arguments: arguments + [limit], journalID: journalID)
        } else if low <= high {
            // The device index is keyed (block of seqs, device): one seek per block of the
            // range, newest or oldest block first, until the page is full.
            conditions.append("(seq >> \(Journal.deviceBlockShift)) = ?")
            conditions.append("device IN (" + filter.devices.map { _ in "?" }.joined(separator: ",") + ")")
            let sql = columns + " INDEXED BY events_device_block WHERE " + conditions.joined(separator: " AND ") + order
            let statement = try db.makeStatement(sql: sql)
            let devices = filter.devices.map { $0 as (any DatabaseValueConvertible)? }
            let blocks = (low >> Journal.deviceBlockShift)...(high >> Journal.deviceBlockShift)
            var block = query.newestFirst ? blocks.upperBound : blocks.lowerBound
            while page.events.count < limit && blocks.contains(block) {
                let blockArguments = arguments + [block] + devices + [limit - page.events.count]
                page.events += try fetch(statement, arguments: blockArguments, journalID: journalID)
                block += query.newestFirst ? -1 : 1
            }
        }
        if query.newestFirst { page.events.reverse() }
        return page
    }

    private static func fetch(
        _ statement: Statement, arguments: [(any DatabaseValueConvertible)?], journalID: UUID
    ) throws -> [Event] {
        var events: [Event] = []
        let cursor = try Row.fetchCursor(statement, arguments: StatementArguments(arguments))
        while let row = try cursor.next() {
            events.append(try decode(row, journalID: journalID))
        }
        return events
    }

    private static func decode(_ row: Row, journalID: UUID) throws -> Event {
        let seq: Int64 = row[0]
        let timeText: String = row[1]
        guard let time = Timestamp.parse(timeText) else {
            throw NMBridgeError(.journalUnusable, "event \(seq) has an unreadable time \"\(timeText)\"")
        }
        let severityText: String = row[6]
        let rawHex: String? = row[8]
        return Event(
            seq: seq, journal: journalID, time: time, node: row[2], device: row[3], driver: row[4], kind: row[5],
            severity: Severity(rawValue: severityText) ?? .info, dataJSON: row[7], raw: rawHex.flatMap(Hex.decode))
    }
}

/// A cursor points before the oldest event retention has kept.
public struct CursorExpired: Error, Sendable, CustomStringConvertible {
    public var cursor: Int64
    public var oldestSeq: Int64

    public init(cursor: Int64, oldestSeq: Int64) {
        self.cursor = cursor
        self.oldestSeq = oldestSeq
    }

    public var description: String {
        "cursor \(cursor) is older than the journal's retention: the oldest event still kept is seq \(oldestSeq); events \(cursor + 1)…\(oldestSeq - 1) were deleted"
    }
}
