#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NMBridgeCore

/// How the configuration names the one serial adapter an instrument is plugged into:
/// what an admin writes in a `[[device]]` table.
///
/// Every form names one physical adapter (or one port): a fixed path, the adapter's USB
/// serial number, its `/dev/serial/by-id` name, or the USB port it sits in. A USB
/// vendor/product id never selects on its own: FTDI 0403:6001, Prolific 067b:2303,
/// Silicon Labs 10c4:ea60 and CDC-ACM chips are inside countless unrelated devices, so
/// it can only narrow a serial number (see udev-rules/README.md).
public struct DeviceSelector: Sendable, Equatable, CustomStringConvertible {
    /// The ways to name an adapter. Closed: each case needs matching code and a config key.
    public enum Criterion: Sendable, Equatable {
        /// A fixed path: the device node (`/dev/ttyS0`) or any of its links
        /// (`/dev/nmbridge/dosecal-hotlab` from 70-nmbridge.rules). A path that is a
        /// symlink on this machine also matches the node it resolves to.
        case path(String)
        /// The USB serial number, optionally narrowed by vendor and product id (four
        /// lower-case hex digits), since serial strings are only unique per vendor.
        case usbSerial(String, vendorID: String?, productID: String?)
        /// A link under `/dev/serial/by-id/`, always stored as the full path.
        case byID(String)
        /// udev's `ID_PATH`, the physical USB port, e.g. `pci-0000:00:14.0-usb-0:2:1.0`.
        /// Survives replacing the adapter, not moving the cable.
        case busPath(String)
    }

    public var criterion: Criterion

    public init(_ criterion: Criterion) {
        switch criterion {
        case .byID(let name):
            self.criterion = .byID(name.hasPrefix("/") ? name : TTYDeviceInfo.byIDDirectory + name)
        case .usbSerial(let serial, let vendorID, let productID):
            self.criterion = .usbSerial(serial, vendorID: vendorID?.lowercased(), productID: productID?.lowercased())
        default:
            self.criterion = criterion
        }
    }

    public static func path(_ path: String) -> DeviceSelector { DeviceSelector(.path(path)) }
    public static func usbSerial(_ serial: String, vendorID: String? = nil, productID: String? = nil) -> DeviceSelector {
        DeviceSelector(.usbSerial(serial, vendorID: vendorID, productID: productID))
    }
    /// A name under `/dev/serial/by-id/` or the full path.
    public static func byID(_ name: String) -> DeviceSelector { DeviceSelector(.byID(name)) }
    public static func busPath(_ busPath: String) -> DeviceSelector { DeviceSelector(.busPath(busPath)) }

    /// Whether `info` is the device this selector names.
    ///
    /// `path` may look at the file system (to resolve a symlink that udev did not
    /// report); the other forms compare udev's data only.
    public func matches(_ info: TTYDeviceInfo) -> Bool {
        switch criterion {
        case .path(let path):
            if info.devnode == path || info.links.contains(path) { return true }
            // A link made outside udev (by hand, by another tool): compare real paths.
            guard let devnode = info.devnode, let target = realPath(path) else { return false }
            return target == devnode || target == realPath(devnode)
        case .usbSerial(let serial, let vendorID, let productID):
            guard info.serialNumber == serial else { return false }
            if let vendorID, info.vendorID != vendorID { return false }
            if let productID, info.productID != productID { return false }
            return true
        case .byID(let path):
            return info.links.contains(path)
        case .busPath(let busPath):
            return info.busPath == busPath
        }
    }

    /// `usb_serial "A50285BI" (0403:6001)`, naming the config key, for messages.
    public var description: String {
        switch criterion {
        case .path(let path): return "path \"\(path)\""
        case .usbSerial(let serial, let vendorID, let productID):
            let ids = [vendorID.map { "vendor \($0)" }, productID.map { "product \($0)" }].compactMap { $0 }
            return "usb_serial \"\(serial)\"" + (ids.isEmpty ? "" : " (" + ids.joined(separator: ", ") + ")")
        case .byID(let path): return "by_id \"\(path)\""
        case .busPath(let busPath): return "bus_path \"\(busPath)\""
        }
    }

    // MARK: - Configuration

    /// The keys `read(from:)` understands, for callers that report unknown keys.
    public static let configKeys = ["path", "usb_serial", "usb_vendor", "usb_product", "by_id", "bus_path"]

