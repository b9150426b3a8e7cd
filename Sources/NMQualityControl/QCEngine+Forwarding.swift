import NMBridgeCore

extension QCEngine {
    /// Whether a `dicom.instance.stored` event is one of a configured camera's QC
    /// acquisitions (a flood or a COR): forwarding leaves those out unless a route asks
    /// for them, as they are not part of a patient's study.
    public func isQualityControlAcquisition(_ event: Event) -> Bool {
        isCameraQualityControl(event)
    }
}
