import Foundation
import Logging
import NMBridgeCore
import NMCatalog
import NMJournal
import NMShipper
import TestSupport
import Testing

/// A fresh directory per test, removed by the test: tests run in parallel.
func temporaryDirectory(_ name: String = #function) throws -> String { try makeTemporaryDirectory("ship", name) }

let quietLogger: Logger = {
    var logger = Logger(label: "shipper-test")
    logger.logLevel = ProcessInfo.processInfo.environment["SHIPPER_TEST_LOG"] == nil ? .warning : .trace
    return logger
}()

func openJournal(_ path: String, node: String) throws -> Journal {
    try Journal.open(JournalOptions(path: path, node: node, registry: .standard, sync: .normal), logger: quietLogger)
}

/// `[shipper]` settings for a test server: quick retries. `shipper.lagging` after 1 s
/// with `lagAlerts`; otherwise never (on a loaded machine it would add events to journals
/// whose exact contents a test checks).
func shipperSettings(_ server: PostgresServer, batchSize: Int = 200, lagAlerts: Bool = false) throws -> DaemonConfiguration.Shipper {
    var settings = DaemonConfiguration.Shipper(url: try PostgresURL(server.url))
    settings.batchSize = batchSize
    settings.flushInterval = 0.05
    settings.maxBackoff = 0.5
    settings.lagAlertSeconds = lagAlerts ? 1 : 86_400
    settings.lagAlertEvents = lagAlerts ? 100_000 : Int64.max
    return settings
}

func connector(_ server: PostgresServer) throws -> PostgresConnector {
    PostgresConnector(url: try PostgresURL(server.url), password: server.password)
}

/// A shipper running in a task until `stop()`.
final class RunningShipper: Sendable {
    let shipper: JournalShipper
    let task: Task<Void, any Error>

    init(journal: Journal, server: PostgresServer, settings: DaemonConfiguration.Shipper? = nil) throws {
        let settings = try settings ?? shipperSettings(server)
        shipper = JournalShipper(journal: journal, settings: settings, connector: try connector(server), logger: quietLogger)
        let shipper = shipper
        task = Task { try await shipper.run() }
    }

    var status: ShipperSnapshot { shipper.status.snapshot }

    func stop() async {
        task.cancel()
        _ = await task.result
    }
}

/// Polls `condition` every 50 ms; fails the test with `message` after a generous limit
/// (a loaded 2-core machine), never asserting on timing itself.
func waitUntil(_ message: @autoclosure () -> String, limit: Duration = .seconds(Int64(ProcessInfo.processInfo.environment["SHIPPER_TEST_WAIT"] ?? "120") ?? 120), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !condition() {
        if ContinuousClock.now > deadline {
            Issue.record("timed out: \(message())")
            throw HarnessError("timed out: \(message())")
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// One row of the department table or of a local journal, comparable across the two.
struct ShippedRow: Hashable, CustomStringConvertible {
    var node: String
    var journal: String
    var seq: Int64
    var kind: String
    var data: String
    var description: String { "\(node)/\(journal.prefix(8))/\(seq) \(kind) \(data)" }
}

/// Every row in `nmbridge.events`, ordered by node, journal, seq.
func centralRows(_ server: PostgresServer) async throws -> [ShippedRow] {
    // Before the first shipper connected there is no table: no rows.
    if try await server.psql("SELECT to_regclass('nmbridge.events') IS NULL") == "t\n" { return [] }
    let text = try await server.psql(
        "SELECT node || E'\\t' || journal || E'\\t' || seq || E'\\t' || kind || E'\\t' || data::text FROM nmbridge.events ORDER BY node, journal, seq")
    // psql's output is the peer's: parse it, then require what was parsed (a server that
    // went away mid-query prints something else, and a trap here would end every test).
    return try text.split(separator: "\n").map { line in
        let fields = line.split(separator: "\t", maxSplits: 4, omittingEmptySubsequences: false).map(String.init)
        let parsed = fields.count == 5 ? Int64(fields[2]).map { (fields, $0) } : nil
        let (f, seq) = try #require(parsed, "psql printed a row that is not node, journal, seq, kind, data: \(line)")
        return ShippedRow(node: f[0], journal: f[1], seq: seq, kind: f[3], data: normalizedJSON(f[4]))
    }
}

/// Every event of a local journal as rows.
func localRows(_ journal: Journal) async throws -> [ShippedRow] {
    var rows: [ShippedRow] = []
    var after: Int64 = 0
    while true {
        let page = try await journal.events(EventQuery(after: after, limit: 5000))
        guard let last = page.events.last else { return rows }
        rows += page.events.map(row)
        after = last.seq
    }
}

func row(_ event: Event) -> ShippedRow {
    ShippedRow(
        node: event.node, journal: event.journal.uuidString.lowercased(), seq: event.seq, kind: event.kind,
        data: normalizedJSON(event.dataJSON))
}

func normalizedJSON(_ text: String) -> String { (try? JSONValue.parse(text))?.jsonText ?? text }

/// The test server, or a loud failure naming how to install it.
func startServer() async throws -> PostgresServer {
    do {
        return try await PostgresServer.start()
    } catch {
        Issue.record("cannot start a private PostgreSQL server: \(error)")
        throw error
    }
}

