#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NMBridgeCore
// The only file that touches libusb (STYLE.md rule 2): everything else sees
// `USBSysfsDevice`, `USBIdentity`, `USBResetAttempt` and `NMBridgeError`.
internal import CUSB

// Threading
// =========
// Every libusb call here may block: enumeration reads sysfs, `libusb_open` opens the
// usbfs node, string descriptors are control transfers to the device (up to 1 s each),
// and `libusb_reset_device` waits for the hub to reset the port and the device to
// re-enumerate (hundreds of milliseconds, longer for a sick device). So:
//
// - `USBDevice` is synchronous and not `Sendable`: create it, use it and drop it on one
//   thread that you own (never a Swift cooperative thread, i.e. not directly from
//   `async` code).
// - `USBDevice.resetAdapter(of:reason:)` is the `async` entry point for drivers: it
//   does the whole lookup, open and reset on a dedicated thread of its own and resumes
//   the caller with a `USBResetAttempt` ready to journal.
//
// Each `USBDevice` has its own libusb context, freed (after the handle is closed) in
// `deinit`: resets are rare, and a private context keeps nothing alive in between.

// MARK: - The USB device of a tty, as sysfs describes it

/// The USB device a tty belongs to, read from sysfs: which bus and address it has now,
/// where it is plugged in and what the kernel read from its descriptors at enumeration.
///
/// Found by walking up from the tty's sysfs path to the nearest ancestor with `busnum`
/// and `devnum` attributes (a `usb_device`: the interface and usb-serial port between
/// them have neither).
public struct USBSysfsDevice: Sendable, Equatable, CustomStringConvertible {
    /// The sysfs path of the USB device, e.g. `/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2`.
    public var syspath: String
    /// Bus number and port numbers as the kernel names the device, e.g. `1-2.3` (bus 1,
    /// hub on port 2, adapter on port 3 of that hub). Stable while it stays plugged in
    /// the same port.
    public var portPath: String
    /// The bus number (`busnum`).
    public var busNumber: Int
    /// The device address on the bus (`devnum`); changes whenever the device re-enumerates.
    public var deviceAddress: Int
    /// USB vendor id as four lower-case hex digits (`idVendor`).
    public var vendorID: String?
    /// USB product id as four lower-case hex digits (`idProduct`).
    public var productID: String?
    /// The serial number string the kernel read at enumeration (`serial`).
    public var serialNumber: String?

    public init(
        syspath: String, portPath: String, busNumber: Int, deviceAddress: Int, vendorID: String? = nil,
        productID: String? = nil, serialNumber: String? = nil
    ) {
        self.syspath = syspath
        self.portPath = portPath
        self.busNumber = busNumber
        self.deviceAddress = deviceAddress
        self.vendorID = vendorID
        self.productID = productID
        self.serialNumber = serialNumber
    }

    /// The USB device that the device at `syspath` (a tty's `/sys/devices/…` path, as
    /// in ``TTYDeviceInfo/syspath``) belongs to, or the device itself if it is one.
    ///
    /// Throws, naming `syspath`, when the path does not exist in sysfs (unplugged) or
    /// has no USB device above it (a built-in UART). Reads a few sysfs files: cheap, but
    /// still file I/O.
    public init(containing syspath: String) throws {
        let start = syspath.hasSuffix("/") ? String(syspath.dropLast()) : syspath
        guard start.hasPrefix("/sys/devices/") else {
            throw NMBridgeError(
                .transportFailed, "USB lookup for \(syspath): not a sysfs device path (expected /sys/devices/…)")
        }
        guard access(start, F_OK) == 0 else {
            throw NMBridgeError(
                .transportFailed, "USB lookup for \(syspath): no such device in sysfs (unplugged?)")
        }
        var directory = start
        while directory.count > "/sys/devices".count {
            if let bus = readSysfsAttribute(directory, "busnum").flatMap({ Int($0) }),
                let address = readSysfsAttribute(directory, "devnum").flatMap({ Int($0) })
            {
                self.init(
                    syspath: directory,
                    portPath: String(directory.split(separator: "/").last ?? ""),
                    busNumber: bus, deviceAddress: address,
                    vendorID: readSysfsAttribute(directory, "idVendor")?.lowercased(),
                    productID: readSysfsAttribute(directory, "idProduct")?.lowercased(),
                    serialNumber: readSysfsAttribute(directory, "serial"))
                return
            }
            directory = String(directory[..<(directory.lastIndex(of: "/") ?? directory.startIndex)])
        }
        throw NMBridgeError(.transportFailed, "USB lookup for \(syspath): not on a USB device (no USB parent in sysfs)")
    }

