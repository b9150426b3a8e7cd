#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NMBridgeCore
import Synchronization
// The only file that touches libudev (STYLE.md rule 2): everything else sees
// `TTYDeviceInfo` and `HotplugEvent`.
internal import CUdev

/// What udev knows about one tty device: where to open it and which physical adapter
/// it is.
///
/// Values come from the udev properties of the tty (set by udevd's rules: `ID_*`,
/// `DEVLINKS`) and, where a property is missing (udevd not running or not finished
/// with the device yet), from the sysfs attributes of its USB parent. Everything but
/// `syspath` can be missing: a built-in UART has no USB identity at all.
public struct TTYDeviceInfo: Sendable, Equatable, CustomStringConvertible {
    /// The device node, e.g. `/dev/ttyUSB0`.
    public var devnode: String?
    /// The sysfs path, e.g. `/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/ttyUSB0/tty/ttyUSB0`.
    /// Stable for as long as the device stays plugged in; what removals are matched on.
    public var syspath: String
    /// The udev subsystem, `tty` for everything this module reports.
    public var subsystem: String?
    /// USB vendor id as four lower-case hex digits, e.g. `0403` (FTDI).
    public var vendorID: String?
    /// USB product id as four lower-case hex digits, e.g. `6001` (FT232R).
    public var productID: String?
    /// The USB manufacturer string, e.g. `FTDI`.
    public var manufacturer: String?
    /// The USB product string, e.g. `FT232R USB UART`.
    public var product: String?
    /// The USB serial number (`ID_SERIAL_SHORT`, else the USB device's `serial`).
    public var serialNumber: String?
    /// The physical position, udev's `ID_PATH`, e.g. `pci-0000:00:14.0-usb-0:2:1.0`.
    public var busPath: String?
    /// The links of the device under `/dev/serial/by-id/`.
    public var byIDLinks: [String]
    /// Every symlink udev made for the device (`DEVLINKS`), including `byIDLinks`,
    /// `/dev/serial/by-path/…` and `/dev/nmbridge/<device-id>` from 70-nmbridge.rules.
    public var links: [String]
    /// The kernel driver, e.g. `ftdi_sio`, `cp210x`, `cdc_acm`.
    public var driver: String?

    public init(
        devnode: String?, syspath: String, subsystem: String? = "tty", vendorID: String? = nil,
        productID: String? = nil, manufacturer: String? = nil, product: String? = nil,
        serialNumber: String? = nil, busPath: String? = nil, links: [String] = [], driver: String? = nil
    ) {
        self.devnode = devnode
        self.syspath = syspath
        self.subsystem = subsystem
        self.vendorID = vendorID
        self.productID = productID
        self.manufacturer = manufacturer
        self.product = product
        self.serialNumber = serialNumber
        self.busPath = busPath
        self.links = links
        self.byIDLinks = links.filter { $0.hasPrefix(TTYDeviceInfo.byIDDirectory) }
        self.driver = driver
    }

    /// Where udev's 60-serial.rules puts the links named after the USB identity.
    public static let byIDDirectory = "/dev/serial/by-id/"

    /// The identity to journal with `device.connected` / `device.disconnected`: only the
    /// fields that are known, under lower-case snake-case keys.
    public var identity: [String: JSONValue] {
        var out: [String: JSONValue] = ["syspath": .string(syspath)]
        let fields: [(String, String?)] = [
            ("devnode", devnode), ("vendor_id", vendorID), ("product_id", productID),
            ("manufacturer", manufacturer), ("product", product), ("serial_number", serialNumber),
            ("bus_path", busPath), ("driver", driver),
        ]
        for case (let key, let value?) in fields { out[key] = .string(value) }
        if !byIDLinks.isEmpty { out["by_id"] = .array(byIDLinks.map { .string($0) }) }
        return out
    }

    /// `/dev/ttyUSB0 (0403:6001 serial A50285BI)`, for log lines and messages.
    public var description: String {
        var parts: [String] = []
        if let vendorID, let productID { parts.append("\(vendorID):\(productID)") }
        if let serialNumber { parts.append("serial \(serialNumber)") }
        let name = devnode ?? syspath
        return parts.isEmpty ? name : "\(name) (\(parts.joined(separator: " ")))"
    }
}

/// A tty device appearing or disappearing, as reported by ``UdevMonitor``.
public enum HotplugEvent: Sendable, Equatable {
    /// udev announced the device (`add`), or re-announced it (`change`, e.g. after
    /// `udevadm trigger` or a rules reload). The identity is read fresh from udev.
    case added(TTYDeviceInfo)
    /// The device is gone (`remove`). Only what the event itself carried is known:
    /// sysfs no longer has the device, so match it to an earlier `added` by
    /// `syspath` (or `devnode`), not by its USB identity.
    case removed(TTYDeviceInfo)