    /// Reads the selector from a `[[device]]` table: exactly one of `path`,
    /// `usb_serial`, `by_id`, `bus_path`; `usb_vendor` / `usb_product` only together
    /// with `usb_serial`. Records every problem on `reader` and returns nil if any.
    ///
    /// ```toml
    /// [[device]]
    /// id = "dosecal-hotlab"
    /// usb_serial = "A50285BI"
    /// usb_vendor = "0403"     # optional, narrows usb_serial
    /// usb_product = "6001"    # optional
    /// ```
    public static func read(from reader: ConfigTableReader) -> DeviceSelector? {
        // A relative path is taken from the configuration file's folder (simulator links).
        let path = nonEmptyString(reader, "path").map(reader.resolvePath)
        let serial = nonEmptyString(reader, "usb_serial")
        let byID = nonEmptyString(reader, "by_id")
        let busPath = nonEmptyString(reader, "bus_path")
        let vendor = usbID(reader, "usb_vendor")
        let product = usbID(reader, "usb_product")
        let chipKeys = ["usb_vendor", "usb_product"].filter { reader.line(of: $0) != nil }

        let given = [("path", path != nil), ("usb_serial", serial != nil), ("by_id", byID != nil), ("bus_path", busPath != nil)]
            .filter { $0.1 }.map { $0.0 }
        // Keys present but unusable (wrong type, empty) were reported already; do not
        // add "no selector" on top of that.
        let presentKeys = ["path", "usb_serial", "by_id", "bus_path"].filter { reader.line(of: $0) != nil }
        var valid = presentKeys.count == given.count && chipKeys.allSatisfy { $0 == "usb_vendor" ? vendor != nil : product != nil }

        if presentKeys.isEmpty {
            if let first = chipKeys.first {
                reader.problem(
                    first,
                    "a USB vendor/product id cannot select a device on its own: chip ids such as FTDI 0403:6001 "
                        + "or Prolific 067b:2303 are shared by countless devices; add usb_serial (or use by_id, bus_path or path)")
            } else {
                reader.tableProblem("no serial port selected: set exactly one of path, usb_serial, by_id or bus_path")
            }
            return nil
        }
        if presentKeys.count > 1 {
            reader.problem(
                presentKeys[1],
                "choose one way to select the serial port: " + presentKeys.joined(separator: " and ") + " are both set")
            valid = false
        }
        if serial == nil, let first = chipKeys.first, presentKeys.count == 1 {
            reader.problem(
                first, "only narrows usb_serial; with \(presentKeys[0]) it has no meaning (remove it or select by usb_serial)")
            valid = false
        }
        if let path, !path.hasPrefix("/") {
            reader.problem("path", "\"\(path)\" must be an absolute path such as /dev/nmbridge/dosecal-hotlab or /dev/ttyS0 (or relative to the configuration file)")
            valid = false
        }
        if let byID {
            let isName = !byID.contains("/")
            let isFullPath = byID.hasPrefix(TTYDeviceInfo.byIDDirectory) && byID.count > TTYDeviceInfo.byIDDirectory.count
            if !isName && !isFullPath {
                reader.problem(
                    "by_id",
                    "\"\(byID)\" must be a name in \(TTYDeviceInfo.byIDDirectory) (as `ls \(TTYDeviceInfo.byIDDirectory)` shows it) "
                        + "or its full path; use path for other links")
                valid = false
            }
        }
        guard valid else { return nil }

        if let path { return .path(path) }
        if let serial { return .usbSerial(serial, vendorID: vendor, productID: product) }
        if let byID { return .byID(byID) }
        if let busPath { return .busPath(busPath) }
        return nil
    }

    private static func nonEmptyString(_ reader: ConfigTableReader, _ key: String) -> String? {
        guard let value = reader.string(key) else { return nil }
        if value.trimmingCharacters(in: .whitespaces).isEmpty {
            reader.problem(key, "must not be empty")
            return nil
        }
        return value
    }

    /// A USB id: four hex digits, optionally with `0x`; normalized to lower case.
    private static func usbID(_ reader: ConfigTableReader, _ key: String) -> String? {
        guard let text = reader.string(key) else { return nil }
        let value = text.lowercased().hasPrefix("0x") ? String(text.dropFirst(2)) : text
        guard value.count == 4, value.allSatisfy(\.isHexDigit) else {
            reader.problem(key, "\"\(text)\" is not a USB id: four hex digits such as \"0403\"")
            return nil
        }
        return value.lowercased()
    }
}

/// The path with every symlink resolved, nil when it does not exist.
private func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}
