import ArgumentParser
import Foundation
import NMBridgeCore
import NMClient
import NMCatalog

struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List configured devices and their current state.")

    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Print the API's JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let body = try jsonBody(try await connection.client().get("/v1/devices"))
            if json { return writeStdout(body.jsonText + "\n") }
            guard case .array(let devices)? = body["devices"] else { return }
            var rows = [["DEVICE", "DRIVER", "LINK", "STALE", "LAST EVENT", "RESTARTS", "LAST ERROR"]]
            for d in devices {
                let last = d["last_event"].flatMap { e -> String? in
                    guard let seq = e["seq"]?.intValue, let kind = e["kind"]?.stringValue else { return nil }
                    return "\(seq) \(kind)"
                } ?? "-"
                rows.append([
                    d["id"]?.stringValue ?? "?", d["driver"]?.stringValue ?? "?", d["link"]?.stringValue ?? "?",
                    d["stale"] == .bool(true) ? "yes" : "no", last, "\(d["restarts"]?.intValue ?? 0)",
                    d["last_error"]?.stringValue ?? "",
                ])
            }
            writeStdout(table(rows))
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the daemon's health: journal, devices, subscribers.")

    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Print the API's JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let body = try jsonBody(try await connection.client().get("/v1/health"))
            if json { return writeStdout(body.jsonText + "\n") }
            let j = body["journal"] ?? .null
            let d = body["devices"] ?? .null
            var text = """
                status:   \(body["status"]?.stringValue ?? "?")
                node:     \(body["node"]?.stringValue ?? "?")   version \(body["version"]?.stringValue ?? "?")   up \(Int(body["uptime_s"]?.doubleValue ?? 0)) s
                journal:  \(j["path"]?.stringValue ?? "?")
                          id \(j["id"]?.stringValue ?? "?"), seq \(j["oldest_seq"]?.intValue.map(String.init) ?? "-")…\(j["last_seq"]?.intValue ?? 0), \(j["subscribers"]?.intValue ?? 0) live subscriber(s)
                devices:  \(d["total"]?.intValue ?? 0) configured, \(d["up"]?.intValue ?? 0) up, \(d["stale"]?.intValue ?? 0) stale, \(d["driver_running"]?.intValue ?? 0) driver(s) running

                """
            if let error = j["last_append_error"]?.stringValue {
                text += "last append error: \(error) (\(j["append_failures"]?.intValue ?? 0) failure(s))\n"
            }
            if let q = body["qc"], q != .null {
                text += "qc:       judged through seq \(q["judged_seq"]?.intValue ?? 0) (\(q["behind_events"]?.intValue ?? 0) event(s) behind), \(q["findings"]?.intValue ?? 0) finding(s) since start\n"
                if let error = q["last_error"]?.stringValue {
                    text += "last QC error: \(error) (\(q["failures"]?.intValue ?? 0) failure(s))\n"
                }
            }
            if let o = body["outbound"], o != .null {  // `nmbridge outbound` has the detail
                var parts: [String] = []
                if case .array(let destinations) = o["destinations"] ?? .null {
                    for d in destinations {
                        parts.append("\(d["destination"]?.stringValue ?? "?") \(d["waiting"]?.intValue ?? 0)\(d["last_error"]?.stringValue != nil && (d["failures"]?.intValue ?? 0) > 0 ? " (failing)" : "")")
                    }
                }
                text += "outbound: \(o["waiting"]?.intValue ?? 0) job(s) waiting\(parts.isEmpty ? "" : ": " + parts.joined(separator: ", "))\n"
            }
            if let s = body["shipper"], s != .null {
                let shipped = s["shipped_seq"]?.intValue.map(String.init) ?? "unknown"
                text += """
                    shipper:  \(s["server"]?.stringValue ?? "?") — \(s["connected"] == .bool(true) ? "connected" : "not connected")\(s["lagging"] == .bool(true) ? ", LAGGING" : "")
                              shipped through seq \(shipped), lag \(s["lag_events"]?.intValue ?? 0) event(s) / \(s["lag_s"]?.doubleValue ?? 0) s, \(s["events_shipped"]?.intValue ?? 0) shipped since start

                    """
                if let error = s["last_error"]?.stringValue {
                    text += "last shipper error: \(error) (\(s["failures"]?.intValue ?? 0) failure(s))\n"
                }
            }
            if let dicom = body["dicom"], dicom != .null {
                text += dicomStatusLines(dicom)
            }
            writeStdout(TerminalText.escape(text, keepLayout: true))
        }
    }
}

