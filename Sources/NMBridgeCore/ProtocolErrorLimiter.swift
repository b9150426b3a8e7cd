/// At most one protocol error per interval; the next one admitted reports how many were
/// suppressed in between.
public struct ProtocolErrorLimiter: Sendable {
    public let interval: Duration
    private var lastAdmitted: ContinuousClock.Instant?
    private var suppressed = 0

    public init(interval: Duration) {
        self.interval = interval
    }

    /// The driver setting that sets the interval.
    public static let configKey = DriverConfigKey(
        "protocol_error_interval_s", "number", "At most one `device.protocol_error` per this many seconds (default 60).")

    /// The interval `configKey` asks for (problems go to `reader`).
    public static func interval(from reader: ConfigTableReader) -> Duration {
        .milliseconds(Int64((reader.double("protocol_error_interval_s", in: 0...86_400) ?? 60) * 1000))
    }

    /// The `device.protocol_error` data for `message`, with how many were suppressed before
    /// it; nil to suppress this one.
    public mutating func admit(_ message: String, now: ContinuousClock.Instant) -> [String: JSONValue]? {
        guard let suppressed = admit(now: now) else { return nil }
        var data: [String: JSONValue] = ["error": .string(message)]
        if suppressed > 0 { data["suppressed"] = .int(Int64(suppressed)) }
        return data
    }

    /// The number suppressed since the last admitted error, or nil to suppress this one.
    public mutating func admit(now: ContinuousClock.Instant) -> Int? {
        if let last = lastAdmitted, last.duration(to: now) < interval {
            suppressed += 1
            return nil
        }
        lastAdmitted = now
        defer { suppressed = 0 }
        return suppressed
    }
}
