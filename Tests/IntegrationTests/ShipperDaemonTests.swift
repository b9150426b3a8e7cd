import Foundation
import NMBridgeCore
import NMClient
import TestSupport
import Testing

/// Three real daemons shipping to one real PostgreSQL server, with a daemon killed -9
/// mid-stream and the server killed and restarted while they ship.
@Suite struct ShipperDaemonTests {
    /// A daemon whose script device journals an event every few milliseconds and ships to `server`.
    func config(_ dir: String, node: String, server: PostgresServer, passwordFile: Bool) -> String {
        """
        [daemon]
        node = "\(node)"
        state_dir = "\(dir)"
        [journal]
        sync = "normal"
        [api]
        socket = "\(dir)/api.sock"
        [shipper]
        postgres = "\(server.url)"
        \(passwordFile ? "password_file = \"\(server.passwordFile)\"" : "")
        batch_size = 100
        flush_interval_ms = 50
        max_backoff_s = 0.5
        lag_alert_s = 1
        [[device]]
        id = "load-\(node)"
        driver = "script"
        script = "\(dir)/fast.script"
        """
    }

    /// (journal id, seq, kind, data) of every event in a stopped daemon's journal file.
    func localRows(_ dir: String) async throws -> (journal: String, rows: [String]) {
        let id = try await runProgram("/usr/bin/sqlite3", [dir + "/journal.db", "SELECT value FROM journal_meta WHERE key = 'journal_id'"])
        let rows = try await runProgram("/usr/bin/sqlite3", ["-separator", "|", dir + "/journal.db", "SELECT seq, kind, data FROM events ORDER BY seq"])
        #expect(rows.status == 0, "\(rows.stderr)")
        return (id.stdout.trimmingCharacters(in: .whitespacesAndNewlines), rows.stdout.split(separator: "\n").map { normalize(String($0)) })
    }

    /// `seq|kind|data` with data re-serialised (jsonb and SQLite spell JSON differently).
    func normalize(_ line: String) -> String {
        let parts = line.split(separator: "|", maxSplits: 2).map(String.init)
        guard parts.count == 3, let data = try? JSONValue.parse(parts[2]) else { return line }
        return "\(parts[0])|\(parts[1])|\(data.jsonText)"
    }

    func centralRows(_ server: PostgresServer, node: String) async throws -> (journals: [String], rows: [String]) {
        let journals = try await server.psql("SELECT DISTINCT journal FROM nmbridge.events WHERE node = '\(node)'")
        let rows = try await server.psql("SELECT seq || '|' || kind || '|' || data::text FROM nmbridge.events WHERE node = '\(node)' ORDER BY seq")
        return (journals.split(separator: "\n").map(String.init), rows.split(separator: "\n").map { normalize(String($0)) })
    }

