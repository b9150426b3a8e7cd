import Foundation
import GRDB
import Logging
import NMBridgeCore
import NMCatalog
import TestSupport
import Testing

@testable import NMJournal

/// A fresh directory per test, removed afterwards: tests run in parallel.
func temporaryDirectory(_ name: String = #function) throws -> String {
    let base = FileManager.default.temporaryDirectory.path
    let path = "\(base)/nmbridge-test-\(name.filter { $0.isLetter || $0.isNumber })-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func openJournal(_ directory: String, sync: DaemonConfiguration.SyncMode = .normal, buffer: Int = 4096) throws -> Journal {
    try Journal.open(
        JournalOptions(path: directory + "/journal.db", node: "test-node", registry: .standard, sync: sync, subscriberBuffer: buffer),
        logger: Logger(label: "test"))
}

func draft(_ i: Int, device: String = "dev-a", kind: String = "experimental.test", time: Date = Date()) -> EventDraft {
    EventDraft(time: time, device: device, driver: "script", kind: kind, data: ["i": .int(Int64(i))])
}

@discardableResult
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.runBoundToTest()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite struct JournalTests {
    @Test func concurrentAppendsGetGaplessSeqsAndSurviveReopen() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir, sync: .full)
        let id = journal.id
        let seqs = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for writer in 0..<64 {
                group.addTask {
                    var seqs: [Int64] = []
                    for i in 0..<25 { seqs.append(try await journal.append(draft(writer * 100 + i)).seq) }
                    return seqs
                }
            }
            var all: [Int64] = []
            for try await part in group {
                #expect(part == part.sorted(), "one writer's appends keep their order")
                all += part
            }
            return all
        }
        #expect(seqs.sorted() == Array(1...1600))
        #expect(journal.statistics.commits < 1600, "group commit shares transactions")

        let reopened = try openJournal(dir)
        #expect(reopened.id == id)
        let page = try await reopened.events(EventQuery(limit: 10_000))
        #expect(page.events.map(\.seq) == Array(1...1600))
        #expect(Set(page.events.compactMap { $0.data["i"]?.intValue }).count == 1600)
        #expect(try await reopened.append(draft(0)).seq == 1601)
    }

    @Test func eventRoundTripsThroughTheFileAndTheEnvelope() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        let appended = try await journal.append(
            EventDraft(
                time: Date(timeIntervalSince1970: 1_796_000_000.123456), device: "dosecal-hotlab", driver: "script",
                kind: "dosecal.measurement",
                data: ["nuclide": "Tc-99m", "activity_bq": 7.4e8, "reading": "20.00 mCi", "unit": "mCi", "note": "quote \" and \\ and \n"],
                raw: [0x46, 0x20, 0x31, 0x38]))
        let read = try #require(try await journal.events(EventQuery()).events.first)
        #expect(read == appended)
        #expect(read.raw == [0x46, 0x20, 0x31, 0x38])
        #expect(Timestamp.format(read.time) == "2026-11-30T00:53:20.123456Z")
        let parsed = try Event(json: read.jsonText)
        #expect(parsed == read)
        #expect(read.jsonText.hasPrefix("{\"seq\":1,\"journal\":\"\(journal.id.uuidString.lowercased())\",\"time\":\"2026-11-30T00:53:20.123456Z\",\"node\":\"test-node\",\"device\":\"dosecal-hotlab\""))
        #expect(read.data["activity_bq"]?.doubleValue == 7.4e8)
    }

    @Test func syncFullReallyFsyncsEveryCommit() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let full = try openJournal(dir, sync: .full)
        #expect(try full.pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") } == 2)
        let normalDir = dir + "/normal"
        let normal = try openJournal(normalDir, sync: .normal)
        #expect(try normal.pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") } == 1)
    }

    @Test func aHungCommitIsVisibleToTheWatchdog() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        try await journal.append(draft(0))
        #expect(journal.writeInProgressFor == nil, "idle writer")
        // Occupy SQLite's writer, as a stuck fsync would, until the test releases it.
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        // On a thread of its own: a blocked cooperative thread would stall other tests.
        let blocker = Thread {
            try? journal.pool.writeWithoutTransaction { _ in
                entered.signal()
                release.wait()
            }
        }
        blocker.start()
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                entered.wait()
                continuation.resume()
            }
        }
        let append = Task { try await journal.append(draft(1)) }
        var busy: Duration?
        for _ in 0..<200 where busy == nil || busy! < .milliseconds(300) {
            try await Task.sleep(for: .milliseconds(50))
            busy = journal.writeInProgressFor
        }
        #expect(busy.map { $0 >= .milliseconds(300) } == true, "the stuck commit is visible and its age grows")
        release.signal()
        #expect(try await append.value.seq == 2)
        #expect(journal.writeInProgressFor == nil)
    }

    @Test func unregisteredKindsAreRefused() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        await #expect(throws: NMBridgeError.self) { try await journal.append(draft(1, kind: "dosecal.measurment")) }
        #expect(try await journal.bounds().last == 0)
    }

    @Test func refusesForeignAndDamagedFiles() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Not SQLite at all.
        let textPath = dir + "/notes/journal.db"
        try FileManager.default.createDirectory(atPath: dir + "/notes", withIntermediateDirectories: true)
        try "shopping list\n".write(toFile: textPath, atomically: true, encoding: .utf8)
        let notSQLite = #expect(throws: NMBridgeError.self) { try openJournal(dir + "/notes") }
        #expect(notSQLite?.description.contains(textPath) == true)
        #expect(try String(contentsOfFile: textPath, encoding: .utf8) == "shopping list\n", "the file is untouched")

        // Another application's SQLite database.
        let foreign = dir + "/foreign/journal.db"
        try FileManager.default.createDirectory(atPath: dir + "/foreign", withIntermediateDirectories: true)
        try run("/usr/bin/sqlite3", [foreign, "CREATE TABLE patients(id TEXT); INSERT INTO patients VALUES ('x');"])
        let other = #expect(throws: NMBridgeError.self) { try openJournal(dir + "/foreign") }
        #expect(other?.description.contains("another application") == true)
        #expect(other?.description.contains(foreign) == true)

        // A journal whose pages were overwritten.
        let damagedDir = dir + "/damaged"
        try FileManager.default.createDirectory(atPath: damagedDir, withIntermediateDirectories: true)
        do {
            let journal = try openJournal(damagedDir)
            for i in 0..<2000 { try await journal.append(draft(i)) }
        }
        try run("/usr/bin/sqlite3", [damagedDir + "/journal.db", "PRAGMA wal_checkpoint(TRUNCATE);"])
        let handle = try #require(FileHandle(forWritingAtPath: damagedDir + "/journal.db"))
        try handle.seek(toOffset: 100)
        handle.write(Data(repeating: 0xA5, count: 8000))
        try handle.close()
        let damaged = #expect(throws: NMBridgeError.self) {
            let journal = try openJournal(damagedDir)
            _ = try journal.readBoundsSync()
            _ = try journal.pool.read { db in try Journal.readPage(db, query: EventQuery(limit: 10_000), journalID: journal.id) }
        }
        #expect(damaged?.description.contains(damagedDir + "/journal.db") == true || damaged?.code == .journalUnusable)
    }

    @Test func queriesFilterByDeviceKindTimeAndLimit() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        for i in 0..<30 {
            let device = ["dosecal-1", "gantry-1", "dosecal-2"][i % 3]
            let kind = i % 2 == 0 ? "experimental.a.x" : "experimental.b"
            try await journal.append(draft(i, device: device, kind: kind, time: t0.addingTimeInterval(Double(i) * 60)))
        }
        func seqs(_ query: EventQuery) async throws -> [Int64] { try await journal.events(query).events.map(\.seq) }
        #expect(try await seqs(EventQuery(filter: EventFilter(devices: ["gantry-1"]))) == [2, 5, 8, 11, 14, 17, 20, 23, 26, 29])
        #expect(try await seqs(EventQuery(filter: EventFilter(kinds: ["experimental.a.*"]), limit: 3)) == [1, 3, 5])
        #expect(try await seqs(EventQuery(filter: EventFilter(devices: ["dosecal-1", "dosecal-2"], kinds: ["*.b"]))) == [4, 6, 10, 12, 16, 18, 22, 24, 28, 30])
        #expect(
            try await seqs(EventQuery(filter: EventFilter(since: t0.addingTimeInterval(600), until: t0.addingTimeInterval(780))))
                == [11, 12, 13])
        #expect(try await seqs(EventQuery(after: 25))  == [26, 27, 28, 29, 30])
        #expect(try await seqs(EventQuery(filter: EventFilter(devices: ["dosecal-1"]), limit: 2, newestFirst: true)) == [25, 28])
        // The same filter in memory and in SQL.
        let all = try await journal.events(EventQuery(limit: 100)).events
        let filter = EventFilter(devices: ["dosecal-2"], kinds: ["experimental.?"])
        #expect(all.filter(filter.matches).map(\.seq) == (try await seqs(EventQuery(filter: filter))))
    }

    /// The device index is searched block by block (1024 seqs each): queries whose range
    /// spans many blocks, starts or ends inside one, or meets empty blocks must give what a
    /// plain filter over all events gives.
    @Test func deviceQueriesAcrossIndexBlocksMatchAFilterOverAllEvents() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        // 5000 events over 5 blocks: a chatty gantry, a calibrator every 7th event, and a
        // rare device at the edges of blocks and nowhere in block 2 (seqs 2048…3071).
        let rareSeqs: Set<Int> = [1, 1023, 1024, 2047, 3072, 4999]
        var drafts: [EventDraft] = []
        for seq in 1...5000 {
            let device = rareSeqs.contains(seq) ? "rare" : (seq % 7 == 0 ? "dosecal-1" : "gantry-1")
            let kind = seq % 2 == 0 ? "experimental.even" : "experimental.odd"
            drafts.append(draft(seq, device: device, kind: kind, time: t0.addingTimeInterval(Double(seq))))
        }
        for chunk in stride(from: 0, to: drafts.count, by: 500) {
            try await journal.append(Array(drafts[chunk..<min(chunk + 500, drafts.count)]))
        }
        let all = try await journal.events(EventQuery(limit: 10_000)).events
        #expect(all.count == 5000)

        var random = SeededGenerator(state: 0x6E6D_6272)
        for round in 0..<300 {
            let devices = [["rare"], ["dosecal-1"], ["gantry-1"], ["rare", "dosecal-1"], ["nobody"]][round % 5]
            let after: Int64? = Bool.random(using: &random) ? Int64.random(in: -5...5010, using: &random) : nil
            let before: Int64? = Bool.random(using: &random) ? Int64.random(in: -5...5010, using: &random) : nil
            let since: Date? = Bool.random(using: &random) ? t0.addingTimeInterval(Double.random(in: 0...5000, using: &random)) : nil
            let kinds = Bool.random(using: &random) ? ["experimental.odd"] : []
            let limit = [0, 1, 3, 50, 10_000][Int.random(in: 0..<5, using: &random)]
            let newestFirst = Bool.random(using: &random)
            let filter = EventFilter(devices: devices, kinds: kinds, since: since)
            let query = EventQuery(after: after, before: before, filter: filter, limit: limit, newestFirst: newestFirst)

            var expected = all.filter { event in
                filter.matches(event) && after.map { event.seq > $0 } ?? true && before.map { event.seq < $0 } ?? true
            }
            expected = newestFirst ? Array(expected.suffix(limit)) : Array(expected.prefix(limit))
            let got = try await journal.events(query).events
            #expect(got.map(\.seq) == expected.map(\.seq), "query \(query)")
        }
    }

    /// A journal written by a version with the old device index is migrated when opened;
    /// its events, id and queries are unchanged.
    @Test func aVersion1JournalIsMigratedWhenOpened() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/journal.db"
        let id = "2f1c4be0-8a43-4d7e-9b1e-0c5a7d1e3f20"
        let script = """
            PRAGMA application_id = \(Journal.applicationID); PRAGMA user_version = 1;
            CREATE TABLE journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE events (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, node TEXT NOT NULL, device TEXT,
                driver TEXT, kind TEXT NOT NULL, severity TEXT NOT NULL, data TEXT NOT NULL, raw TEXT);
            CREATE INDEX events_time ON events(time);
            CREATE INDEX events_device ON events(device, seq);
            INSERT INTO journal_meta VALUES ('journal_id', '\(id)'), ('created', '2026-01-01T00:00:00.000000Z');
            WITH RECURSIVE n(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM n WHERE seq < 3000)
            INSERT INTO events SELECT seq, '2026-01-01T00:00:00.000000Z', 'old',
                CASE WHEN seq % 3 = 0 THEN 'dosecal-1' ELSE 'gantry-1' END,
                'script', 'experimental.test', 'info', json_object('i', seq), NULL FROM n;
            """
        let created = try run("/usr/bin/sqlite3", [path, script])
        #expect(created.status == 0, "\(created.output)")

        let journal = try openJournal(dir)
        #expect(journal.id.uuidString.lowercased() == id)
        #expect(journal.lastSeq == 3000)
        let page = try await journal.events(EventQuery(filter: EventFilter(devices: ["dosecal-1"]), limit: 5000))
        #expect(page.events.map(\.seq) == Array(stride(from: 3, through: 3000, by: 3)).map(Int64.init))
        try await journal.append(draft(1, device: "dosecal-1"))

        let schema = try run("/usr/bin/sqlite3", ["-readonly", path, "PRAGMA user_version; SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name;"])
        #expect(schema.output == "2\nevents_device_block\nevents_time\n")
    }

    @Test func theFileIsReadableWithTheSqlite3Tool() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try openJournal(dir)
        try await journal.append([draft(1, device: "gantry-1"), draft(2, device: "gantry-1")])
        let result = try run("/usr/bin/sqlite3", ["-readonly", dir + "/journal.db", "SELECT seq, device, kind, json_extract(data, '$.i') FROM events ORDER BY seq"])
        #expect(result.status == 0)
        #expect(result.output == "1|gantry-1|experimental.test|1\n2|gantry-1|experimental.test|2\n")
    }
}
