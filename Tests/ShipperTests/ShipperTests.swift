import Foundation
import NMBridgeCore
import NMCatalog
import NMJournal
import PostgresNIO
import TestSupport
import Testing

@testable import NMShipper

/// The shipper against a real, private PostgreSQL server (see `PostgresServer`).
@Suite struct ShipperTests {
    @Test func shipsEveryEventOnceAndDuplicateDeliveryHasNoEffect() async throws {
        let server = try await startServer()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let journal = try openJournal(dir + "/journal.db", node: "ws-1")
            for chunk in 0..<5 {
                try await journal.append((0..<100).map { i in
                    EventDraft(device: "dev-\(i % 3)", kind: "experimental.load", data: ["i": .int(Int64(chunk * 100 + i)), "s": "text"], raw: [0xde, 0xad])
                })
            }
            var running = try RunningShipper(journal: journal, server: server)
            try await waitUntil("500 events shipped") { try await centralRows(server).count == 500 }
            #expect(try await centralRows(server) == (try await localRows(journal)))
            #expect(try await server.psql("SELECT last_seq FROM nmbridge.cursors WHERE node = 'ws-1'") == "500\n")
            // raw and time survive the trip exactly.
            let first = try await server.psql(
                "SELECT raw, to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM nmbridge.events WHERE seq = 1")
            let local = try #require(try await journal.events(EventQuery(limit: 1)).events.first)
            #expect(first == "dead|\(Timestamp.format(local.time))\n")
            await running.stop()

            // A commit whose acknowledgement was lost looks, to the next start, like an older
            // cursor: the shipper re-sends 101…500, which must change nothing.
            try await server.psql("UPDATE nmbridge.cursors SET last_seq = 100")
            try await journal.append((0..<50).map { _ in EventDraft(kind: "experimental.after") })
            running = try RunningShipper(journal: journal, server: server)
            try await waitUntil("550 events shipped") { try await centralRows(server).count == 550 }
            try await waitUntil("cursor at 550") { running.status.shippedSeq == 550 }
            #expect(try await centralRows(server) == (try await localRows(journal)))
            #expect(running.status.duplicatesIgnored == 400)
            #expect(running.status.eventsShipped == 50)
            #expect(try await server.psql("SELECT count(*) FROM (SELECT 1 FROM nmbridge.events GROUP BY node, journal, seq HAVING count(*) > 1) d") == "0\n")
            await running.stop()
        } catch {
            await server.destroy()
            throw error
        }
        await server.destroy()
    }

    @Test func serverDownJournalKeepsAcceptingShipperReportsLagAndCatchesUp() async throws {
        let server = try await startServer()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let journal = try openJournal(dir + "/journal.db", node: "ws-2")
            // The episode is opened by the events appended during the outage (200), not by
            // seconds of lag, which a loaded machine can produce on its own.
            var settings = try shipperSettings(server, lagAlerts: true)
            settings.lagAlertSeconds = 86_400
            settings.lagAlertEvents = 200
            let running = try RunningShipper(journal: journal, server: server, settings: settings)
            try await journal.append(EventDraft(kind: "experimental.before"))
            try await waitUntil("first event shipped") { (running.status.shippedSeq ?? 0) >= 1 }
            // A loaded machine may have made the start itself an episode: let it close, and
            // count from here.
            try await waitUntil("no lag episode open") { !running.status.lagging }
            func events(_ kind: String) async throws -> [Event] {
                try await journal.events(EventQuery(filter: EventFilter(kinds: [kind]))).events
            }
            let laggingBefore = try await events("shipper.lagging").count
            let caughtUpBefore = try await events("shipper.caught_up").count
            let shippedBefore = journal.lastSeq
            try await waitUntil("all shipped before the outage") { running.status.shippedSeq == shippedBefore }

            try await server.kill()
            // The journal does not care: appends go on while the server is down. The first
            // makes the shipper try, and fail; the episode that the rest open then says why
            // (on a loaded machine the rest could otherwise open it before the first failure).
            try await journal.append(EventDraft(kind: "experimental.while_down", data: ["i": .int(0)]))
            try await waitUntil("the shipper to meet the dead server") {
                running.status.lastError?.contains(server.socketDirectory) == true && !running.status.connected
            }
            for i in 1..<300 {
                try await journal.append(EventDraft(kind: "experimental.while_down", data: ["i": .int(Int64(i))]))
                if i % 50 == 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
            try await waitUntil("shipper.lagging journaled") { try await events("shipper.lagging").count == laggingBefore + 1 }
            let lagging = try #require(try await events("shipper.lagging").last)
            #expect(lagging.data["lag_events"]?.intValue ?? 0 >= 200)
            #expect(lagging.data["shipped_seq"] == .int(shippedBefore))
            #expect(lagging.data["error"]?.stringValue?.contains(server.socketDirectory) == true, "the error names the server: \(lagging.dataJSON)")
            #expect(!running.status.connected)
            try await waitUntil("the lag to count all 300 events") { running.status.lagEvents >= 300 }
            #expect(running.status.failures >= 1)

            try await server.start()
            try await waitUntil("shipper.caught_up journaled") { try await events("shipper.caught_up").count == caughtUpBefore + 1 }
            try await waitUntil("everything shipped") { running.status.shippedSeq == journal.lastSeq }
            #expect(try await centralRows(server) == (try await localRows(journal)))
            let caughtUp = try #require(try await events("shipper.caught_up").last)
            #expect(caughtUp.data["max_lag_events"]?.intValue ?? 0 >= 300)
            #expect(EventKindRegistry.standard.problems(kind: "shipper.lagging", data: lagging.data).isEmpty)
            #expect(EventKindRegistry.standard.problems(kind: "shipper.caught_up", data: caughtUp.data).isEmpty)
            await running.stop()
        } catch {
            await server.destroy()
            throw error
        }
        await server.destroy()
    }

    @Test func newJournalIdIsShippedAsANewHistory() async throws {
        let server = try await startServer()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let first = try openJournal(dir + "/a/journal.db", node: "ws-3")
            try await first.append((0..<20).map { _ in EventDraft(kind: "experimental.old") })
            var running = try RunningShipper(journal: first, server: server)
            try await waitUntil("first history shipped") { running.status.shippedSeq == 20 }
            await running.stop()
            // The journal is reset (a new file): same node, seqs start at 1 again.
            let second = try openJournal(dir + "/b/journal.db", node: "ws-3")
            try await second.append((0..<5).map { _ in EventDraft(kind: "experimental.new") })
            running = try RunningShipper(journal: second, server: server)
            try await waitUntil("second history shipped") { running.status.shippedSeq == 5 }
            await running.stop()
            let rows = try await centralRows(server)
            #expect(Set(rows) == Set(try await localRows(first) + (try await localRows(second))))
            #expect(rows.count == 25, "both histories kept whole, none merged into the other")
            #expect(try await server.psql("SELECT count(*) FROM nmbridge.cursors WHERE node = 'ws-3'") == "2\n")
        } catch {
            await server.destroy()
            throw error
        }
        await server.destroy()
    }

    @Test func departmentFollowerDeliversEveryNodeInOrderAndResumes() async throws {
        let server = try await startServer()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let nodes = ["ws-a", "ws-b", "ws-c"]
            let journals = try nodes.map { try openJournal(dir + "/\($0).db", node: $0) }
            let shippers = try journals.map { try RunningShipper(journal: $0, server: server) }
            let received = Shared<[Event]>([])
            let lastCursors = Shared<[HistoryKey: Int64]>([:])
            // Only two of the three nodes; only experimental.* kinds.
            let follower = DepartmentFollower(
                connector: try connector(server), nodes: ["ws-a", "ws-b"], filter: EventFilter(kinds: ["experimental.*"]),
                logger: quietLogger)
            let task = Task {
                // The table is empty at first: following from the start sees every event,
                // however late this task connects.
                try await follower.run(cursors: [:], backlog: nil) { event, cursors in
                    received.withLock { $0.append(event) }
                    lastCursors.withLock { $0 = cursors }
                }
            }
            for round in 0..<40 {
                for journal in journals {
                    try await journal.append(EventDraft(kind: "experimental.tick", data: ["round": .int(Int64(round))]))
                }
                if round % 10 == 0 { try await Task.sleep(for: .milliseconds(30)) }
            }
            try await waitUntil("80 events of ws-a and ws-b followed") { received.withLock { $0.count } >= 80 }
            try await Task.sleep(for: .milliseconds(300))
            let events = received.current
            #expect(events.count == 80, "nothing extra, nothing twice")
            #expect(!events.contains { $0.node == "ws-c" })
            for node in ["ws-a", "ws-b"] {
                let mine: [Event] = events.filter { $0.node == node }
                let seqs: [Int64] = mine.map { $0.seq }
                #expect(seqs == seqs.sorted() && Set(seqs).count == 40, "\(node) in seq order, each once")
                let rounds: [Int64] = mine.map { (event: Event) -> Int64 in event.data["round"]?.intValue ?? -1 }
                let expected: [Int64] = (0..<40).map { Int64($0) }
                #expect(rounds == expected)
            }
            task.cancel()
            _ = await task.result

            // Resume from the cursors: only what came after them.
            for journal in journals { try await journal.append(EventDraft(kind: "experimental.later")) }
            let resumed = Shared<[Event]>([])
            let cursors = lastCursors.current
            let again = Task {
                try await follower.run(cursors: cursors, backlog: nil) { event, _ in resumed.withLock { $0.append(event) } }
            }
            try await waitUntil("the two later events") { resumed.withLock { $0.count } >= 2 }
            try await Task.sleep(for: .milliseconds(300))
            let kinds: [String] = resumed.current.map { $0.kind }
            #expect(kinds == ["experimental.later", "experimental.later"])
            again.cancel()
            _ = await again.result
            for shipper in shippers { await shipper.stop() }
        } catch {
            await server.destroy()
            throw error
        }
        await server.destroy()
    }

    /// `nmbridge tail --postgres` without `-f` ends at what was there when it started. It
    /// used to read until nothing new was left, so a department producing events faster than
    /// they were printed kept it running for ever (a fresh-clone run under load: 18 minutes).
    /// Here each delivered event makes the node journal another one.
    @Test func aOneOffReadEndsWhereTheTableEndedAtItsStart() async throws {
        let server = try await startServer()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let journal = try openJournal(dir + "/ws-a.db", node: "ws-a")
            let shipper = try RunningShipper(journal: journal, server: server)
            // More than a page (1000), so that the reader asks again after its first page.
            try await journal.append((0..<1500).map { _ in EventDraft(kind: "experimental.before") })
            try await waitUntil("1500 events shipped") { try await centralRows(server).count >= 1500 }
            let follower = DepartmentFollower(connector: try connector(server), nodes: [], filter: EventFilter(), logger: quietLogger)
            let delivered = Shared<[Event]>([])
            // One new event per event read, all shipped before the next page is read: faster
            // than the reader. Bounded at 2000, so that the old behaviour ended too (with too
            // many events) instead of hanging.
            try await follower.run(cursors: [:], backlog: nil, follow: false) { event, _ in
                let count = delivered.withLock { events in
                    events.append(event)
                    return events.count
                }
                guard count <= 2000 else { return }
                try await journal.append(EventDraft(kind: "experimental.during"))
                if count % 1000 == 0 {
                    try await waitUntil("the new events shipped") { try await centralRows(server).count >= 1500 + count }
                }
            }
            let kinds = delivered.current.map(\.kind)
            #expect(kinds.count == 1500 && kinds.allSatisfy { $0 == "experimental.before" }, "\(kinds.count) events, \(Set(kinds))")
            await shipper.stop()
        } catch {
            await server.destroy()
            throw error
        }
        await server.destroy()
    }

    @Test func schemaIsVersionedAndANewerOneIsRefused() async throws {
        let server = try await startServer()
        do {
            let connector = try connector(server)
            // Several nodes starting at once against an empty server.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let connection = try await connector.connect(logger: quietLogger)
                        try await ShipperSchema.migrate(connection, server: connector.description, logger: quietLogger)
                        try await connection.close()
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await server.psql("SELECT version FROM nmbridge.schema_version") == "1\n")
            try await server.psql("INSERT INTO nmbridge.schema_version (version, description) VALUES (7, 'future')")
            let connection = try await connector.connect(logger: quietLogger)
            let error = await #expect(throws: NMBridgeError.self) {
                try await ShipperSchema.migrate(connection, server: connector.description, logger: quietLogger)
            }
            #expect(error?.message.contains("schema version 7") == true)
            #expect(error?.message.contains(server.socketDirectory) == true)
            try await connection.close()
        } catch {
            await server.destroy()
            throw error
        }
        await server.destroy()
    }

    @Test func wrongPasswordNamesTheServerNotThePassword() async throws {
        let server = try await startServer()
        let wrong = "not-the-password-\(UUID().uuidString.prefix(6))"
        let connector = PostgresConnector(url: try PostgresURL(server.url), password: wrong)
        let error = await #expect(throws: PostgresFailure.self) { _ = try await connector.connect(logger: quietLogger) }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains(server.url), "\(text)")
        #expect(text.contains("password authentication failed"), "\(text)")
        #expect(!text.contains(wrong))
        await server.destroy()
    }

    @Test func passwordComesFromTheFileOrTheEnvironment() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "s3cret\n".write(toFile: dir + "/pw", atomically: true, encoding: .utf8)
        #expect(try PostgresConnector.password(file: dir + "/pw", environment: ["NMBRIDGE_POSTGRES_PASSWORD": "env"]) == "s3cret")
        #expect(try PostgresConnector.password(file: nil, environment: ["NMBRIDGE_POSTGRES_PASSWORD": "env"]) == "env")
        #expect(try PostgresConnector.password(file: nil, environment: [:]) == nil)
        let error = #expect(throws: NMBridgeError.self) { try PostgresConnector.password(file: dir + "/missing", environment: [:]) }
        #expect(error?.message.contains(dir + "/missing") == true)
    }

    @Test func deadlinesReturnTheResultOrGiveUp() async throws {
        #expect(try await withDeadline(.seconds(60), "a quick query") { 42 } == 42)
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(200), "a query that hangs") { () async throws -> Int in
                try await Task.sleep(for: .seconds(3600))
                return 0
            }
        }
        // The watcher's loop ends when the race is done, also for a result that came first.
        let race = DeadlineRace<Int>()
        #expect(!race.isDone)
        race.finish(.success(1))
        #expect(race.isDone)
    }

    @Test func mergeKeepsEachHistoryInOrder() {
        let id = UUID()
        func event(_ node: String, _ seq: Int64, _ t: Double) -> Event {
            Event(seq: seq, journal: id, time: Date(timeIntervalSince1970: t), node: node, device: nil, driver: nil, kind: "k", severity: .info, dataJSON: "{}", raw: nil)
        }
        // b's clock went backwards between its events 2 and 3: its order must still hold.
        let merged = DepartmentFollower.mergeByTime([
            [event("a", 1, 10), event("a", 2, 30)],
            [event("b", 1, 5), event("b", 2, 40), event("b", 3, 20)],
        ])
        #expect(merged.map { "\($0.node)\($0.seq)" } == ["b1", "a1", "a2", "b2", "b3"])
    }
}