    /// `USB 1-2 (0403:6001 serial A50285BI)`, for messages and log lines.
    public var description: String {
        describeUSB(portPath: portPath, vendorID: vendorID, productID: productID, serialNumber: serialNumber)
    }
}

// MARK: - Identity through libusb

/// A USB device as libusb sees it: the device descriptor (cached by the kernel, no I/O
/// to the device) and, if read, its string descriptors (control transfers to the device).
///
/// Meant for cross-checking udev's view (``TTYDeviceInfo``), which comes from the same
/// kernel but through udev's rules and database.
public struct USBIdentity: Sendable, Equatable, CustomStringConvertible {
    /// The bus number.
    public var busNumber: Int
    /// The device address on the bus.
    public var deviceAddress: Int
    /// The port numbers from the root hub down, e.g. `[2, 3]`.
    public var portNumbers: [Int]
    /// USB vendor id as four lower-case hex digits (`idVendor`).
    public var vendorID: String
    /// USB product id as four lower-case hex digits (`idProduct`).
    public var productID: String
    /// The `iManufacturer` string; nil when the device has none or it was not read.
    public var manufacturer: String?
    /// The `iProduct` string; nil when the device has none or it was not read.
    public var product: String?
    /// The `iSerialNumber` string; nil when the device has none or it was not read.
    public var serialNumber: String?

    public init(
        busNumber: Int, deviceAddress: Int, portNumbers: [Int], vendorID: String, productID: String,
        manufacturer: String? = nil, product: String? = nil, serialNumber: String? = nil
    ) {
        self.busNumber = busNumber
        self.deviceAddress = deviceAddress
        self.portNumbers = portNumbers
        self.vendorID = vendorID
        self.productID = productID
        self.manufacturer = manufacturer
        self.product = product
        self.serialNumber = serialNumber
    }

    /// Bus and ports as the kernel names the device in sysfs, e.g. `1-2.3`.
    public var portPath: String {
        "\(busNumber)-" + (portNumbers.isEmpty ? "0" : portNumbers.map(String.init).joined(separator: "."))
    }

    /// `USB 1-2 (0403:6001 serial A50285BI)`.
    public var description: String {
        describeUSB(portPath: portPath, vendorID: vendorID, productID: productID, serialNumber: serialNumber)
    }
}

// MARK: - An open USB device

/// An open USB device (a libusb context and device handle), for reading its identity
/// and resetting it.
///
/// **Call from a thread you own.** Every method blocks (see the comment at the top of
/// USBDevice.swift); drivers use ``resetAdapter(of:reason:)``, which runs on a
/// dedicated thread. Not `Sendable`: one thread at a time, like libusb handles.
///
/// Errors are ``NMBridgeError`` with code `transport_failed` naming the device (port
/// path, vendor:product, serial) and libusb's error name, e.g.
/// `USB 1-2 (0403:6001 serial A50285BI): cannot open: LIBUSB_ERROR_ACCESS (…)`.
public final class USBDevice {
    /// The device as sysfs described it when it was opened.
    public let sysfs: USBSysfsDevice
    /// The device descriptor fields as libusb reads them (strings not read: see
    /// ``readIdentity()``).
    public let identity: USBIdentity
    private let context: OpaquePointer
    private let handle: OpaquePointer

    /// Finds `sysfs` among libusb's devices (same bus and address, and the same port
    /// path, vendor and product, so that a reused address is not taken for the
    /// adapter) and opens it. Needs write access to `/dev/bus/usb/BBB/DDD`.
    public init(_ sysfs: USBSysfsDevice) throws {
        var contextPointer: OpaquePointer?
        let status = libusb_init(&contextPointer)
        guard status == 0, let context = contextPointer else {
            throw usbError(sysfs, "cannot initialise libusb", status)
        }
        do {
            (handle, identity) = try Self.open(sysfs, in: context)
        } catch {
            libusb_exit(context)
            throw error
        }
        self.sysfs = sysfs
        self.context = context
    }

