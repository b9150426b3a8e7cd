import Foundation
import NMBridgeCore
import Synchronization

/// Collects what a driver reports, as the daemon's sink would journal it. An event of a
/// kind neither the core nor the driver's module declares is refused with an error, as the
/// journal would refuse it.
public final class RecordingSink: DriverEventSink {
    public let drafts = Mutex<[EventDraft]>([])
    public let links = Mutex<[LinkState]>([])
    public let heartbeats = Atomic<Int>(0)

    let registry: EventKindRegistry

    /// `kinds`: the kinds the driver's module declares (e.g. `EventKindRegistry.dosecalKinds`).
    public init(kinds: [EventKind] = []) {
        registry = EventKindRegistry(EventKindRegistry.coreKinds + kinds)
    }

    public func emit(_ draft: EventDraft) async throws {
        guard registry.accepts(draft.kind) else {
            throw NMBridgeError(.unknownEventKind, "unregistered kind \(draft.kind)")
        }
        drafts.withLock { $0.append(draft) }
    }

    public func link(device: String, driver: String, state: LinkState) async throws {
        links.withLock { $0.append(state) }
    }

    public func heartbeat(device: String) async throws {
        heartbeats.add(1, ordering: .relaxed)
    }

    public func events(_ kind: String) -> [EventDraft] { drafts.withLock { $0.filter { $0.kind == kind } } }

    /// Waits (generously; never a performance limit: a loaded CI machine can stall the
    /// cooperative pool for many seconds) until `condition` holds.
    public func wait(seconds: Double = 90, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }
}
