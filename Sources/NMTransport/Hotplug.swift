import Foundation
import Logging

/// Why a device was attached or detached; the text is what a driver journals as the
/// reason of `device.connected` / `device.disconnected`.
public struct HotplugReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// The device was already there when the driver started.
    public static let presentAtStart = HotplugReason(rawValue: "present at start")
    /// The device appeared while the driver ran.
    public static let pluggedIn = HotplugReason(rawValue: "plugged in")
    /// The device went away.
    public static let unplugged = HotplugReason(rawValue: "unplugged")
}

/// What a driver should do about its one configured device.
public enum HotplugDecision: Sendable, Equatable {
    /// Open `info.devnode` and journal `device.connected` with `info.identity`.
    case attach(TTYDeviceInfo, reason: HotplugReason)
    /// Close the port and journal `device.disconnected`. `info` is the identity seen at
    /// attach time (a removal event alone carries little more than the path).
    case detach(TTYDeviceInfo, reason: HotplugReason)
}

/// Follows hotplug events for ONE configured device: the first device matching the
/// selector is attached; it is detached when that same device (same syspath or device
/// node) is removed; everything else is ignored.
///
/// Pure: no udev, no clock, no I/O (except that a ``DeviceSelector/Criterion/path(_:)``
/// selector may resolve a symlink).
///
/// - While a device is attached, other matching devices are ignored (two adapters
///   answering to one selector is a configuration mistake; the first keeps working).
///   After a detach the next matching `added` attaches again; a second matching
///   device that was already plugged in is not picked up until it is re-announced.
/// - `added` for the attached device again (a `change` re-announcement) is no news.
public struct HotplugTracker: Sendable {
    public let selector: DeviceSelector
    /// The device currently attached, if any.
    public private(set) var attached: TTYDeviceInfo?

    public init(selector: DeviceSelector) {
        self.selector = selector
    }

    /// The decision for the devices present at start (from ``Udev/enumerateTTYs()``):
    /// attach the first match, if any.
    public mutating func start(present devices: [TTYDeviceInfo]) -> HotplugDecision? {
        guard attached == nil, let match = devices.first(where: selector.matches) else { return nil }
        attached = match
        return .attach(match, reason: .presentAtStart)
    }

    /// The decision for one event, nil when it does not concern this device.
    public mutating func handle(_ event: HotplugEvent) -> HotplugDecision? {
        switch event {
        case .added(let info):
            guard attached == nil, selector.matches(info) else { return nil }
            attached = info
            return .attach(info, reason: .pluggedIn)
        case .removed(let info):
            guard let current = attached, Self.isSameDevice(current, info) else { return nil }
            attached = nil
            return .detach(current, reason: .unplugged)
        }
    }

    /// A removal names the device by sysfs path and node only.
    static func isSameDevice(_ a: TTYDeviceInfo, _ b: TTYDeviceInfo) -> Bool {
        if !a.syspath.isEmpty, a.syspath == b.syspath { return true }
        if let node = a.devnode, node == b.devnode { return true }
        return false
    }
}

/// The attach/detach decisions for one configured device: first the devices present at
/// start, then the hotplug events. Ends when the events end (the monitor stopped) and
/// throws if they fail.
///
/// One consumer: the iterator owns the event stream.
public struct HotplugDecisions: AsyncSequence, Sendable {
    public typealias Element = HotplugDecision

    let selector: DeviceSelector
    let present: [TTYDeviceInfo]
    let events: AsyncThrowingStream<HotplugEvent, any Error>

    /// Decisions for `selector` given the devices present at start and the events that
    /// follow. ``hotplugDecisions(selector:monitor:)`` builds one from udev; tests and
    /// simulators can feed their own events.
    public init(selector: DeviceSelector, present: [TTYDeviceInfo], events: AsyncThrowingStream<HotplugEvent, any Error>) {
        self.selector = selector
        self.present = present
        self.events = events
    }

    public func makeAsyncIterator() -> AsyncIterator {
        var tracker = HotplugTracker(selector: selector)
        let initial = tracker.start(present: present)
        return AsyncIterator(tracker: tracker, initial: initial, events: events.makeAsyncIterator())
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var tracker: HotplugTracker
        var initial: HotplugDecision?
        var events: AsyncThrowingStream<HotplugEvent, any Error>.AsyncIterator

        public mutating func next() async throws -> HotplugDecision? {
            if let decision = initial {
                initial = nil
                return decision
            }
            while let event = try await events.next() {
                if let decision = tracker.handle(event) { return decision }
            }
            return nil
        }
    }
}

/// The decisions for one configured device, from udev: enumerates the tty devices now
/// (the monitor's socket is already bound, so nothing plugged in meanwhile is missed)
/// and then follows `monitor`, which this sequence consumes.
///
/// ```swift
/// let monitor = try UdevMonitor(logger: logger)
/// for try await decision in try hotplugDecisions(selector: selector, monitor: monitor) {
///     switch decision {
///     case .attach(let info, let reason): …   // open info.devnode, journal device.connected
///     case .detach(let info, let reason): …   // close, journal device.disconnected
///     }
/// }
/// ```
public func hotplugDecisions(selector: DeviceSelector, monitor: UdevMonitor) throws -> HotplugDecisions {
    HotplugDecisions(selector: selector, present: try Udev.enumerateTTYs(), events: monitor.events)
}