    /// Finds and opens `sysfs` in `context`; the device list is freed before this
    /// returns (the handle keeps its own reference to the device).
    private static func open(_ sysfs: USBSysfsDevice, in context: OpaquePointer) throws -> (OpaquePointer, USBIdentity) {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let count = libusb_get_device_list(context, &list)
        guard count >= 0, let list else {
            throw usbError(sysfs, "cannot list USB devices", Int32(clamping: count))
        }
        defer { libusb_free_device_list(list, 1) }

        for index in 0..<count {
            guard let device = list[index],
                Int(libusb_get_bus_number(device)) == sysfs.busNumber,
                Int(libusb_get_device_address(device)) == sysfs.deviceAddress
            else { continue }
            var descriptor = libusb_device_descriptor()
            let status = libusb_get_device_descriptor(device, &descriptor)
            guard status == 0 else { throw usbError(sysfs, "cannot read the device descriptor", status) }
            var ports = [UInt8](repeating: 0, count: 8)  // USB 3 allows at most 7 tiers
            let portCount = libusb_get_port_numbers(device, &ports, Int32(ports.count))
            let identity = USBIdentity(
                busNumber: sysfs.busNumber, deviceAddress: sysfs.deviceAddress,
                portNumbers: ports.prefix(Int(max(0, portCount))).map(Int.init),
                vendorID: hex4(descriptor.idVendor), productID: hex4(descriptor.idProduct))
            // Addresses are reused after a re-enumeration: insist that it is the same device.
            if identity.portPath != sysfs.portPath || sysfs.vendorID.map({ $0 != identity.vendorID }) == true
                || sysfs.productID.map({ $0 != identity.productID }) == true
            {
                throw NMBridgeError(
                    .transportFailed,
                    "\(sysfs): bus \(sysfs.busNumber) address \(sysfs.deviceAddress) is now \(identity) (re-enumerated?)")
            }
            var handle: OpaquePointer?
            let openStatus = libusb_open(device, &handle)
            guard openStatus == 0, let handle else { throw usbError(sysfs, "cannot open", openStatus) }
            return (handle, identity)
        }
        throw NMBridgeError(
            .transportFailed,
            "\(sysfs): libusb has no device at bus \(sysfs.busNumber) address \(sysfs.deviceAddress) (unplugged or re-enumerated?)")
    }

    /// Opens the USB device a tty belongs to: ``USBSysfsDevice/init(containing:)`` on
    /// its syspath, then ``init(_:)``.
    public convenience init(tty: TTYDeviceInfo) throws {
        try self.init(USBSysfsDevice(containing: tty.syspath))
    }

    deinit {
        libusb_close(handle)
        libusb_exit(context)
    }

    /// ``identity`` with the manufacturer, product and serial number strings read from
    /// the device (control transfers of at most 1 s each: a wedged device makes this
    /// slow and then throw). A string index of 0 (no such string) gives nil.
    public func readIdentity() throws -> USBIdentity {
        var descriptor = libusb_device_descriptor()
        let status = libusb_get_device_descriptor(libusb_get_device(handle), &descriptor)
        guard status == 0 else { throw usbError(sysfs, "cannot read the device descriptor", status) }
        var identity = self.identity
        identity.manufacturer = try readString(descriptor.iManufacturer, "iManufacturer")
        identity.product = try readString(descriptor.iProduct, "iProduct")
        identity.serialNumber = try readString(descriptor.iSerialNumber, "iSerialNumber")
        return identity
    }

    private func readString(_ index: UInt8, _ name: String) throws -> String? {
        guard index != 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 256)
        let length = libusb_get_string_descriptor_ascii(handle, index, &buffer, Int32(buffer.count))
        guard length >= 0 else { throw usbError(sysfs, "cannot read the \(name) string", length) }
        return String(decoding: buffer.prefix(Int(length)), as: UTF8.self)
    }

    /// Resets the device (`USBDEVFS_RESET`): the hub resets the port and the kernel
    /// re-enumerates the device at the same address. Drivers bound to it are unbound and
    /// bound again, so the tty vanishes and comes back (usually under the same name):
    /// close the serial port and reopen it after the reset.
    ///
    /// Throws with libusb's error name, e.g. `LIBUSB_ERROR_NOT_FOUND` when the device
    /// disappeared or its descriptors changed (it re-enumerated as a new device).
    public func reset() throws {
        let status = libusb_reset_device(handle)
        guard status == 0 else { throw usbError(sysfs, "USB reset failed", status) }
    }
}

// MARK: - Reset for drivers

/// The outcome of ``USBDevice/resetAdapter(of:reason:)``, ready to journal as
/// `device.usb_reset`.
public struct USBResetAttempt: Sendable {
    /// Why the reset was attempted, e.g. `5 consecutive reply timeouts`.
    public var reason: String
    /// The adapter as found in sysfs; nil when the tty has no USB device (or is gone).
    public var device: USBSysfsDevice?
    /// What went wrong; nil when the device was reset.
    public var error: NMBridgeError?