    /// The device the event is about.
    public var device: TTYDeviceInfo {
        switch self {
        case .added(let info), .removed(let info): info
        }
    }
}

/// Enumeration of the tty devices udev knows.
public enum Udev {
    /// Every tty device that has a device node (built-in UARTs, virtual consoles and
    /// USB-serial adapters alike: deciding which one is an instrument is the job of
    /// ``DeviceSelector``). Sorted by sysfs path.
    public static func enumerateTTYs() throws -> [TTYDeviceInfo] {
        let context = try UdevContext()
        guard let enumerate = udev_enumerate_new(context.udev) else {
            throw NMBridgeError(.transportFailed, "udev: cannot enumerate tty devices (udev_enumerate_new failed)")
        }
        defer { udev_enumerate_unref(enumerate) }
        var status = udev_enumerate_add_match_subsystem(enumerate, "tty")
        if status >= 0 { status = udev_enumerate_scan_devices(enumerate) }
        guard status >= 0 else {
            throw NMBridgeError(.transportFailed, "udev: cannot enumerate tty devices: \(String(cString: strerror(-status)))")
        }
        var devices: [TTYDeviceInfo] = []
        var entry = udev_enumerate_get_list_entry(enumerate)
        while let current = entry {
            entry = udev_list_entry_get_next(current)
            // A device can vanish between the scan and this lookup: skip it, the monitor
            // reports the removal.
            guard let syspath = udev_list_entry_get_name(current),
                let device = udev_device_new_from_syspath(context.udev, syspath)
            else { continue }
            defer { udev_device_unref(device) }
            let info = TTYDeviceInfo(device, readSysfs: true)
            if info.devnode != nil { devices.append(info) }
        }
        return devices.sorted { $0.syspath < $1.syspath }
    }
}

// MARK: - Reading a udev device

extension TTYDeviceInfo {
    /// Reads a device. `readSysfs` is false for a removed device: its sysfs entry (and
    /// its parents') may be gone or, worse, already reused, so only the properties the
    /// event carried are used.
    fileprivate init(_ device: OpaquePointer, readSysfs: Bool) {
        func property(_ name: String) -> String? { nonEmpty(udev_device_get_property_value(device, name)) }
        // The whole USB device (idVendor, serial…) and the USB interface the serial
        // driver is bound to. The returned parents belong to `device`: no unref.
        let usbDevice = readSysfs ? udev_device_get_parent_with_subsystem_devtype(device, "usb", "usb_device") : nil
        let usbInterface = readSysfs ? udev_device_get_parent_with_subsystem_devtype(device, "usb", "usb_interface") : nil
        func usbAttribute(_ name: String) -> String? {
            usbDevice.flatMap { nonEmpty(udev_device_get_sysattr_value($0, name)) }
        }

        // DEVLINKS as a property (all udev versions, and umockdev) plus libudev's own
        // list, without duplicates and in udev's order.
        var links: [String] = []
        for link in property("DEVLINKS")?.split(separator: " ").map(String.init) ?? [] where !links.contains(link) {
            links.append(link)
        }
        var entry = udev_device_get_devlinks_list_entry(device)
        while let current = entry {
            if let name = nonEmpty(udev_list_entry_get_name(current)), !links.contains(name) { links.append(name) }
            entry = udev_list_entry_get_next(current)
        }

        // Human-readable strings: the *_ENC properties keep the original characters
        // (escaped as \xNN), while ID_VENDOR / ID_MODEL replace spaces with "_".
        let manufacturer =
            property("ID_VENDOR_ENC").map(decodeUdevEscapes) ?? usbAttribute("manufacturer") ?? property("ID_VENDOR")
        let product = property("ID_MODEL_ENC").map(decodeUdevEscapes) ?? usbAttribute("product") ?? property("ID_MODEL")
        let driver =
            property("ID_USB_DRIVER")
            ?? usbInterface.flatMap { nonEmpty(udev_device_get_driver($0)) }
            ?? (readSysfs ? udev_device_get_parent(device).flatMap { nonEmpty(udev_device_get_driver($0)) } : nil)

        self.init(
            devnode: nonEmpty(udev_device_get_devnode(device)),
            syspath: nonEmpty(udev_device_get_syspath(device)) ?? "",
            subsystem: nonEmpty(udev_device_get_subsystem(device)),
            vendorID: (property("ID_VENDOR_ID") ?? usbAttribute("idVendor"))?.lowercased(),
            productID: (property("ID_MODEL_ID") ?? usbAttribute("idProduct"))?.lowercased(),
            manufacturer: manufacturer,
            product: product,
            serialNumber: property("ID_SERIAL_SHORT") ?? usbAttribute("serial"),
            busPath: property("ID_PATH"),
            links: links,
            driver: driver
        )
    }
}

