/// At most one protocol error per interval; the next one admitted reports how many were
/// suppressed in between.
public struct ProtocolErrorLimiter: Sendable {
    public let interval: Duration
    private var lastAdmitted: ContinuousClock.Instant?
    private var suppressed = 0

    public init(interval: Duration) {
        self.interval = interval
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
