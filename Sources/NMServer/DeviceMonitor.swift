import Foundation
import Logging
import NMBridgeCore
import NMJournal
import Synchronization

/// What the daemon knows about one device right now (`GET /v1/devices`).
public struct DeviceStatus: Sendable {
    public var id: String
    public var driver: String
    public var enabled: Bool
    /// `unknown` until the driver reports, then `up` or `down`.
    public var link: String = "unknown"
    public var linkReason: String?
    public var identity: [String: JSONValue] = [:]
    public var stale = false
    public var staleAfter: Double?
    public var lastHeard: Date?
    var lastHeardInstant: ContinuousClock.Instant?
    var staleSince: ContinuousClock.Instant?
    public var lastEventSeq: Int64?
    public var lastEventKind: String?
    public var lastEventTime: Date?
    public var driverRunning = false
    public var restarts = 0
    public var lastError: String?

    var json: JSONValue {
        func optional(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        return [
            "id": .string(id), "driver": .string(driver), "enabled": .bool(enabled), "link": .string(link),
            "link_reason": optional(linkReason), "identity": .object(identity), "stale": .bool(stale),
            "stale_after_s": staleAfter.map(JSONValue.double) ?? .null,
            "last_heard": optional(lastHeard.map(Timestamp.format)),
            "last_event": lastEventSeq.map { seq in
                [
                    "seq": .int(seq), "kind": optional(lastEventKind), "time": optional(lastEventTime.map(Timestamp.format)),
                ]
            } ?? .null,
            "driver_running": .bool(driverRunning), "restarts": .int(Int64(restarts)), "last_error": optional(lastError),
        ]
    }
}

/// The daemon's `DriverEventSink`: journals what drivers emit, keeps each device's
/// current state, and judges staleness from outside the driver (`device.stale` /
/// `device.recovered`), so a hung driver cannot hide that its device went quiet.
public final class DeviceMonitor: DriverEventSink, Sendable {
    let journal: Journal
    let logger: Logger
    private let states: Mutex<[String: DeviceStatus]>
    private let clock = ContinuousClock()

    public init(journal: Journal, devices: [DaemonConfiguration.Device], logger: Logger) {
        self.journal = journal
        self.logger = logger
        var states: [String: DeviceStatus] = [:]
        for device in devices {
            states[device.id] = DeviceStatus(
                id: device.id, driver: device.driver, enabled: device.enabled, staleAfter: device.staleAfter)
        }
        self.states = Mutex(states)
    }

    /// Every device, sorted by id.
    public var devices: [DeviceStatus] {
        states.withLock { Array($0.values) }.sorted { $0.id < $1.id }
    }

    // MARK: DriverEventSink

    public func emit(_ draft: EventDraft) async throws {
        var drafts: [EventDraft] = []
        if let device = draft.device, let recovered = markHeard(device) { drafts.append(recovered) }
        drafts.append(draft)
        let events = try await journal.append(drafts)
        if let device = draft.device, let event = events.last {
            states.withLock { states in
                states[device]?.lastEventSeq = event.seq
                states[device]?.lastEventKind = event.kind
                states[device]?.lastEventTime = event.time
            }
        }
    }

    /// One journal transaction for all (the DICOM receiver's batches of stored instances).
    public func emit(_ drafts: [EventDraft]) async throws {
        var all: [EventDraft] = []
        for draft in drafts {
            if let device = draft.device, let recovered = markHeard(device) { all.append(recovered) }
            all.append(draft)
        }
        let events = try await journal.append(all)
        states.withLock { states in
            for event in events {
                guard let device = event.device else { continue }
                states[device]?.lastEventSeq = event.seq
                states[device]?.lastEventKind = event.kind
                states[device]?.lastEventTime = event.time
            }
        }
    }

    public func link(device: String, driver: String, state: LinkState) async throws {
        let draft = states.withLock { states -> EventDraft? in
            guard var status = states[device] else { return nil }
            defer { states[device] = status }
            switch state {
            case .up(let reason, let identity):
                if status.link == "up" { return nil }
                status.link = "up"
                status.linkReason = reason
                status.identity = identity
                var data: [String: JSONValue] = ["reason": .string(reason)]
                if !identity.isEmpty { data["identity"] = .object(identity) }
                return EventDraft(device: device, driver: driver, kind: "device.connected", data: data)
            case .down(let reason):
                if status.link == "down" { return nil }
                status.link = "down"
                status.linkReason = reason
                return EventDraft(device: device, driver: driver, kind: "device.disconnected", data: ["reason": .string(reason)])
            }
        }
        if let draft {
            if case .up = state { try await emit(draft) } else { try await journal.append(draft) }
        }
    }

    public func heartbeat(device: String) async throws {
        guard let recovered = markHeard(device) else { return }
        try await journal.append(recovered)
    }

    /// Records that the device was heard; returns a `device.recovered` draft if it was stale.
    private func markHeard(_ device: String) -> EventDraft? {
        let now = clock.now
        return states.withLock { states -> EventDraft? in
            guard var status = states[device] else { return nil }
            defer { states[device] = status }
            status.lastHeard = Date()
            status.lastHeardInstant = now
            guard status.stale else { return nil }
            status.stale = false
            let staleFor = status.staleSince.map { ($0.duration(to: now)).seconds } ?? 0
            status.staleSince = nil
            return EventDraft(
                device: device, driver: status.driver, kind: "device.recovered", data: ["stale_s": .double(staleFor.rounded3)])
        }
    }

    // MARK: Supervisor hooks

    func driverStarted(_ device: String) {
        let now = clock.now
        states.withLock { states in
            states[device]?.driverRunning = true
            // A device that was never heard from is judged from the moment its driver starts.
            if states[device]?.lastHeardInstant == nil { states[device]?.lastHeardInstant = now }
        }
    }

    /// Marks the driver crashed; returns a `device.disconnected` draft if the link was up.
    func driverCrashed(_ device: String, error: String) -> EventDraft? {
        states.withLock { states -> EventDraft? in
            guard var status = states[device] else { return nil }
            defer { states[device] = status }
            status.driverRunning = false
            status.restarts += 1
            status.lastError = error
            guard status.link == "up" else { return nil }
            status.link = "down"
            status.linkReason = "driver crashed"
            return EventDraft(
                device: device, driver: status.driver, kind: "device.disconnected",
                data: ["reason": .string("driver crashed: \(error)")])
        }
    }

    func driverStopped(_ device: String) {
        states.withLock { $0[device]?.driverRunning = false }
    }

    /// Checks every device against its `stale_after_s`; returns `device.stale` drafts.
    func checkStaleness() -> [EventDraft] {
        let now = clock.now
        return states.withLock { states -> [EventDraft] in
            var drafts: [EventDraft] = []
            for (id, var status) in states {
                guard let limit = status.staleAfter, !status.stale, status.driverRunning,
                    let heard = status.lastHeardInstant
                else { continue }
                let silent = heard.duration(to: now).seconds
                guard silent > limit else { continue }
                status.stale = true
                status.staleSince = now
                states[id] = status
                var data: [String: JSONValue] = [
                    "silent_s": .double(silent.rounded3), "stale_after_s": .double(limit),
                ]
                if let lastHeard = status.lastHeard { data["last_seen"] = .string(Timestamp.format(lastHeard)) }
                drafts.append(EventDraft(device: id, driver: status.driver, kind: "device.stale", data: data))
            }
            return drafts.sorted { ($0.device ?? "") < ($1.device ?? "") }
        }
    }
}

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}

extension Double {
    var rounded3: Double { (self * 1000).rounded() / 1000 }
}