/// A C string as a Swift string, `nil` when absent or empty.
private func nonEmpty(_ cString: UnsafePointer<CChar>?) -> String? {
    guard let cString, cString.pointee != 0 else { return nil }
    return String(cString: cString)
}

/// Undoes udev's `\xNN` escaping of ID_VENDOR_ENC / ID_MODEL_ENC (bytes, then UTF-8).
func decodeUdevEscapes(_ text: String) -> String {
    var bytes: [UInt8] = []
    let input = Array(text.utf8)
    var i = 0
    while i < input.count {
        if input[i] == UInt8(ascii: "\\"), i + 3 < input.count, input[i + 1] == UInt8(ascii: "x"),
            let value = UInt8(String(decoding: input[(i + 2)...(i + 3)], as: UTF8.self), radix: 16)
        {
            bytes.append(value)
            i += 4
        } else {
            bytes.append(input[i])
            i += 1
        }
    }
    return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)
}

/// Owns a `struct udev` context. libudev objects are not thread-safe: a context and
/// everything made from it is used by one thread at a time.
private final class UdevContext {
    let udev: OpaquePointer

    init() throws {
        guard let udev = udev_new() else {
            throw NMBridgeError(.transportFailed, "udev: cannot create a udev context (udev_new failed)")
        }
        self.udev = udev
    }

    deinit { udev_unref(udev) }
}

// MARK: - Hotplug monitor

/// Reports tty devices being plugged in and unplugged, from udev's netlink socket.
///
/// Subscribes to the `udev` group, i.e. to events *after* udevd has applied its rules
/// (so `ID_*` properties and `/dev/serial/by-id` links exist), filtered on subsystem
/// `tty`. The socket is bound when the monitor is created: enumerate after that (as
/// ``hotplugDecisions(selector:monitor:)`` does) and no device can slip between the
/// enumeration and the first event.
///
/// A dedicated thread waits in `poll(2)` — never a Swift cooperative thread — and
/// yields to ``events``, which buffers at most `bufferLimit` events: the newest are
/// kept and a warning is logged for each one dropped. ``events`` has one consumer;
/// give each consumer its own monitor (they are cheap: one socket and one thread).
///
/// Actions: `add` → ``HotplugEvent/added(_:)``; `change` → also `added` (a
/// re-announcement, e.g. `udevadm trigger --action=change` after a rules reload, can
/// give a device the link or property a selector waits for; consumers treat `added`
/// of a device they already hold as no news); `remove` → ``HotplugEvent/removed(_:)``;
/// anything else (`move`, `bind`, …) is ignored.
///
/// `stop()` (or the last reference going away) wakes the thread through a pipe, waits
/// for it to exit and finishes ``events``; every descriptor is closed by then.
public final class UdevMonitor: Sendable {
    /// The events, in the order udev sent them. Finishes after `stop()`, or with an
    /// error if the socket fails.
    public let events: AsyncThrowingStream<HotplugEvent, any Error>
    /// The write end of the wake-up pipe; the thread owns the read end.
    private let wakeWrite: Int32
    private let state = Mutex(State.running)
    /// Signalled by the thread as its very last action.
    private let threadExited = DispatchSemaphore(value: 0)

    private enum State { case running, stopped }

    /// Default for `bufferLimit`: far more than a person can plug in between two reads.
    public static let defaultBufferLimit = 256

    /// Opens the netlink socket (bound before this returns) and starts the thread.
    /// Throws when libudev cannot create or bind the socket.
    public init(bufferLimit: Int = UdevMonitor.defaultBufferLimit, logger: Logger) throws {
        let resources = try MonitorResources()
        var wakePipe: [Int32] = [-1, -1]
        guard pipe(&wakePipe) == 0 else {
            throw NMBridgeError(.transportFailed, "udev monitor: cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        for end in wakePipe { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let (stream, continuation) = AsyncThrowingStream<HotplugEvent, any Error>.makeStream(
            bufferingPolicy: .bufferingNewest(max(1, bufferLimit)))
        self.events = stream
        self.wakeWrite = wakePipe[1]
        let loop = MonitorLoop(
            resources: resources, wakeRead: wakePipe[0], continuation: continuation,
            exited: threadExited, logger: logger)
        // The thread holds the loop (and through it the libudev objects), not `self`, so
        // that dropping the last reference to the monitor runs `deinit`, which stops it.
        let thread = Thread { loop.run() }
        thread.name = "udev monitor"
        thread.start()
    }

    deinit { stop() }

    /// Stops the thread and finishes ``events``. Returns once the thread has exited and
    /// closed the socket (it wakes at once). Safe to call more than once.
    public func stop() {
        let first = state.withLock { state -> Bool in
            defer { state = .stopped }
            return state == .running
        }
        guard first else { return }
        var byte: UInt8 = 1
        while write(wakeWrite, &byte, 1) < 0 && errno == EINTR {}
        threadExited.wait()
        close(wakeWrite)
    }
}

/// The libudev objects of a monitor. Created on the caller's thread, then used only by
/// the monitor thread: `@unchecked Sendable` because the hand-over is the only sharing
/// (libudev objects may move between threads, they must not be used concurrently).
private final class MonitorResources: @unchecked Sendable {
    let context: UdevContext
    let monitor: OpaquePointer
    let fd: Int32