/// `tls = "require"` against a real server with a certificate for `localhost`.
@Suite struct ShipperTLSTests {
    @Test func requireEncryptsAndVerifiesTheServerCertificate() async throws {
        let server = try await PostgresServer.start(tls: true)
        do {
            let url = try PostgresURL(server.tcpURL)
            // Trusting the server's certificate: a TLS connection that works.
            let trusted = PostgresConnector(url: url, password: server.password, tls: .require, tlsCAFile: server.certificatePath)
            let connection = try await trusted.connect(logger: quietLogger)
            var ssl = false
            for try await value in try await connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: quietLogger).decode(Bool.self) {
                ssl = value
            }
            #expect(ssl, "the session is encrypted")
            try await connection.close()
            // The system's CAs do not know a self-signed certificate: no connection.
            let untrusted = PostgresConnector(url: url, password: server.password, tls: .require)
            await #expect(throws: PostgresFailure.self) { try await untrusted.connect(logger: quietLogger).close() }
            // A missing CA file is a configuration error naming it.
            let missing = PostgresConnector(url: url, password: server.password, tls: .require, tlsCAFile: server.directory + "/nope.pem")
            let error = await #expect(throws: NMBridgeError.self) { try await missing.connect(logger: quietLogger).close() }
            #expect(error?.message.contains("nope.pem") == true)
        } catch {
            await server.destroy()
            throw error
        }
        await server.destroy()
    }
}
