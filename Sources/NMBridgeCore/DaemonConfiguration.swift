import Foundation

/// The daemon's configuration (`/etc/nmbridge/nmbridge.toml`), validated.
///
/// docs/configuration.md documents every key. Load with `DaemonConfiguration.load(text:file:drivers:sections:defaultNode:)`,
/// which reports every problem at once.
public struct DaemonConfiguration: Sendable {
    public struct Daemon: Sendable {
        /// The node name in every event. Default: the host name.
        public var node: String
        /// Where the journal and received files live.
        public var stateDirectory: String
        /// IANA zone for "per day" rules; `nil` = the system zone.
        public var timeZone: String?

        public init(node: String, stateDirectory: String, timeZone: String? = nil) {
            self.node = node
            self.stateDirectory = stateDirectory
            self.timeZone = timeZone
        }
    }

    public enum SyncMode: String, Sendable {
        /// fsync at every commit: an acknowledged event survives power loss.
        case full
        /// fsync at checkpoints only: survives a crash of the daemon, not of the machine.
        case normal
    }

    public struct Journal: Sendable {
        public init(path: String) { self.path = path }
        public var path: String
        public var sync: SyncMode = .full
        /// Delete events older than this; `nil` = keep forever.
        public var retentionDays: Double? = 365
        /// Delete the oldest events when the journal grows beyond this; `nil` = no limit.
        public var maxSizeMB: Double? = 4096
        /// `[[journal.retention]]`: per-kind retention (JournalRetentionConfiguration.swift).
        public var retentionRules: [RetentionRule] = []
    }

    public struct API: Sendable {
        public init(socketPath: String) { self.socketPath = socketPath }
        public var socketPath: String
        /// Octal file mode of the socket (0660: owner and group `nmbridge`).
        public var socketMode: Int = 0o660
        public var tcpHost: String?
        public var tcpPort: Int?
        /// File holding the bearer token; required with `tcp`.
        public var tokenFile: String?
        /// Events buffered per live subscriber before it is cut off as lagged.
        public var subscriberBuffer: Int = 4096

        /// Shortest bearer token accepted.
        public static let minimumTokenLength = 16

