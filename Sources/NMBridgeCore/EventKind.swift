/// The type of one field in an event's `data`.
public enum FieldType: String, Sendable {
    case string, integer, number, boolean, object, array, timestamp
}

/// One documented field of an event kind's `data`.
public struct EventField: Sendable {
    public var name: String
    public var type: FieldType
    /// SI unit when the field is a quantity (also part of the name: `activity_bq`).
    public var unit: String?
    public var required: Bool
    public var summary: String

    public init(_ name: String, _ type: FieldType, unit: String? = nil, required: Bool = true, _ summary: String) {
        self.name = name
        self.type = type
        self.unit = unit
        self.required = required
        self.summary = summary
    }
}

/// A registered event kind: its name, default severity and data fields.
public struct EventKind: Sendable {
    public var name: String
    public var defaultSeverity: Severity
    public var summary: String
    public var fields: [EventField]

    public init(_ name: String, severity: Severity = .info, _ summary: String, fields: [EventField] = []) {
        self.name = name
        self.defaultSeverity = severity
        self.summary = summary
        self.fields = fields
    }
}

/// The registry of event kinds. A kind is registered with its fields before it is used;
/// `experimental.*` is the escape hatch for kinds still being designed.
///
/// `docs/events.md` is rendered from this registry (`nmbridge kinds --markdown`) and a
/// test checks that the file matches, so the documentation cannot drift.
public struct EventKindRegistry: Sendable {
    public private(set) var kinds: [EventKind]
    private var index: [String: Int]

