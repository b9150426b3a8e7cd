import Foundation
import Synchronization

/// The QC service's progress, for `/metrics` and `/v1/health` (`nmbridge status`).
public struct QCSnapshot: Sendable {
    /// The journal seq through which every input has been judged.
    public var judgedSeq: Int64 = 0
    /// Findings journaled since the daemon started.
    public var findings: Int64 = 0
    /// Times the service failed and started over.
    public var failures: Int64 = 0
    public var lastError: String?
    public var lastErrorTime: Date?
}

/// Shared, thread-safe holder of a `QCSnapshot`.
public final class QCStatus: Sendable {
    private let state = Mutex(QCSnapshot())

    public init() {}

    public var snapshot: QCSnapshot { state.withLock { $0 } }

    func update(_ body: (inout QCSnapshot) -> Void) {
        state.withLock { body(&$0) }
    }
}
