import Foundation
import NMBridgeCore
import Synchronization

/// The receiver's spool and materializer as `/v1/health`, `/metrics` and `nmbridge status`
/// show them. Made before the receiver (the API is set up first) and attached to it.
public final class DicomReceiverStatus: Sendable {
    public struct Snapshot: Sendable, Equatable {
        /// Whether the spool is in use (`spool_mb` > 0 and recovered at start).
        public var spoolEnabled: Bool
        public var spoolRecords: Int
        public var spoolBytes: Int
        public var spoolCapacityBytes: Int
        public var spoolSegments: Int
        /// Transfers that waited for spool space, and those stored without the spool.
        public var spoolWaits: Int
        public var spoolBypassed: Int
        /// Data syncs of the spool and the records they covered (group sync: records per sync).
        public var spoolSyncs: Int
        public var spoolSyncedRecords: Int
        /// Items waiting for the materializer and the age of the oldest waiting instance.
        public var materializerPending: Int
        public var materializerLagSeconds: Double
        public var materialized: Int
        /// Why instances cannot be put in place now (a full disk), if so.
        public var materializerFault: String?
        public var openAssociations: Int
        /// Instances answered since start, and the time they took, summed (seconds): from
        /// the C-STORE request to the last dataset byte, from there to the response, and
        /// in the spool's data syncs.
        public var answered: Int
        public var receiveSeconds: Double
        public var answerSeconds: Double
        public var spoolSyncSeconds: Double
    }

    private let context = Mutex<ReceiverContext?>(nil)

    public init() {}

    func attach(_ shared: ReceiverContext) {
        context.withLock { $0 = shared }
    }

    /// Nil before the receiver exists.
    public var snapshot: Snapshot? {
        guard let shared = context.withLock({ $0 }) else { return nil }
        let usage = shared.spool?.usage ?? InstanceSpool.Usage()
        let syncs = shared.spool?.syncer.counts ?? (syncs: 0, records: 0)
        let materializer = shared.materializer.status
        return Snapshot(
            spoolEnabled: shared.spoolReady.load(ordering: .relaxed), spoolRecords: usage.records, spoolBytes: usage.bytes,
            spoolCapacityBytes: usage.capacity, spoolSegments: usage.segments, spoolWaits: usage.waits, spoolBypassed: usage.bypassed,
            spoolSyncs: syncs.syncs, spoolSyncedRecords: syncs.records, materializerPending: materializer.pending,
            materializerLagSeconds: materializer.lagSeconds, materialized: materializer.materialized,
            materializerFault: materializer.fault, openAssociations: shared.openAssociations.load(ordering: .relaxed),
            answered: shared.answered.load(ordering: .relaxed),
            receiveSeconds: Double(shared.receiveNanoseconds.load(ordering: .relaxed)) / 1e9,
            answerSeconds: Double(shared.answerNanoseconds.load(ordering: .relaxed)) / 1e9, spoolSyncSeconds: shared.spool?.syncer.seconds ?? 0)
    }
}