struct Query: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export journal history.", discussion: "Pages through GET /v1/events; output goes to stdout.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var filters: FilterOptions

    @Option(name: .long, help: "Only events after this seq.") var after: Int64?
    @Option(name: .long, help: "Only events before this time (RFC 3339, date, or age).") var until: String?
    @Option(name: .long, help: "At most this many events.") var limit: Int?
    @Option(name: .long, help: "Output format.") var format: QueryFormat = .jsonl

    func validate() throws {
        if let until, Timestamp.parseTimeSpec(until) == nil { throw ValidationError("--until \(until): not a time") }
        if let limit, limit < 1 { throw ValidationError("--limit must be positive") }
    }

    func run() async throws {
        try await reportingErrors {
            let client = try connection.client()
            var items = filters.queryItems
            if let until, let date = Timestamp.parseTimeSpec(until) { items.append(("until", Timestamp.format(date))) }
            // Without --after, the first page starts at the oldest kept event (no cursor to expire).
            var cursor = after
            var remaining = limit ?? Int.max
            if format == .csv { writeStdout("seq,time,node,device,driver,kind,severity,data,raw\n") }
            while remaining > 0 {
                let page = min(remaining, 5000)
                let body = try jsonBody(
                    try await client.get(apiPath("/v1/events", items + (cursor.map { [("after", "\($0)")] } ?? []) + [("limit", "\(page)")])))
                guard case .array(let events)? = body["events"], !events.isEmpty else { return }
                var out = ""
                for event in events {
                    if format == .jsonl {
                        out += envelopeText(event) + "\n"
                    } else {
                        let fields: [String] = [
                            "\(event["seq"]?.intValue ?? 0)", event["time"]?.stringValue ?? "", event["node"]?.stringValue ?? "",
                            event["device"]?.stringValue ?? "", event["driver"]?.stringValue ?? "", event["kind"]?.stringValue ?? "",
                            event["severity"]?.stringValue ?? "", (event["data"] ?? .null).jsonText, event["raw"]?.stringValue ?? "",
                        ]
                        out += fields.map(csvField).joined(separator: ",") + "\n"
                    }
                    cursor = event["seq"]?.intValue ?? cursor
                }
                writeStdout(out)
                remaining -= events.count
                if events.count < page { return }
            }
        }
    }

    func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with configuration files.", subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a configuration file; list every problem with its key and line (exit 2 if any).")

        @Argument(help: "The TOML file, e.g. /etc/nmbridge/nmbridge.toml.") var file: String

        func run() async throws {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                FileHandle.standardError.write(Data("nmbridge: cannot read \(file)\n".utf8))
                throw ExitCode(2)
            }
            let base = ((file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file) as NSString)
                .deletingLastPathComponent
            do {
                let config = try DaemonConfiguration.load(
                    text: text, file: file, drivers: .standard, sections: .standard, defaultNode: DaemonConfiguration.defaultNode,
                    baseDirectory: base)
                writeStdout(
                    "\(file): OK — node \(config.daemon.node), \(config.devices.count) device(s), journal \(config.journal.path), API \(config.api.socketPath)\n")
            } catch {
                FileHandle.standardError.write(Data("\(error.description)\n".utf8))
                throw ExitCode(2)
            }
        }
    }
}

struct Kinds: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the registered event kinds (docs/events.md with --markdown).")

    @Flag(name: .long, help: "Print docs/events.md.") var markdown = false

    func run() async throws {
        let registry = EventKindRegistry.standard
        if markdown { return writeStdout(registry.markdown()) }
        var rows = [["KIND", "SEVERITY", "FIELDS"]]
        for kind in registry.kinds {
            rows.append([kind.name, kind.defaultSeverity.rawValue, kind.fields.map { $0.name + ($0.unit.map { " [\($0)]" } ?? "") }.joined(separator: ", ")])
        }
        writeStdout(table(rows))
    }
}

func table(_ rows: [[String]]) -> String {
    guard let columns = rows.map(\.count).max() else { return "" }
    var widths = [Int](repeating: 0, count: columns)
    // Cells hold what devices and peers said: control characters are shown, not obeyed.
    let rows = rows.map { $0.map { TerminalText.escape($0) } }
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    return rows.map { row in
        row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }.joined(separator: "\n") + "\n"
}
