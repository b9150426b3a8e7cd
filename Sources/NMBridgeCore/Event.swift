import Foundation

/// How much attention an event deserves.
public enum Severity: String, Sendable, Codable, CaseIterable, Comparable {
    case debug, info, notice, warning, error, critical

    private var rank: Int { Severity.allCases.firstIndex(of: self)! }
    public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
}

/// An event as a driver or service produces it, before the journal gives it a place.
///
/// The journal adds `seq`, `journal` and `node` when the append commits.
public struct EventDraft: Sendable, Equatable {
    /// When it happened (the receive time for device data), UTC.
    public var time: Date
    /// The configured device id, or `nil` for daemon-wide events.
    public var device: String?
    /// The driver name (`capintec-crc15r`, `script`, …), or `nil` for daemon events.
    public var driver: String?
    /// A registered kind (see `EventKindRegistry`), e.g. `dosecal.measurement`.
    public var kind: String
    /// `nil`: the kind's default severity, which the journal fills in from its registry.
    public var severity: Severity?
    /// The payload; always a JSON object.
    public var data: [String: JSONValue]
    /// The bytes the event was decoded from, for provenance.
    public var raw: [UInt8]?

    public init(
        time: Date = Date(), device: String? = nil, driver: String? = nil, kind: String,
        severity: Severity? = nil, data: [String: JSONValue] = [:], raw: [UInt8]? = nil
    ) {
        self.time = time
        self.device = device
        self.driver = driver
        self.kind = kind
        self.severity = severity
        self.data = data
        self.raw = raw
    }
}

/// A journaled event: the envelope every consumer sees (docs/events.md).
public struct Event: Sendable, Equatable {
    /// Position in the journal: strictly increasing, no gaps within one journal id.
    public var seq: Int64
    /// The journal's id. A different id means a different history (the journal was reset).
    public var journal: UUID
    public var time: Date
    /// The node (host) that journaled the event.
    public var node: String
    public var device: String?
    public var driver: String?
    public var kind: String
    public var severity: Severity
    /// `data` as compact JSON text with sorted keys, exactly as journaled. Kept as text so
    /// that serving and shipping events never re-encodes them.
    public var dataJSON: String
    public var raw: [UInt8]?

    public init(
        seq: Int64, journal: UUID, time: Date, node: String, device: String?, driver: String?,
        kind: String, severity: Severity, dataJSON: String, raw: [UInt8]?
    ) {
        self.seq = seq
        self.journal = journal
        self.time = time
        self.node = node
        self.device = device
        self.driver = driver
        self.kind = kind
        self.severity = severity
        self.dataJSON = dataJSON
        self.raw = raw
    }

    /// The payload, parsed from `dataJSON` (empty if it is not a JSON object).
    public var data: [String: JSONValue] {
        (try? JSONValue.parse(dataJSON))?.objectValue ?? [:]
    }
}

extension Event {
    /// The envelope as one line of compact JSON, fields in the documented order.
    public var jsonText: String {
        var out = "{\"seq\":"
        out += String(seq)
        out += ",\"journal\":\""
        out += journal.uuidString.lowercased()
        out += "\",\"time\":\""
        out += Timestamp.format(time)
        out += "\",\"node\":"
        JSONValue.writeString(node, to: &out)
        out += ",\"device\":"
        if let device { JSONValue.writeString(device, to: &out) } else { out += "null" }
        out += ",\"driver\":"
        if let driver { JSONValue.writeString(driver, to: &out) } else { out += "null" }
        out += ",\"kind\":"
        JSONValue.writeString(kind, to: &out)
        out += ",\"severity\":\""
        out += severity.rawValue
        out += "\",\"data\":"
        out += dataJSON
        out += ",\"raw\":"
        if let raw { out += "\"" + Hex.encode(raw) + "\"" } else { out += "null" }
        out += "}"
        return out
    }

    /// Parses an envelope produced by `jsonText` (for clients and tests).
    public init(json text: String) throws {
        let value = try JSONValue.parse(text)
        func field(_ name: String) throws -> JSONValue {
            guard let v = value[name] else { throw EnvelopeError(message: "envelope has no \"\(name)\" field") }
            return v
        }
        guard let seq = try field("seq").intValue else { throw EnvelopeError(message: "\"seq\" is not an integer") }
        guard let journalText = try field("journal").stringValue, let journal = UUID(uuidString: journalText) else {
            throw EnvelopeError(message: "\"journal\" is not a UUID")
        }
        guard let timeText = try field("time").stringValue, let time = Timestamp.parse(timeText) else {
            throw EnvelopeError(message: "\"time\" is not an RFC 3339 UTC timestamp")
        }
        guard let kind = try field("kind").stringValue else { throw EnvelopeError(message: "\"kind\" is not a string") }
        let severity = (try field("severity").stringValue).flatMap(Severity.init(rawValue:)) ?? .info
        self.init(
            seq: seq, journal: journal, time: time, node: try field("node").stringValue ?? "",
            device: value["device"]?.stringValue, driver: value["driver"]?.stringValue, kind: kind,
            severity: severity, dataJSON: JSONValue.object(value["data"]?.objectValue ?? [:]).jsonText,
            raw: value["raw"]?.stringValue.flatMap(Hex.decode))
    }
}

/// A malformed event envelope.
public struct EnvelopeError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { "malformed event envelope: \(message)" }
}

/// Lower-case hexadecimal, as used for `raw`.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex text; `nil` when the length is odd or a character is not a hex digit.
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
