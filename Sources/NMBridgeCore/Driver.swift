import Foundation
import Logging
import ServiceLifecycle

/// How far a driver has come; shown in `nmbridge devices` and docs/configuration.md.
public enum DriverMaturity: String, Sendable {
    /// Works against its simulator only.
    case simulated
    /// Tested against real peers, not yet against the instrument in the field.
    case experimental
    /// Verified on real instruments.
    case stable
}

/// One driver-specific configuration key, for documentation and `config check`.
public struct DriverConfigKey: Sendable {
    public var name: String
    public var type: String
    public var summary: String

    public init(_ name: String, _ type: String, _ summary: String) {
        self.name = name
        self.type = type
        self.summary = summary
    }
}

/// What a driver is: name, version, maturity, transports and the keys it reads.
public struct DriverManifest: Sendable {
    public var name: String
    public var version: String
    public var maturity: DriverMaturity
    public var transports: [String]
    public var summary: String
    public var configKeys: [DriverConfigKey]

    public init(
        name: String, version: String, maturity: DriverMaturity, transports: [String], summary: String,
        configKeys: [DriverConfigKey]
    ) {
        self.name = name
        self.version = version
        self.maturity = maturity
        self.transports = transports
        self.summary = summary
        self.configKeys = configKeys
    }
}

/// A device driver: a long-lived `Service` that talks to one instrument (or one bus)
/// and reports through its `DriverContext` only.
///
/// Rules: never `fatalError`, never block a thread it does not own, reconnect by itself.
/// Throwing from `run()` is a crash: the supervisor journals `driver.crashed` and
/// restarts the driver with capped exponential back-off.
public protocol Driver: Service {
    /// The driver's settings, validated when the configuration is loaded.
    associatedtype Settings: Sendable

    static var manifest: DriverManifest { get }

    /// Reads and validates the driver's keys of one `[[device]]` table. Problems go to
    /// `reader` (with key and line); return `nil` when the settings are unusable.
    static func settings(from reader: ConfigTableReader) -> Settings?

    /// `stale_after_s` when the device table does not set it (`nil`: never stale). A
    /// polled device has a natural default; a device that speaks only when it has
    /// something to say has none.
    static func defaultStaleAfter(_ settings: Settings) -> Double?

    init(settings: Settings, context: DriverContext)
}

extension Driver {
    public static func defaultStaleAfter(_ settings: Settings) -> Double? { nil }

    /// The default for a polled device: stale after five missed polls, at least 5 s.
    public static func staleAfter(polledEvery interval: Duration) -> Double {
        max(5, 5 * (interval / .seconds(1)))
    }
}

/// The state of the link between nmbridge and a device.
public enum LinkState: Sendable, Equatable {
    case up(reason: String, identity: [String: JSONValue])
    case down(reason: String)
}

/// Where a driver's output goes. Implemented by the daemon (journal + device state) and
/// by test fakes.
public protocol DriverEventSink: Sendable {
    /// Journals an event; returns once it is durable.
    func emit(_ draft: EventDraft) async throws
    /// Records a link change; journals `device.connected`/`device.disconnected` when it
    /// is a change.
    func link(device: String, driver: String, state: LinkState) async throws
    /// The device answered: it is alive even if there is nothing to journal. Returns once
    /// a `device.recovered` it causes is durable, so that it precedes the device's next event.
    func heartbeat(device: String) async throws
    /// Journals events in order, in one transaction where the sink can; returns once all
    /// are durable.
    func emit(_ drafts: [EventDraft]) async throws
}

extension DriverEventSink {
    /// One after the other, for sinks without a transaction of their own.
    public func emit(_ drafts: [EventDraft]) async throws {
        for draft in drafts { try await emit(draft) }
    }
}

/// A driver's whole world: its identity, logger, clock, and where its events go.
public struct DriverContext: Sendable {
    /// The configured device id (`[[device]] id`).
    public let deviceID: String
    /// The driver's registered name.
    public let driverName: String
    /// A logger with `device.id` and `driver` metadata.
    public let logger: Logger
    /// The clock to sleep and time with (a manual clock in tests).
    public let clock: any Clock<Duration>
    /// The driver's own thread, when the supervisor gave it one (`DeviceThreadExecutor`).
    /// Child tasks run there by themselves; a task a driver starts unstructured should ask
    /// for it: `Task(executorPreference: context.executor)`.
    public var executor: (any TaskExecutor)?
    private let sink: any DriverEventSink

    public init(deviceID: String, driverName: String, logger: Logger, clock: any Clock<Duration>, sink: any DriverEventSink) {
        self.deviceID = deviceID
        self.driverName = driverName
        var logger = logger
        logger[metadataKey: "device.id"] = "\(deviceID)"
        logger[metadataKey: "driver"] = "\(driverName)"
        self.logger = logger
        self.clock = clock
        self.sink = sink
    }

    /// Journals an event from this device. Returns once it is durable.
    public func emit(
        _ kind: String, severity: Severity? = nil, data: [String: JSONValue] = [:], raw: [UInt8]? = nil,
        time: Date = Date()
    ) async throws {
        try await sink.emit(
            EventDraft(time: time, device: deviceID, driver: driverName, kind: kind, severity: severity, data: data, raw: raw))
    }

    /// Reports the link state; only changes are journaled.
    public func reportLink(_ state: LinkState) async throws {
        try await sink.link(device: deviceID, driver: driverName, state: state)
    }

    /// Tells the staleness watchdog that the device answered (journals `device.recovered`
    /// first if the device was stale).
    public func heartbeat() async throws {
        try await sink.heartbeat(device: deviceID)
    }
}