    public init(_ kinds: [EventKind]) {
        self.kinds = kinds
        self.index = Dictionary(kinds.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The kind registered under `name`.
    public func kind(named name: String) -> EventKind? {
        index[name].map { kinds[$0] }
    }

    /// Whether an event of this kind may be journaled.
    public func accepts(_ name: String) -> Bool {
        if index[name] != nil { return true }
        // Kinds end up in SSE `event:` lines and SQL GLOBs: plain characters only.
        return name.hasPrefix("experimental.") && name.utf8.count > "experimental.".utf8.count && name.utf8.count <= 100
            && name.utf8.allSatisfy { c in
                (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x5F || c == 0x2D
            }
    }

    /// Problems with `data` for `kind`: a missing required field or a field of the wrong
    /// type. Empty when the event is well formed. Extra fields are allowed.
    public func problems(kind name: String, data: [String: JSONValue]) -> [String] {
        guard let kind = kind(named: name) else {
            return accepts(name) ? [] : ["event kind \"\(name)\" is not registered (see docs/events.md)"]
        }
        var problems: [String] = []
        for field in kind.fields {
            guard let value = data[field.name], value != .null else {
                if field.required { problems.append("\(name): missing field \"\(field.name)\"") }
                continue
            }
            let ok: Bool =
                switch field.type {
                case .string: value.stringValue != nil
                case .timestamp: value.stringValue.flatMap(Timestamp.parse) != nil
                case .integer: value.intValue != nil
                case .number: value.doubleValue != nil
                case .boolean: if case .bool = value { true } else { false }
                case .object: value.objectValue != nil
                case .array: if case .array = value { true } else { false }
                }
            if !ok {
                problems.append("\(name): field \"\(field.name)\" should be \(field.type.rawValue), got \(value.typeName)")
            }
        }
        return problems
    }
}

extension EventKindRegistry {
    /// The kinds of the daemon itself, its devices' links and its driver supervisor:
    /// `daemon.*`, `device.*`, `driver.*`. Every other kind is declared by the module that
    /// produces it (`journalKinds`, `dosecalKinds`, `dicomKinds`, …); `NMCatalog` assembles
    /// them into `EventKindRegistry.standard`.
    public static let coreKinds: [EventKind] = [
        // daemon.*
        EventKind(
            "daemon.started", "The daemon started and its journal is open.",
            fields: [
                EventField("version", .string, "nmbridge version."),
                EventField("pid", .integer, "Process id."),
                EventField("devices", .integer, "Number of configured devices."),
                EventField("demo", .boolean, "Whether the daemon runs in demo mode."),
            ]),
        EventKind(
            "daemon.stopping", "The daemon is shutting down (SIGTERM or SIGINT).",
            fields: [EventField("reason", .string, "Why it stops, e.g. \"SIGTERM\".")]),
        // device.*
        EventKind(
            "device.connected", "The link to a device is up.",
            fields: [
                EventField("reason", .string, "What brought it up (opened, reconnected, plugged in)."),
                EventField("identity", .object, required: false, "Transport identity: path, USB vendor/product/serial, peer address."),
            ]),
        EventKind(
            "device.disconnected", severity: .warning, "The link to a device is down.",
            fields: [EventField("reason", .string, "Why: unplugged, I/O error, driver crashed, shutdown.")]),
        EventKind(
            "device.stale", severity: .warning,
            "A device has produced nothing for longer than its `stale_after_s` (judged outside the driver).",
            fields: [
                EventField("silent_s", .number, unit: "s", "Seconds since the device was last heard from."),
                EventField("stale_after_s", .number, unit: "s", "The configured limit."),
                EventField("last_seen", .timestamp, required: false, "When it was last heard from (absent if never)."),
            ]),
        EventKind(
            "device.recovered", "A stale device is heard from again.",
            fields: [EventField("stale_s", .number, unit: "s", "How long it was stale.")]),
        EventKind(
            "device.usb_reset", severity: .warning,
            "The driver reset a USB-serial adapter that stopped answering while its port stayed open (a wedged adapter).",
            fields: [
                EventField("reason", .string, "Why, e.g. \"5 consecutive reply timeouts\"."),
                EventField(
                    "usb", .object,
                    "The adapter, the fields known: `port_path` (bus-port path, e.g. \"1-2.3\"), `vendor_id`, `product_id`, `serial_number`, `bus`, `address`; `syspath` of the tty when it has no USB device."),
                EventField("result", .string, "\"reset\" or \"failed\"."),
                EventField("error", .string, required: false, "Why it failed, with libusb's error name (e.g. `LIBUSB_ERROR_ACCESS`)."),
            ]),
        EventKind(
            "device.protocol_error", severity: .warning,
            "Bytes from a device that could not be understood (rate-limited per device).",
            fields: [
                EventField("error", .string, "What was wrong: checksum, unparseable line, impossible value."),
                EventField("bytes_hex", .string, required: false, "The offending bytes in hex."),
                EventField("suppressed", .integer, required: false, "Similar errors not journaled since the last one."),
            ]),
        // driver.*
        EventKind(
            "driver.crashed", severity: .error,
            "A driver threw or returned unexpectedly; the supervisor will restart it.",
            fields: [
                EventField("error", .string, "The error the driver reported."),
                EventField("attempt", .integer, "Consecutive crashes, starting at 1."),
                EventField("restart_in_s", .number, unit: "s", "Back-off before the restart (capped exponential)."),
            ]),
        EventKind(
            "driver.restarted", "The supervisor restarted a crashed driver.",
            fields: [
                EventField("attempt", .integer, "Consecutive crashes before this restart."),
                EventField("down_s", .number, unit: "s", "Seconds between the crash and the restart."),
            ]),
    ]
}

extension EventKindRegistry {
    /// The registry as the Markdown of `docs/events.md`.
    public func markdown() -> String {
        var out = """
            # Event kinds

            <!-- Generated by `nmbridge kinds --markdown` from EventKindRegistry.standard.
                 A test fails when this file and the registry disagree. Do not edit by hand. -->

            Every event is one JSON object (the *envelope*):

            | field | type | meaning |
            |---|---|---|
            | `seq` | integer | Position in the journal: strictly increasing, no gaps within one journal id. Use it as your cursor. |
            | `journal` | string (UUID) | Journal id, fixed when the journal is created. A different id is a different history: reset your cursor. |
            | `time` | string | When it happened, RFC 3339 UTC with microseconds (`2026-11-29T07:00:00.123456Z`). |
            | `node` | string | The host that journaled it (`[daemon] node`). |
            | `device` | string or null | The configured device id; null for daemon-wide events. |
            | `driver` | string or null | The driver that produced it. |
            | `kind` | string | One of the kinds below, or `experimental.*`. |
            | `severity` | string | `debug`, `info`, `notice`, `warning`, `error` or `critical`. |
            | `data` | object | Kind-specific fields below. Quantities carry their SI unit in the name (`activity_bq`, `angle_deg`, `position_mm`); the device's own text goes alongside. Fields may be added; consumers ignore unknown ones. |
            | `raw` | string or null | The bytes the event was decoded from, lower-case hex. |

            Kinds named `experimental.*` may be journaled without registration and may change at any time.

            """
        var family = ""
        for kind in kinds {
            let prefix = String(kind.name.split(separator: ".").first ?? "")
            if prefix != family {
                family = prefix
                out += "\n## \(family).*\n"
            }
            out += "\n### `\(kind.name)`\n\n\(kind.summary) Default severity: `\(kind.defaultSeverity.rawValue)`.\n"
            if kind.fields.isEmpty {
                out += "\nNo data fields.\n"
                continue
            }
            out += "\n| field | type | unit | required | meaning |\n|---|---|---|---|---|\n"
            for f in kind.fields {
                out += "| `\(f.name)` | \(f.type.rawValue) | \(f.unit ?? "") | \(f.required ? "yes" : "no") | \(f.summary) |\n"
            }
        }
        return out
    }
}
