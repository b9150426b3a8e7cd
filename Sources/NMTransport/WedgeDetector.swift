/// Decides when a polled USB-serial adapter is wedged and worth a USB reset
/// (``USBDevice/resetAdapter(of:reason:)``).
///
/// A wedged adapter keeps its tty open and accepts writes, but the device's replies
/// never arrive: every poll times out and no I/O error ever comes to make the driver
/// reopen the port. So: after `threshold` consecutive reply timeouts on a port that
/// stayed open, ``replyTimedOut(at:)`` answers ``Verdict/resetNow(consecutiveTimeouts:)``
/// once; the next reset comes no sooner than `cooldown` after it (a device that is
/// simply switched off must not be reset every few seconds), and only if the timeouts
/// still continue. Any valid reply ends the streak; so does closing the port (an I/O
/// error, an unplug: the driver reopens, and the timeouts of the old port say nothing
/// about the new one). The cooldown outlives both: it is about the adapter.
///
/// Pure and synchronous: the driver owns one per device and feeds it what happened.
/// Times are `ContinuousClock` instants, as in the driver's other rate limits.
public struct WedgeDetector: Sendable, Equatable {
    /// Consecutive reply timeouts that make a wedge (at least 1).
    public let threshold: Int
    /// The least time between two resets.
    public let cooldown: Duration
    /// Reply timeouts since the last valid reply or port (re)open.
    public private(set) var consecutiveTimeouts = 0
    /// When ``replyTimedOut(at:)`` last answered `resetNow`.
    public private(set) var lastReset: ContinuousClock.Instant?

    /// Default for `threshold`.
    public static let defaultThreshold = 5
    /// Default for `cooldown`: five minutes.
    public static let defaultCooldown = Duration.seconds(300)

    /// What to do after a reply timeout.
    public enum Verdict: Sendable, Equatable {
        /// Keep polling.
        case keepPolling
        /// Reset the adapter now; `consecutiveTimeouts` is the streak that made the
        /// decision (for the event's `reason`, see ``WedgeDetector/reason(consecutiveTimeouts:)``).
        case resetNow(consecutiveTimeouts: Int)
    }

    /// `threshold` below 1 counts as 1; a negative `cooldown` as zero.
    public init(threshold: Int = WedgeDetector.defaultThreshold, cooldown: Duration = WedgeDetector.defaultCooldown) {
        self.threshold = max(1, threshold)
        self.cooldown = max(.zero, cooldown)
    }

    /// A poll got no reply within its timeout while the port stayed open.
    public mutating func replyTimedOut(at now: ContinuousClock.Instant) -> Verdict {
        consecutiveTimeouts += 1
        guard consecutiveTimeouts >= threshold else { return .keepPolling }
        if let lastReset, lastReset.duration(to: now) < cooldown { return .keepPolling }
        lastReset = now
        let streak = consecutiveTimeouts
        // The reset ends this streak: the next reset needs `threshold` fresh timeouts
        // (and the cooldown), whatever the device did before.
        consecutiveTimeouts = 0
        return .resetNow(consecutiveTimeouts: streak)
    }

    /// A valid reply arrived (anything the protocol decoder accepted, including "no
    /// reading"): the adapter works.
    public mutating func replyReceived() {
        consecutiveTimeouts = 0
    }

    /// The port was closed (I/O error, unplug, reset, shutdown). Timeouts are counted
    /// afresh on the reopened port; the cooldown stays.
    public mutating func portClosed() {
        consecutiveTimeouts = 0
    }

    /// The `reason` to journal with `device.usb_reset`, e.g. `5 consecutive reply timeouts`.
    public static func reason(consecutiveTimeouts: Int) -> String {
        consecutiveTimeouts == 1 ? "1 consecutive reply timeout" : "\(consecutiveTimeouts) consecutive reply timeouts"
    }
}
