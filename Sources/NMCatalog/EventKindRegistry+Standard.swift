import DicomStore
import DoseCalibrator
import ModbusGantry
import NMBridgeCore
import NMForward
import NMJournal
import NMQualityControl
import NMShipper

extension EventKindRegistry {
    /// Every kind this build journals: the core's and each subsystem's, in the order
    /// docs/events.md lists them (`nmbridge kinds --markdown`).
    public static let standard = EventKindRegistry(
        coreKinds + journalKinds + shipperKinds + dosecalKinds + dicomKinds + forwardKinds + gantryKinds + qcKinds)
}
