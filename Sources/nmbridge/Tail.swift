import ArgumentParser
import Dispatch
import Foundation
import Synchronization
import NMBridgeCore
import NMClient
import NMShipper

struct Tail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the latest events; with -f, follow new ones as they are journaled.",
        discussion: """
            Human-readable on a terminal, JSON Lines when piped or with --json. With --cursor-file, \
            tail resumes after the last event it printed and records each new one there, so a \
            restarted `tail -f` neither repeats nor misses events. `tail -f` reconnects by itself \
            when the daemon restarts.

            With --postgres URL, tail follows the department-wide table that the nodes' \
            shippers fill (docs/shipper.md) instead of one daemon: events of every node (or of \
            each --node), each node's history in seq order, woken by LISTEN/NOTIFY. -n N then \
            means the last N events of each node history, and --cursor-file keeps one cursor \
            per node history. The password comes from the URL, --password-file or the \
            environment variable NMBRIDGE_POSTGRES_PASSWORD.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var filters: FilterOptions

    @Flag(name: .shortAndLong, help: "Keep following new events.")
    var follow = false

    @Option(name: .short, help: "Print the last N matching events first (default 10 without -f, 0 with -f).")
    var n: Int?

    @Option(name: .long, help: "Start after this seq instead.")
    var after: Int64?

    @Flag(name: .long, help: "JSON Lines output even on a terminal.")
    var json = false

    @Option(name: .long, help: "Resume from, and record progress in, this file.")
    var cursorFile: String?

    @Option(name: .long, help: "Follow the department-wide table in this PostgreSQL database (postgres://USER@HOST:PORT/DB) instead of a daemon.")
    var postgres: String?

    @Option(name: .customLong("node"), help: "With --postgres: only this node (repeatable).")
    var nodes: [String] = []

    @Option(name: .long, help: "With --postgres: read the password from this file.")
    var passwordFile: String?

    @Option(name: .long, help: "With --postgres: disable, prefer or require (TLS, verified against the system's CAs).")
    var tls: DaemonConfiguration.Shipper.TLSMode = .disable

    func validate() throws {
        if let n, n < 0 || n > 10_000 { throw ValidationError("-n must be between 0 and 10000") }
        if after != nil && n != nil { throw ValidationError("give -n or --after, not both") }
        if let postgres {
            do {
                _ = try PostgresURL(postgres)
            } catch {
                throw ValidationError("--postgres: not a PostgreSQL URL: \(error.message)")
            }
            if after != nil { throw ValidationError("--after names one journal's seq; with --postgres use -n or --cursor-file") }
        } else if !nodes.isEmpty || passwordFile != nil {
            throw ValidationError("--node and --password-file go with --postgres")
        }
    }

    func run() async throws {
        let stopSignals = StopSignals.install()
        defer { withExtendedLifetime(stopSignals) {} }
        if let postgres {
            return try await reportingErrors { try await followDepartment(postgres) }
        }
        try await reportingErrors {
            let client = try connection.client()
            let printer = EventPrinter(json: json)
            var cursor = try CursorFile.read(cursorFile)
            if cursor == nil, let after {
                cursor = CursorFile.Cursor(journal: nil, seq: after)
            }
            if cursor == nil {
                let count = n ?? (follow ? 0 : 10)
                let response = try jsonBody(
                    try await client.get(apiPath("/v1/events", filters.queryItems + [("last", "\(max(count, 1))")])))
                let journal = response["journal"]?.stringValue
                var last = response["last_seq"]?.intValue ?? 0
                if count > 0, case .array(let events)? = response["events"] {
                    for event in events {
                        printer.print(envelopeJSON: envelopeText(event))
                        if let seq = event["seq"]?.intValue { last = max(last, seq) }
                    }
                }
                cursor = CursorFile.Cursor(journal: journal, seq: last)
                try CursorFile.write(cursorFile, cursor!)
            } else if !follow {
                try await printSince(client: client, printer: printer, cursor: &cursor!)
            }
            guard follow, var cursor else { return }
            try await followStream(client: client, printer: printer, cursor: &cursor)
        }
    }

    /// The cursor belongs to another journal history (the daemon's journal was reset or
    /// replaced): say so and start at the beginning of the daemon's journal.
    private func startNewHistory(from old: CursorFile.Cursor, journal: String?) throws -> CursorFile.Cursor {
        FileHandle.standardError.write(
            Data("nmbridge: the cursor (seq \(old.seq) of journal \(old.journal ?? "?")) is from another journal history; starting from the beginning of the daemon's journal\n".utf8))
        let fresh = CursorFile.Cursor(journal: journal, seq: 0)
        try CursorFile.write(cursorFile, fresh)
        return fresh
    }

    /// Without -f but with a cursor: print everything after it, then stop.
    private func printSince(client: APIClient, printer: EventPrinter, cursor: inout CursorFile.Cursor) async throws {
        while true {
            let reply = try await client.get(apiPath("/v1/events", filters.queryItems + [("after", "\(cursor.seq)"), ("limit", "1000")]))
            let value = try? JSONValue.parse(reply.text)
            let journal = value?["journal"]?.stringValue
            let changed = cursor.journal != nil && journal != nil && journal != cursor.journal
            if changed || value?["error"] == .string("cursor_ahead") {
                cursor = try startNewHistory(from: cursor, journal: journal)
                continue
            }
            let response = try jsonBody(reply)
            guard case .array(let events)? = response["events"], !events.isEmpty else { return }
            for event in events {
                printer.print(envelopeJSON: envelopeText(event))
                cursor = CursorFile.Cursor(journal: event["journal"]?.stringValue, seq: event["seq"]?.intValue ?? cursor.seq)
            }
            try CursorFile.write(cursorFile, cursor)
        }
    }

    private func followStream(client: APIClient, printer: EventPrinter, cursor: inout CursorFile.Cursor) async throws {
        var delay = 0.25
        var announcedLoss = false
        while !Task.isCancelled {
            do {
                let stream = try await client.stream(
                    apiPath("/v1/events/stream", filters.queryItems),
                    headers: [("Last-Event-ID", "\(cursor.seq)")])
                if let journal = stream.headerValue("X-Journal-Id"), cursor.journal != nil, journal != cursor.journal {
                    cursor = try startNewHistory(from: cursor, journal: journal)
                    continue
                }
                if announcedLoss {
                    FileHandle.standardError.write(Data("nmbridge: reconnected; resuming after seq \(cursor.seq)\n".utf8))
                    announcedLoss = false
                }
                delay = 0.25
                cursor.journal = stream.headerValue("X-Journal-Id") ?? cursor.journal
                var messages = stream.makeAsyncIterator()
                // The server also sends bare `id:` lines for events a filter skipped: taking
                // them keeps a filtered cursor from aging into retention.
                func takeLastEventID() throws {
                    if let seq = Int64(messages.lastEventID), seq > cursor.seq {
                        cursor.seq = seq
                        try CursorFile.write(cursorFile, cursor)
                    }
                }
                do {
                    while let message = try await messages.next() {
                    switch message.event {
                    case "lagged":
                        FileHandle.standardError.write(Data("nmbridge: fell behind the live stream; catching up from seq \(cursor.seq)\n".utf8))
                    case "error":
                        let value = try? JSONValue.parse(message.data)
                        throw CLIError(value?["message"]?.stringValue ?? message.data, exitCode: value?["error"]?.stringValue == "cursor_expired" ? 3 : 1)
                    default:
                        guard let seqText = message.id, let seq = Int64(seqText) else { continue }
                        // Printing and recording go together: a signal never falls between them.
                        try outputSection.withLock { _ in
                            printer.print(envelopeJSON: message.data)
                            cursor.seq = seq
                            try CursorFile.write(cursorFile, cursor)
                        }
                    }
                    }
                } catch let error as APIError {
                    try takeLastEventID()
                    throw error
                }
                try takeLastEventID()
                // The daemon ended the stream (shutdown or lag): reconnect.
                if !announcedLoss {
                    FileHandle.standardError.write(Data("nmbridge: stream ended; reconnecting…\n".utf8))
                    announcedLoss = true
                }
            } catch let error as APIError {
                if case .httpStatus(let response) = error {
                    if (try? JSONValue.parse(response.text))?["error"] == .string("cursor_ahead") {
                        cursor = try startNewHistory(from: cursor, journal: nil)
                        continue
                    }
                    _ = try jsonBody(response)  // throws with the server's message (410 → exit 3)
                }
                if !announcedLoss {
                    FileHandle.standardError.write(Data("nmbridge: \(error.description); reconnecting…\n".utf8))
                    announcedLoss = true
                }
            }
            try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            delay = min(delay * 2, 5)
        }
    }
}

/// The `--cursor-file`: one line, `<journal-id> <seq>`, replaced atomically.
enum CursorFile {
    struct Cursor {
        var journal: String?
        var seq: Int64
    }

    static func read(_ path: String?) throws -> Cursor? {
        guard let path, FileManager.default.fileExists(atPath: path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIError("cannot read cursor file \(path)")
        }
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard parts.count == 2, let seq = Int64(parts[1]), seq >= 0 else {
            throw CLIError("cursor file \(path) is not '<journal-id> <seq>'; remove it to start afresh")
        }
        return Cursor(journal: parts[0] == "-" ? nil : String(parts[0]), seq: seq)
    }

    static func write(_ path: String?, _ cursor: Cursor) throws {
        guard let path else { return }
        let temporary = path + ".tmp"
        let text = "\(cursor.journal ?? "-") \(cursor.seq)\n"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)), rename(temporary, path) == 0 else {
            throw CLIError("cannot write cursor file \(path)")
        }
    }
}

/// Held while an event is printed and the cursor file updated.
let outputSection = Mutex(())

/// SIGINT/SIGTERM end the CLI only between two printed events, so that `tail`'s cursor
/// file always names the last event it printed (a restarted tail neither repeats nor
/// misses one).
struct StopSignals {
    let sources: [any DispatchSourceSignal]

    /// On SIGINT or SIGTERM: runs `cleanUp`, then exits 0 once no output line is half
    /// written.
    static func install(cleanUp: @escaping @Sendable () -> Void = {}) -> StopSignals {
        StopSignals(sources: [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                cleanUp()
                outputSection.withLock { (_) -> Void in exit(0) }
            }
            source.resume()
            return source
        })
    }
}
