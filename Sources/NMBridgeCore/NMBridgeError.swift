/// An error that names the thing it is about (device id, file, key and line, peer).
///
/// `code` is an extensible set of stable identifiers that programs may switch on and the
/// API returns in its JSON error bodies; `message` is for people; `underlying` keeps the
/// original cause.
public struct NMBridgeError: Error, Sendable, CustomStringConvertible {
    /// A stable, machine-readable error identifier.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let invalidConfiguration = Code(rawValue: "invalid_configuration")
        public static let journalUnusable = Code(rawValue: "journal_unusable")
        public static let journalWriteFailed = Code(rawValue: "journal_write_failed")
        public static let cursorExpired = Code(rawValue: "cursor_expired")
        public static let lagged = Code(rawValue: "lagged")
        public static let unknownEventKind = Code(rawValue: "unknown_event_kind")
        public static let driverFailed = Code(rawValue: "driver_failed")
        public static let scriptInvalid = Code(rawValue: "script_invalid")
        /// A serial port, USB device or udev call failed (open, configure, read, write).
        public static let transportFailed = Code(rawValue: "transport_failed")
    }

    public var code: Code
    public var message: String
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        guard let underlying else { return message }
        return "\(message): \(underlying)"
    }
}
