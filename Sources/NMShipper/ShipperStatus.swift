import Foundation
import Synchronization

/// The shipper's progress, for `/metrics`, `/v1/health` (`nmbridge status`) and retention.
public struct ShipperSnapshot: Sendable {
    /// The server, without password.
    public var server: String
    public var connected = false
    /// The last seq committed to PostgreSQL; `nil` until the server has been asked.
    public var shippedSeq: Int64?
    /// Events journaled but not shipped (journal's last seq − `shippedSeq`).
    public var lagEvents: Int64 = 0
    /// Age of the oldest unshipped event, 0 when none waits.
    public var lagSeconds: Double = 0
    /// A `shipper.lagging` episode is open.
    public var lagging = false
    public var eventsShipped: Int64 = 0
    /// Rows the server already had (duplicate deliveries that had no effect).
    public var duplicatesIgnored: Int64 = 0
    public var batches: Int64 = 0
    public var failures: Int64 = 0
    public var lastError: String?
    public var lastErrorTime: Date?
    public var lastShipTime: Date?
}

/// Shared, thread-safe holder of a `ShipperSnapshot`.
public final class ShipperStatus: Sendable {
    private let state: Mutex<ShipperSnapshot>

    public init(server: String) {
        state = Mutex(ShipperSnapshot(server: server))
    }

    public var snapshot: ShipperSnapshot { state.withLock { $0 } }

    /// The seq through which retention may delete events (0 while nothing is known to be shipped).
    public var retentionLimit: Int64 { state.withLock { $0.shippedSeq ?? 0 } }

    func update(_ body: (inout ShipperSnapshot) -> Void) {
        state.withLock { body(&$0) }
    }
}
