import Foundation
import GRDB
import NMBridgeCore

/// How much history the journal keeps.
public struct RetentionPolicy: Sendable, Equatable {
    /// Delete events older than this many seconds.
    public var maxAge: TimeInterval?
    /// Delete the oldest events while the file's used bytes exceed this.
    public var maxBytes: Int64?
    /// With a PostgreSQL shipper: the last seq committed to the server (0 while unknown).
    /// Retention then keeps every later event, whatever the age and size limits say,
    /// unless `mayDropUnshipped`. `nil` = no shipper.
    public var shippedThrough: Int64?
    /// Let retention delete unshipped events (`[shipper] retention_may_drop_unshipped`);
    /// `journal.truncated` then names exactly which ones.
    public var mayDropUnshipped = false
    /// Per-kind ages (`[[journal.retention]]` and the record kinds' default), first match wins;
    /// `maxAge` is for the kinds no rule matches. Empty: `maxAge` deletes a prefix, as before.
    public var kindRules: [KindRule] = []

    /// Events whose kind matches one of `kinds` (SQLite GLOBs) are deleted after `maxAge`
    /// seconds (nil: kept forever).
    public struct KindRule: Sendable, Equatable {
        public var kinds: [String]
        public var maxAge: TimeInterval?
        public init(kinds: [String], maxAge: TimeInterval?) {
            self.kinds = kinds
            self.maxAge = maxAge
        }
    }

    public init(maxAge: TimeInterval? = nil, maxBytes: Int64? = nil, shippedThrough: Int64? = nil, mayDropUnshipped: Bool = false) {
        self.maxAge = maxAge
        self.maxBytes = maxBytes
        self.shippedThrough = shippedThrough
        self.mayDropUnshipped = mayDropUnshipped
    }

    public init(_ journal: DaemonConfiguration.Journal) {
        self.maxAge = journal.retentionDays.map { $0 * 86_400 }
        self.maxBytes = journal.maxSizeMB.map { Int64($0 * 1_048_576) }
        self.kindRules = journal.effectiveRetentionRules.map { KindRule(kinds: $0.kinds, maxAge: $0.days.map { $0 * 86_400 }) }
    }
}

extension Journal {
    /// Deletes the oldest events that the policy no longer keeps and journals one
    /// `journal.truncated` per reason. Always deletes a prefix of the seq range, so the
    /// journal never has holes. Never deletes past `policy.shippedThrough` unless
    /// `policy.mayDropUnshipped`. Returns the `journal.truncated` events.
    @discardableResult
    public func applyRetention(_ policy: RetentionPolicy, now: Date = Date()) async throws -> [Event] {
        try await enqueueRetention(policy, now: now)
    }