    init() throws {
        context = try UdevContext()
        guard let monitor = udev_monitor_new_from_netlink(context.udev, "udev") else {
            throw NMBridgeError(
                .transportFailed, "udev monitor: cannot open the udev netlink socket (udev_monitor_new_from_netlink failed)")
        }
        self.monitor = monitor
        var status = udev_monitor_filter_add_match_subsystem_devtype(monitor, "tty", nil)
        if status >= 0 { status = udev_monitor_enable_receiving(monitor) }
        guard status >= 0 else {
            udev_monitor_unref(monitor)
            throw NMBridgeError(
                .transportFailed, "udev monitor: cannot listen for tty events: \(String(cString: strerror(-status)))")
        }
        fd = udev_monitor_get_fd(monitor)
    }

    deinit { udev_monitor_unref(monitor) }
}

/// The monitor thread's state: everything here is touched by that thread only (the
/// continuation and semaphore are thread-safe themselves).
private final class MonitorLoop: @unchecked Sendable {
    /// Released by the thread before it signals its exit: the `Thread` object keeps the
    /// loop alive for an unspecified time, the socket must be closed when `stop()` returns.
    private var resources: MonitorResources?
    let wakeRead: Int32
    let continuation: AsyncThrowingStream<HotplugEvent, any Error>.Continuation
    let exited: DispatchSemaphore
    let logger: Logger

    init(
        resources: MonitorResources, wakeRead: Int32,
        continuation: AsyncThrowingStream<HotplugEvent, any Error>.Continuation,
        exited: DispatchSemaphore, logger: Logger
    ) {
        self.resources = resources
        self.wakeRead = wakeRead
        self.continuation = continuation
        self.exited = exited
        self.logger = logger
    }

    func run() {
        let failure = resources.flatMap(pollUntilStopped)
        resources = nil
        close(wakeRead)
        continuation.finish(throwing: failure)
        exited.signal()
    }

    /// Returns nil when woken by `stop()`, or the error that ended the loop.
    private func pollUntilStopped(_ resources: MonitorResources) -> NMBridgeError? {
        var fds = [
            pollfd(fd: resources.fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                return NMBridgeError(.transportFailed, "udev monitor: poll failed: \(String(cString: strerror(errno)))")
            }
            if fds[1].revents != 0 { return nil }
            if fds[0].revents & Int16(POLLIN) != 0 {
                receiveAll(resources)
            } else if fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                return NMBridgeError(.transportFailed, "udev monitor: the netlink socket failed")
            }
        }
    }

    /// Drains the (non-blocking) socket.
    private func receiveAll(_ resources: MonitorResources) {
        while true {
            errno = 0
            guard let device = udev_monitor_receive_device(resources.monitor) else {
                // ENOBUFS: the kernel dropped events because the socket buffer was full.
                if errno == ENOBUFS {
                    logger.warning("udev monitor: the kernel dropped hotplug events (socket buffer full)")
                    continue
                }
                return  // EAGAIN: drained; anything else: a malformed message, skipped
            }
            defer { udev_device_unref(device) }
            guard let event = event(for: device, context: resources.context) else { continue }
            if case .dropped(let old) = continuation.yield(event) {
                logger.warning(
                    "udev monitor: nobody reads hotplug events fast enough, dropped one",
                    metadata: ["udev.dropped": "\(old.device)"])
            }
        }
    }

    private func event(for device: OpaquePointer, context: UdevContext) -> HotplugEvent? {
        let action = nonEmpty(udev_device_get_action(device)) ?? ""
        switch action {
        case "add", "change":
            // Read the device again from sysfs and the udev database, so that `added`
            // carries the same identity as enumeration: a received device holds only
            // the properties its sender put in the message (all of them from udevd,
            // hardly any from umockdev), and libudev does not complete it.
            if let syspath = udev_device_get_syspath(device),
                let fresh = udev_device_new_from_syspath(context.udev, syspath)
            {
                defer { udev_device_unref(fresh) }
                let info = TTYDeviceInfo(fresh, readSysfs: true)
                return info.devnode == nil ? nil : .added(info)
            }
            // Already gone again: a remove event follows.
            logger.debug("udev monitor: \(action) of a device that is gone already")
            return nil
        case "remove":
            return .removed(TTYDeviceInfo(device, readSysfs: false))
        default:
            return nil
        }
    }
}
