import DicomStore
import Foundation
import NMBridgeCore

/// The DICOM receiver's spool and materializer in `/v1/health` and `/metrics`.
extension APIRoutes {
    /// The `dicom` object of `/v1/health`, and whether the receiver degrades the daemon
    /// (instances cannot be put in place: they wait in the spool).
    func dicomHealth() -> (body: JSONValue, degraded: Bool)? {
        guard let dicom = dicom?.snapshot else { return nil }
        let body: JSONValue = [
            "open_associations": .int(Int64(dicom.openAssociations)),
            "spool": [
                "enabled": .bool(dicom.spoolEnabled), "records": .int(Int64(dicom.spoolRecords)), "bytes": .int(Int64(dicom.spoolBytes)),
                "capacity_bytes": .int(Int64(dicom.spoolCapacityBytes)), "segments": .int(Int64(dicom.spoolSegments)),
                "waits": .int(Int64(dicom.spoolWaits)), "bypassed": .int(Int64(dicom.spoolBypassed)),
                "syncs": .int(Int64(dicom.spoolSyncs)), "synced_records": .int(Int64(dicom.spoolSyncedRecords)),
            ],
            "materializer": [
                "pending": .int(Int64(dicom.materializerPending)), "lag_s": .double((dicom.materializerLagSeconds * 1000).rounded() / 1000),
                "materialized": .int(Int64(dicom.materialized)), "fault": dicom.materializerFault.map(JSONValue.string) ?? .null,
            ],
        ]
        return (body, dicom.materializerFault != nil)
    }

    func dicomMetrics(_ text: inout PrometheusText) {
        guard let dicom = dicom?.snapshot else { return }
        text.metric("nmbridge_dicom_open_associations", .gauge, "DICOM associations open now.", [([:], Double(dicom.openAssociations))])
        text.metric("nmbridge_dicom_spool_records", .gauge, "Acknowledged instances in the spool, not yet in place and journaled.", [([:], Double(dicom.spoolRecords))])
        text.metric("nmbridge_dicom_spool_bytes", .gauge, "Bytes of the spool in use.", [([:], Double(dicom.spoolBytes))])
        text.metric("nmbridge_dicom_spool_capacity_bytes", .gauge, "The spool's size ([dicom] spool_mb).", [([:], Double(dicom.spoolCapacityBytes))])
        text.metric("nmbridge_dicom_spool_waits_total", .counter, "Transfers that waited for spool space (back-pressure).", [([:], Double(dicom.spoolWaits))])
        text.metric("nmbridge_dicom_spool_bypassed_total", .counter, "Instances stored without the spool (too large, or no space in time).", [([:], Double(dicom.spoolBypassed))])
        text.metric("nmbridge_dicom_spool_syncs_total", .counter, "Data syncs of the spool (one covers the records of all associations waiting).", [([:], Double(dicom.spoolSyncs))])
        text.metric("nmbridge_dicom_spool_synced_records_total", .counter, "Records covered by those syncs.", [([:], Double(dicom.spoolSyncedRecords))])
        text.metric("nmbridge_dicom_materializer_pending", .gauge, "Items waiting for the materializer.", [([:], Double(dicom.materializerPending))])
        text.metric("nmbridge_dicom_materializer_lag_seconds", .gauge, "Age of the oldest instance waiting to be put in place (0 when none waits).", [([:], dicom.materializerLagSeconds)])
        text.metric("nmbridge_dicom_materialized_total", .counter, "Instances put in place from the spool since start.", [([:], Double(dicom.materialized))])
        text.metric("nmbridge_dicom_instances_answered_total", .counter, "C-STORE requests answered since start.", [([:], Double(dicom.answered))])
        text.metric("nmbridge_dicom_receive_seconds_total", .counter, "Time from C-STORE requests to their last dataset byte, summed.", [([:], dicom.receiveSeconds)])
        text.metric("nmbridge_dicom_answer_seconds_total", .counter, "Time from the last dataset byte to the response (check, spool record, data sync), summed.", [([:], dicom.answerSeconds)])
        text.metric("nmbridge_dicom_spool_sync_seconds_total", .counter, "Time in the spool's data syncs, summed.", [([:], dicom.spoolSyncSeconds)])
        text.metric("nmbridge_dicom_materializer_faulted", .gauge, "1 while instances cannot be put in place (they wait in the spool).", [([:], dicom.materializerFault == nil ? 0 : 1)])
    }
}