    func centralCount(_ server: PostgresServer, node: String) async throws -> Int {
        guard try await server.psql("SELECT to_regclass('nmbridge.events') IS NULL") == "f\n" else { return 0 }
        return Int(try await server.psql("SELECT count(*) FROM nmbridge.events WHERE node = '\(node)'").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    func health(_ daemon: DaemonProcess) async throws -> JSONValue {
        try JSONValue.parse(try await daemon.client.get("/v1/health").text)
    }

    func waitFor(_ what: String, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<2400 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DaemonFailed(message: "timed out (120 s) waiting for \(what)")
    }

    @Test func threeDaemonsShipExactlyTheirJournalsThroughCrashesAndOutages() async throws {
        let server = try await PostgresServer.start()
        let base = try temporaryDirectory()
        var daemons: [String: DaemonProcess] = [:]
        let nodes = ["ws-1", "ws-2", "ws-3"]
        func dir(_ node: String) -> String { "\(base)/\(node)" }
        func start(_ node: String) async throws {
            // ws-3 takes its password from the environment instead of a file.
            let env = node == "ws-3" ? ["NMBRIDGE_POSTGRES_PASSWORD": server.password] : [:]
            daemons[node] = try await DaemonProcess.start(
                directory: dir(node), config: config(dir(node), node: node, server: server, passwordFile: node != "ws-3"), environment: env)
        }
        do {
            for node in nodes {
                try FileManager.default.createDirectory(atPath: dir(node), withIntermediateDirectories: true)
                try fastScript.write(toFile: dir(node) + "/fast.script", atomically: true, encoding: .utf8)
                try await start(node)
            }
            try await waitFor("every node shipping") {
                for node in nodes where try await centralCount(server, node: node) < 200 { return false }
                return true
            }

            // kill -9 while it ships (it ships every 50 ms under this load), then restart it.
            daemons["ws-2"]!.signal(SIGKILL)
            try await daemons["ws-2"]!.waitForExit()
            try await start("ws-2")

            // The server goes away; the daemons keep journaling and report the lag.
            try await server.kill()
            let before = try await daemons["ws-1"]!.lastSeq()
            try await waitFor("ws-1 to report it is not connected and lagging") {
                let shipper = try await health(daemons["ws-1"]!)["shipper"]
                return shipper?["connected"] == .bool(false) && (shipper?["lag_events"]?.intValue ?? 0) > 0
                    && shipper?["lagging"] == .bool(true)
            }
            #expect(try await daemons["ws-1"]!.lastSeq() > before, "the journal keeps accepting events while PostgreSQL is down")
            let metrics = try await daemons["ws-1"]!.client.get("/metrics").text
            #expect(metrics.contains("nmbridge_shipper_connected{server=\"\(server.url)\"} 0"), "\(metrics)")
            #expect(metrics.contains("nmbridge_shipper_lag_events{server="))
            let status = try await runProgram(productsDirectory + "/nmbridge", ["status", "--socket", daemons["ws-1"]!.socketPath])
            #expect(status.stdout.contains("not connected, LAGGING"), "\(status.stdout)\(status.stderr)")
            try await server.start()
            try await waitFor("ws-1 connected again and caught up") {
                let shipper = try await health(daemons["ws-1"]!)["shipper"]
                return shipper?["connected"] == .bool(true) && shipper?["lagging"] == .bool(false)
            }

            // A graceful stop ships the rest, daemon.stopping included.
            for node in nodes { _ = try await daemons[node]!.stop() }
            for node in nodes {
                let local = try await localRows(dir(node))
                try await waitFor("\(node) fully shipped (\(local.rows.count) local events)") { try await centralCount(server, node: node) >= local.rows.count }
                let central = try await centralRows(server, node: node)
                #expect(central.journals == [local.journal], "\(node): one history, the journal's")
                #expect(central.rows.count == local.rows.count, "\(node): \(central.rows.count) central vs \(local.rows.count) local")
                #expect(central.rows == local.rows, "\(node): the central table holds exactly the local journal, in seq order")
                #expect(central.rows.contains { $0.contains("|daemon.stopping|") }, "\(node): the last batch at shutdown held daemon.stopping")
            }
            let kinds = try await server.psql("SELECT DISTINCT kind FROM nmbridge.events WHERE node = 'ws-1' AND kind LIKE 'shipper.%' ORDER BY kind")
            #expect(kinds == "shipper.caught_up\nshipper.lagging\n", "the outage is on record centrally too")
            #expect(try await server.psql("SELECT count(*) FROM nmbridge.cursors") == "3\n")

            // The department stream from the CLI: the last 2 events of each node history.
            let tail = try await runProgram(productsDirectory + "/nmbridge", ["tail", "--postgres", server.urlWithPassword, "-n", "2", "--node", "ws-1", "--node", "ws-3"])
            #expect(tail.status == 0, "\(tail.stderr)")
            let printed = tail.stdout.split(separator: "\n").compactMap { try? Event(json: String($0)) }
            #expect(printed.count == 4, "\(tail.stdout)\(tail.stderr)")
            #expect(Set(printed.map(\.node)) == ["ws-1", "ws-3"])
            // Load, daemon.stopping, or the shipper's own lag events (the monitor may journal
            // one just before the shutdown).
            #expect(printed.allSatisfy { ["daemon.stopping", "experimental.load"].contains($0.kind) || $0.kind.hasPrefix("shipper.") })
        } catch {
            for daemon in daemons.values where daemon.process.isRunning { daemon.signal(SIGKILL) }
            for (node, daemon) in daemons.sorted(by: { $0.key < $1.key }) {
                Issue.record("\(node) log (files kept in \(base)):\n\(daemon.log.suffix(4000))")
            }
            if ProcessInfo.processInfo.environment["NMBRIDGE_KEEP_POSTGRES"] != nil {
                Issue.record("server kept running for inspection: psql -h \(server.socketDirectory) -U postgres (password in \(server.passwordFile))")
            } else {
                await server.destroy()
            }
            throw error
        }
        await server.destroy()
        try? FileManager.default.removeItem(atPath: base)
    }

    @Test func tailFollowsTheDepartmentAndResumesFromItsCursorFile() async throws {
        let server = try await PostgresServer.start()
        let base = try temporaryDirectory()
        var daemon: DaemonProcess?
        var tail: Process?
        do {
            let dir = base + "/ws-t"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try fastScript.write(toFile: dir + "/fast.script", atomically: true, encoding: .utf8)
            daemon = try await DaemonProcess.start(directory: dir, config: config(dir, node: "ws-t", server: server, passwordFile: true))
            try await waitFor("the first events shipped") { try await centralCount(server, node: "ws-t") > 0 }

            // `tail -f --postgres` as a user runs it: output to a file, a cursor file.
            let output = base + "/tail.out"
            let cursorFile = base + "/tail.cursor"
            FileManager.default.createFile(atPath: output, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: productsDirectory + "/nmbridge")
            process.arguments = ["tail", "-f", "--postgres", server.url, "--password-file", server.passwordFile, "--json", "--cursor-file", cursorFile]
            process.standardOutput = FileHandle(forWritingAtPath: output)
            process.standardError = FileHandle.nullDevice
            try process.runBoundToTest()
            tail = process
            func printed() -> [Event] {
                ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { try? Event(json: String($0)) }
            }
            try await waitFor("tail -f to print 100 new events") { printed().count >= 100 }
            process.terminate()  // SIGTERM: the CLI stops between two events
            for _ in 0..<600 where process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
            #expect(!process.isRunning)
            let first = printed()
            let seqs = first.map(\.seq)
            let (firstEvent, lastSeq) = try #require(first.first.map { ($0, seqs[seqs.count - 1]) }, "tail printed no event")
            #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $1 == $0 + 1 }, "consecutive, in order, none twice: \(firstEvent.seq)…\(lastSeq)")
            #expect(first.allSatisfy { $0.node == "ws-t" })
            let cursor = try String(contentsOfFile: cursorFile, encoding: .utf8)
            #expect(cursor == "ws-t \(firstEvent.journal.uuidString.lowercased()) \(lastSeq)\n", "\(cursor)")

            // Later, without -f: everything after the cursor and nothing before it.
            try await Task.sleep(for: .milliseconds(300))
            let resumed = try await runProgram(
                productsDirectory + "/nmbridge",
                ["tail", "--postgres", server.urlWithPassword, "--json", "--cursor-file", cursorFile])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            let rest = resumed.stdout.split(separator: "\n").compactMap { try? Event(json: String($0)) }
            #expect(rest.first?.seq == lastSeq + 1, "resumes right after the last event printed")
            let restSeqs = rest.map(\.seq)
            #expect(restSeqs == restSeqs.sorted() && Set(restSeqs).count == restSeqs.count)
            _ = try await daemon?.stop()
        } catch {
            if let tail, tail.isRunning { tail.interrupt(); kill(tail.processIdentifier, SIGKILL) }
            if let daemon, daemon.process.isRunning { daemon.signal(SIGKILL) }
            await server.destroy()
            try? FileManager.default.removeItem(atPath: base)
            throw error
        }
        await server.destroy()
        try? FileManager.default.removeItem(atPath: base)
    }
}
