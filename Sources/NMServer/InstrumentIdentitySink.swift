import NMBridgeCore

/// Puts the instrument's model and serial number from `[[device]]` (`instrument_model`,
/// `instrument_serial`) on a dose calibrator's `dosecal.*` events, so that every measurement
/// and the QC findings made from it name the instrument (docs/qc.md, "Records"). A value the
/// driver already reports (read from the instrument) is kept.
struct InstrumentIdentitySink: DriverEventSink {
    let base: any DriverEventSink
    let identity: [String: JSONValue]

    /// `base` itself when the device configures no identity.
    static func wrapping(_ base: any DriverEventSink, for device: DaemonConfiguration.Device) -> any DriverEventSink {
        var identity: [String: JSONValue] = [:]
        if let model = device.instrumentModel { identity["instrument_model"] = .string(model) }
        if let serial = device.instrumentSerial { identity["instrument_serial"] = .string(serial) }
        return identity.isEmpty ? base : InstrumentIdentitySink(base: base, identity: identity)
    }

    func emit(_ draft: EventDraft) async throws {
        var draft = draft
        if draft.kind.hasPrefix("dosecal.") {
            draft.data.merge(identity) { reported, _ in reported }
        }
        try await base.emit(draft)
    }

    func link(device: String, driver: String, state: LinkState) async throws {
        try await base.link(device: device, driver: driver, state: state)
    }

    func heartbeat(device: String) async throws {
        try await base.heartbeat(device: device)
    }
}