    /// Runs on the writer thread (see `Journal.writerLoop`).
    func performRetention(_ policy: RetentionPolicy, now: Date) throws -> [Event] {
        let journalID = id
        let node = node
        let events = try pool.write { db -> [Event] in
            struct Deletion {
                var from: Int64
                var to: Int64
                var count: Int64
                var reason: String
                /// Per-kind age deletions: what went, per kind, and by which rule.
                var kinds: [String: Int64]? = nil
                var rule: String? = nil
                var unshippedCount: Int64? = nil
            }
            var deletions: [Deletion] = []
            var heldBack = false
            // Read before deleting: if everything goes, the markers still continue the seq.
            let lastBefore = try Self.readBounds(db).last
            /// Deletes through `wanted` (or through the last shipped seq); false if nothing went.
            @discardableResult
            func deleteThrough(_ wanted: Int64, reason: String) throws -> Bool {
                var last = wanted
                if let shipped = policy.shippedThrough, !policy.mayDropUnshipped, last > shipped {
                    last = shipped
                    heldBack = true
                }
                guard let oldest = try Self.readBounds(db).oldest, last >= oldest else { return false }
                try db.execute(sql: "DELETE FROM events WHERE seq <= ?", arguments: [last])
                deletions.append(Deletion(from: oldest, to: last, count: Int64(db.changesCount), reason: reason))
                return true
            }
            if !policy.kindRules.isEmpty {
                // Per kind (first matching rule): deletes out of the middle of the seq range, so
                // seqs get holes; `journal.truncated` names the kinds (docs/journal.md).
                let shippedLimit = policy.mayDropUnshipped ? Int64.max : (policy.shippedThrough ?? Int64.max)
                var earlier: [String] = []
                for rule in policy.kindRules + [RetentionPolicy.KindRule(kinds: ["*"], maxAge: policy.maxAge)] {
                    defer { earlier += rule.kinds }
                    guard let maxAge = rule.maxAge else { continue }
                    var condition = "time < ? AND (" + rule.kinds.map { _ in "kind GLOB ?" }.joined(separator: " OR ") + ")"
                    var arguments: [(any DatabaseValueConvertible)?] = [Timestamp.format(now.addingTimeInterval(-maxAge))]
                    arguments += rule.kinds.map { $0 as (any DatabaseValueConvertible)? }
                    if !earlier.isEmpty {
                        condition += " AND NOT (" + earlier.map { _ in "kind GLOB ?" }.joined(separator: " OR ") + ")"
                        arguments += earlier.map { $0 as (any DatabaseValueConvertible)? }
                    }
                    if shippedLimit != Int64.max,
                        try Int64.fetchOne(db, sql: "SELECT count(*) FROM events WHERE \(condition) AND seq > ?", arguments: StatementArguments(arguments + [shippedLimit])) ?? 0 > 0
                    {
                        heldBack = true
                    }
                    condition += " AND seq <= ?"
                    arguments.append(shippedLimit)
                    let shipped = policy.shippedThrough ?? Int64.max
                    let rows = try Row.fetchAll(
                        db, sql: "SELECT kind, count(*), MIN(seq), MAX(seq), SUM(seq > ?) FROM events WHERE \(condition) GROUP BY kind",
                        arguments: StatementArguments([shipped as (any DatabaseValueConvertible)?] + arguments))
                    guard !rows.isEmpty else { continue }
                    var kinds: [String: Int64] = [:]
                    var from = Int64.max, to = Int64.min, count: Int64 = 0, unshipped: Int64 = 0
                    for row in rows {
                        let n: Int64 = row[1]
                        kinds[row[0]] = n
                        count += n
                        from = min(from, row[2])
                        to = max(to, row[3])
                        unshipped += (row[4] as Int64?) ?? 0
                    }
                    try db.execute(sql: "DELETE FROM events WHERE \(condition)", arguments: StatementArguments(arguments))
                    deletions.append(
                        Deletion(
                            from: from, to: to, count: count, reason: "age", kinds: kinds,
                            rule: rule.kinds == ["*"] ? "retention_days" : rule.kinds.joined(separator: ","),
                            unshippedCount: policy.shippedThrough == nil ? nil : unshipped))
                }
            } else if let maxAge = policy.maxAge {
                let cutoff = Timestamp.format(now.addingTimeInterval(-maxAge))
                let firstKept = try Int64.fetchOne(db, sql: "SELECT MIN(seq) FROM events WHERE time >= ?", arguments: [cutoff])
                let last = try Self.readBounds(db).last
                try deleteThrough((firstKept ?? (last + 1)) - 1, reason: "age")
            }
            if let maxBytes = policy.maxBytes {
                // Deleting frees pages; estimate how many events to drop from the average size,
                // aiming at 90 % of the limit so that retention does not run on every append.
                for _ in 0..<64 {
                    let used = try Self.usedBytes(db)
                    guard used > maxBytes, let oldest = try Self.readBounds(db).oldest else { break }
                    let count = try Int64.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0
                    guard count > 1 else { break }
                    let perEvent = max(1, used / count)
                    let excess = used - maxBytes * 9 / 10
                    let drop = min(count - 1, max(1, excess / perEvent))
                    guard try deleteThrough(oldest + drop - 1, reason: "size") else { break }
                }
            }
            if heldBack {
                logger.warning(
                    "journal retention keeps events not yet shipped to PostgreSQL",
                    metadata: [
                        "journal.path": "\(path)", "shipper.shipped_seq": "\(policy.shippedThrough ?? 0)",
                        "hint": "retention_may_drop_unshipped = true in [shipper] lets retention delete them",
                    ])
            }
            guard !deletions.isEmpty else { return [] }
            // Merge consecutive size deletions into one record.
            var merged: [Deletion] = []
            for d in deletions {
                if let last = merged.last, last.reason == d.reason, last.kinds == nil, d.kinds == nil, last.to + 1 == d.from {
                    merged[merged.count - 1].to = d.to
                    merged[merged.count - 1].count += d.count
                } else {
                    merged.append(d)
                }
            }
            var seq = lastBefore
            let oldestKept = try Self.readBounds(db).oldest
            var events: [Event] = []
            for d in merged {
                seq += 1
                var data: [String: JSONValue] = [
                    "from_seq": .int(d.from), "to_seq": .int(d.to), "count": .int(d.count), "reason": .string(d.reason),
                    "oldest_seq": .int(oldestKept ?? seq),
                ]
                if let kinds = d.kinds {
                    data["kinds"] = .object(kinds.mapValues { .int($0) })
                    if let rule = d.rule { data["rule"] = .string(rule) }
                }
                // Prefix deletions leave no holes, so the unshipped part is a range and its count
                // exact; per-kind deletions counted theirs.
                if let shipped = policy.shippedThrough, d.to > shipped, d.unshippedCount != 0 {
                    let from = max(d.from, shipped + 1)
                    data["unshipped_from_seq"] = .int(from)
                    data["unshipped_to_seq"] = .int(d.to)
                    data["unshipped_count"] = .int(d.unshippedCount ?? (d.to - from + 1))
                }
                let time = Timestamp.format(now)
                let dataJSON = JSONValue.object(data).jsonText
                try db.execute(
                    sql: "INSERT INTO events(seq, time, node, device, driver, kind, severity, data, raw) VALUES (?,?,?,NULL,NULL,'journal.truncated','notice',?,NULL)",
                    arguments: [seq, time, node, dataJSON])
                events.append(
                    Event(
                        seq: seq, journal: journalID, time: Timestamp.parse(time) ?? now, node: node, device: nil,
                        driver: nil, kind: "journal.truncated", severity: .notice, dataJSON: dataJSON, raw: nil))
            }
            return events
        }
        if let last = events.last?.seq {
            stats.withLock {
                $0.lastSeq = last
                $0.appendedEvents += Int64(events.count)
            }
            logger.notice(
                "journal retention deleted old events",
                metadata: ["journal.path": "\(path)", "events": "\(events.map { $0.dataJSON }.joined(separator: " "))"])
        }
        return events
    }
}