    public init(reason: String, device: USBSysfsDevice?, error: NMBridgeError?) {
        self.reason = reason
        self.device = device
        self.error = error
    }

    /// Whether the device was reset.
    public var succeeded: Bool { error == nil }

    /// The `data` of the `device.usb_reset` event: `reason`, `usb` (`port_path`,
    /// `vendor_id`, `product_id`, `serial_number`, `bus`, `address`: those known, from
    /// sysfs, else from `tty`'s udev identity), `result` (`reset` or `failed`) and
    /// `error` when it failed.
    public func eventData(tty: TTYDeviceInfo) -> [String: JSONValue] {
        var usb: [String: JSONValue] = [:]
        let known: [(String, String?)] = [
            ("port_path", device?.portPath), ("vendor_id", device?.vendorID ?? tty.vendorID),
            ("product_id", device?.productID ?? tty.productID), ("serial_number", device?.serialNumber ?? tty.serialNumber),
        ]
        for case (let key, let value?) in known { usb[key] = .string(value) }
        if let device {
            usb["bus"] = .int(Int64(device.busNumber))
            usb["address"] = .int(Int64(device.deviceAddress))
        } else {
            usb["syspath"] = .string(tty.syspath)
        }
        var data: [String: JSONValue] = [
            "reason": .string(reason), "usb": .object(usb), "result": .string(succeeded ? "reset" : "failed"),
        ]
        if let error { data["error"] = .string(error.description) }
        return data
    }
}

extension USBDevice {
    /// Finds the USB device of `tty`, opens it and resets it, on a dedicated thread
    /// (never a cooperative one); returns when done, which takes up to a few seconds.
    /// Never throws: the attempt carries the error, and the event data either way.
    ///
    /// The tty goes away during a reset and usually comes back: the caller closes its
    /// serial port first (or right after) and reopens the device as after an unplug.
    public static func resetAdapter(of tty: TTYDeviceInfo, reason: String) async -> USBResetAttempt {
        await withCheckedContinuation { continuation in
            let thread = Thread {
                var located: USBSysfsDevice?
                do {
                    let sysfs = try USBSysfsDevice(containing: tty.syspath)
                    located = sysfs
                    try USBDevice(sysfs).reset()
                    continuation.resume(returning: USBResetAttempt(reason: reason, device: sysfs, error: nil))
                } catch {
                    let failure =
                        error as? NMBridgeError
                        ?? NMBridgeError(.transportFailed, "USB reset of \(tty): \(error)")
                    continuation.resume(returning: USBResetAttempt(reason: reason, device: located, error: failure))
                }
            }
            thread.name = "usb reset"
            thread.start()
        }
    }
}

// MARK: - Helpers

/// An error naming the device and libusb's error name, e.g.
/// `USB 1-2 (0403:6001 serial A50285BI): cannot open: LIBUSB_ERROR_ACCESS (Access denied (insufficient permissions))`.
private func usbError(_ device: USBSysfsDevice, _ what: String, _ status: Int32) -> NMBridgeError {
    let name = String(cString: libusb_error_name(status))
    let text = String(cString: libusb_strerror(status))
    var hint = ""
    if status == LIBUSB_ERROR_ACCESS.rawValue {
        hint = " (the service user needs write access to /dev/bus/usb/"
            + "\(pad3(device.busNumber))/\(pad3(device.deviceAddress)): see /usr/share/doc/nmbridge/udev-rules.md.gz)"
    }
    return NMBridgeError(.transportFailed, "\(device): \(what): \(name) (\(text))\(hint)")
}

private func describeUSB(portPath: String, vendorID: String?, productID: String?, serialNumber: String?) -> String {
    var parts: [String] = []
    if let vendorID, let productID { parts.append("\(vendorID):\(productID)") }
    if let serialNumber { parts.append("serial \(serialNumber)") }
    return parts.isEmpty ? "USB \(portPath)" : "USB \(portPath) (\(parts.joined(separator: " ")))"
}

private func hex4(_ value: UInt16) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

private func pad3(_ value: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, 3 - digits.count)) + digits
}

/// A sysfs attribute without its trailing newline; nil when missing, unreadable or empty.
/// Plain open/read (not Foundation) so that umockdev's preload library sees the calls.
private func readSysfsAttribute(_ directory: String, _ name: String) -> String? {
    let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 65536 {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        bytes += chunk.prefix(n)
    }
    let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return text.isEmpty ? nil : text
}