        /// The bearer token in `path` (surrounding white space removed), or what is wrong
        /// with the file. The configuration loader and the daemon both read it this way.
        public static func token(path: String) -> (token: String?, problem: String?) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                return (nil, "cannot read \(path)")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard token.count >= minimumTokenLength else {
                return (nil, "the token in \(path) has \(token.count) characters; it must have at least \(minimumTokenLength)")
            }
            return (token, nil)
        }
    }

    public struct Supervisor: Sendable {
        public init() {}
        /// First restart delay after a driver crash; doubles per consecutive crash.
        public var initialBackoff: Double = 1
        /// Cap of the restart delay.
        public var maxBackoff: Double = 60
        /// A driver that ran this long without crashing starts again at `initialBackoff`.
        public var resetAfter: Double = 60
    }

    public struct Device: Sendable {
        public var id: String
        public var driver: String
        /// `device.stale` after this many seconds without a word; `nil` = never.
        public var staleAfter: Double?
        public var enabled: Bool
        /// The driver's validated settings (its `Driver.Settings`).
        public var settings: any Sendable
        /// Line of the `[[device]]` header.
        public var line: Int?
        /// `instrument_model`, `instrument_serial`: the instrument's identity on its records (docs/qc.md).
        public var instrumentModel: String?
        public var instrumentSerial: String?

        public init(id: String, driver: String, staleAfter: Double? = nil, enabled: Bool = true, settings: any Sendable, line: Int? = nil) {
            self.id = id
            self.driver = driver
            self.staleAfter = staleAfter
            self.enabled = enabled
            self.settings = settings
            self.line = line
        }
    }

    public var daemon: Daemon
    public var journal: Journal
    public var api: API
    public var supervisor: Supervisor
    public var devices: [Device]
    /// The subsystems' sections (`[dicom]`, `[qc]`, `[shipper]`…), by type; each module
    /// that owns one also gives it a property (`configuration.dicom`).
    public var sections = ConfigurationSections()
    /// Whether this configuration was made by `--demo`.
    public var demo: Bool = false

    /// The section of type `S`, when its table is present (and does not turn it off).
    public subscript<S: ConfigurationSection>(_ type: S.Type) -> S? {
        get { sections[type] }
        set { sections[type] = newValue }
    }

    public init(
        daemon: Daemon, journal: Journal, api: API, supervisor: Supervisor = Supervisor(), devices: [Device],
        demo: Bool = false
    ) {
        self.daemon = daemon
        self.journal = journal
        self.api = api
        self.supervisor = supervisor
        self.devices = devices
        self.demo = demo
    }

    /// Parses and validates TOML text. Throws `ConfigurationError` listing every problem
    /// (syntax errors, unknown keys, bad values, unknown drivers), each with key and line.
    /// `sections` are the subsystems' tables this build reads (`.standard`, in `NMCatalog`);
    /// any other top-level table is an unknown key.
    public static func load(
        text: String, file: String?, drivers: DriverCatalog, sections: ConfigurationSectionCatalog = .none,
        defaultNode: String, baseDirectory: String? = nil
    ) throws(ConfigurationError) -> DaemonConfiguration {
        let reader = try ConfigTableReader.parse(text: text, file: file, baseDirectory: baseDirectory)
        reader.eventKinds = drivers.eventKinds
        let resolve = reader.resolvePath

        // [daemon]
        let daemonTable = reader.table("daemon")
        let stateDirectory = resolve(daemonTable?.string("state_dir") ?? "/var/lib/nmbridge")
        var node = daemonTable?.string("node") ?? defaultNode
        if node.isEmpty || node.count > 253 || node.contains(where: { $0.isWhitespace || $0.isNewline }) {
            daemonTable?.problem("node", "must be a non-empty name without spaces, at most 253 characters")
            node = defaultNode
        }
        let timeZone = daemonTable?.string("time_zone")
        if let timeZone, TimeZone(identifier: timeZone) == nil {
            daemonTable?.problem("time_zone", "\"\(timeZone)\" is not an IANA time zone such as \"Europe/Berlin\"")
        }
        daemonTable?.reportUnknownKeys()

        // [journal]
        var journal = Journal(path: stateDirectory + "/journal.db")
        if let table = reader.table("journal") {
            if let path = table.string("path") { journal.path = resolve(path) }
            if let sync = table.choice("sync", ["full", "normal"]) { journal.sync = SyncMode(rawValue: sync)! }
            if table.has("retention_days") {
                journal.retentionDays = table.double("retention_days", in: 0...100_000).flatMap { $0 == 0 ? nil : $0 }
            }
            if table.has("max_size_mb") {
                journal.maxSizeMB = table.double("max_size_mb", in: 0...16_000_000).flatMap { $0 == 0 ? nil : $0 }
            }
            journal.retentionRules = Journal.readRetentionRules(table)
            table.reportUnknownKeys()
        }

        // [api]
        var api = API(socketPath: "/run/nmbridge/api.sock")
        if let table = reader.table("api") {
            if let socket = table.string("socket") {
                api.socketPath = resolve(socket)
                // sockaddr_un holds 108 bytes including the terminating NUL.
                if api.socketPath.utf8.count > 107 {
                    table.problem("socket", "\"\(api.socketPath)\" is \(api.socketPath.utf8.count) bytes; a unix socket path can have at most 107")
                }
            }
            if let mode = table.string("socket_mode") {
                if let value = Int(mode, radix: 8), (0...0o777).contains(value) {
                    api.socketMode = value
                } else {
                    table.problem("socket_mode", "\"\(mode)\" is not an octal file mode such as \"0660\"")
                }
            }
            if let tcp = table.string("tcp") {
                if let (host, port) = parseHostPort(tcp) {
                    api.tcpHost = host
                    api.tcpPort = port
                } else {
                    table.problem("tcp", "\"\(tcp)\" is not HOST:PORT (e.g. \"127.0.0.1:8470\")")
                }
            }
            api.tokenFile = table.string("token_file").map(resolve)
            if table.has("tcp"), api.tokenFile == nil {
                table.problem("tcp", "the TCP API requires token_file (a file holding the bearer token)")
            }
            // The daemon reads the token at start; check it here so that `config check`
            // finds what would stop the daemon, before anything touches the state directory.
            if let path = api.tokenFile {
                if let problem = API.token(path: path).problem { table.problem("token_file", problem) }
            }
            if let buffer = table.int("subscriber_buffer", in: 16...1_000_000) { api.subscriberBuffer = Int(buffer) }
            table.reportUnknownKeys()
        }

        // [supervisor]
        var supervisor = Supervisor()
        if let table = reader.table("supervisor") {
            if let v = table.double("initial_backoff_s", in: 0.001...3600) { supervisor.initialBackoff = v }
            if let v = table.double("max_backoff_s", in: 0.001...86_400) { supervisor.maxBackoff = v }
            if let v = table.double("reset_after_s", in: 0...86_400) { supervisor.resetAfter = v }
            if supervisor.maxBackoff < supervisor.initialBackoff {
                table.problem("max_backoff_s", "must not be smaller than initial_backoff_s")
            }
            table.reportUnknownKeys()
        }

        // [[device]]
        var devices: [Device] = []
        var seenIDs: [String: Int] = [:]
        let deviceReaders = reader.tables("device") { index, table in
            if let id = table["id"]?.string { return "device[\(id)]" }
            return "device[#\(index + 1)]"
        }
        for table in deviceReaders {
            let id = table.string("id", required: true)
            if let id {
                if !isValidDeviceID(id) {
                    table.problem("id", "\"\(id)\" must be 1–64 characters of a–z, A–Z, 0–9, '-', '_' or '.'")
                } else if let previous = seenIDs[id] {
                    table.problem("id", "duplicate device id \"\(id)\" (first defined on line \(previous))")
                } else {
                    seenIDs[id] = table.line(of: "id") ?? 0
                }
            }
            let enabled = table.bool("enabled") ?? true
            let staleAfter = table.double("stale_after_s", in: 0...86_400 * 30)
            guard let driverName = table.string("driver", required: true) else {
                table.reportUnknownKeys()
                continue
            }
            guard let entry = drivers.entries[driverName] else {
                table.problem(
                    "driver", "unknown driver \"\(driverName)\"; known drivers: \(drivers.names.joined(separator: ", "))")
                continue
            }
            let settings = entry.validate(table)
            let (model, serialNumber) = (table.string("instrument_model"), table.string("instrument_serial"))
            table.reportUnknownKeys(known: entry.manifest.configKeys.map(\.name))
            if let id, let settings {
                var device = Device(
                    id: id, driver: driverName,
                    staleAfter: staleAfter.map { $0 == 0 ? nil : $0 } ?? entry.defaultStaleAfter(settings),
                    enabled: enabled, settings: settings, line: table.table.location.line)
                (device.instrumentModel, device.instrumentSerial) = (model, serialNumber)
                devices.append(device)
            }
        }

        // The subsystems' sections ([dicom], [qc], [shipper]…), each read by its module.
        let context = ConfigurationContext(stateDirectory: stateDirectory, deviceIDs: Set(seenIDs.keys), root: reader)
        var parsed = ConfigurationSections()
        for entry in sections.entries {
            guard let table = reader.table(entry.key) else { continue }
            if let value = entry.read(table, context) { parsed.store(value, for: entry) }
            table.reportUnknownKeys()
        }

        reader.reportUnknownKeys()
        if !reader.problems.isEmpty {
            throw ConfigurationError(problems: reader.problems.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
        }
        var configuration = DaemonConfiguration(
            daemon: Daemon(node: node, stateDirectory: stateDirectory, timeZone: timeZone),
            journal: journal, api: api, supervisor: supervisor, devices: devices)
        configuration.sections = parsed
        return configuration
    }

    /// Device ids end up in file names, metrics labels and URLs: keep them plain.
    public static func isValidDeviceID(_ id: String) -> Bool {
        guard (1...64).contains(id.utf8.count) else { return false }
        return id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
                || c == 0x2E
        }
    }

    /// `host:port`, `[v6]:port`; `nil` if malformed.
    public static func parseHostPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        guard let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }
}
