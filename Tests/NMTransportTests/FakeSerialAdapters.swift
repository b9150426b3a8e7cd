@testable import NMTransport

/// A USB-serial adapter as umockdev should fake it: the USB device, its interface, the
/// usb-serial port and the tty, with sysfs attributes as the kernel has them and
/// (optionally) the udev properties udevd's rules would add.
struct FakeSerialAdapter {
    /// USB port name, e.g. `1-2` (bus 1, port 2).
    var port: String
    /// e.g. `ttyUSB0`
    var tty: String
    var minor: Int
    var vendorID = "0403"
    var productID = "6001"
    var manufacturer = "FTDI"
    var product = "FT232R USB UART"
    var serial: String
    var driver = "ftdi_sio"
    /// Extra links udev rules made (e.g. `/dev/nmbridge/<id>` from 70-nmbridge.rules).
    var extraLinks: [String] = []
    /// Whether udevd has processed the device: with false, only the kernel's sysfs data
    /// exists (no ID_*, no DEVLINKS), as before udevd finishes or without udevd.
    var processedByUdev = true

    static let controller = "/sys/devices/pci0000:00/0000:00:14.0"

    var usbDevicePath: String { "\(Self.controller)/usb1/\(port)" }
    var interfacePath: String { "\(usbDevicePath)/\(port):1.0" }
    var portPath: String { "\(interfacePath)/\(tty)" }
    var ttyPath: String { "\(portPath)/tty/\(tty)" }
    var devnode: String { "/dev/\(tty)" }
    /// udev's ID_PATH for the port: `1-2` → `pci-0000:00:14.0-usb-0:2:1.0`.
    var busPath: String { "pci-0000:00:14.0-usb-0:\(port.split(separator: "-").dropFirst().joined(separator: ".")):1.0" }
    var byIDLink: String {
        "/dev/serial/by-id/usb-\(manufacturer)_\(product.replacingOccurrences(of: " ", with: "_"))_\(serial)-if00-port0"
    }
    var byPathLink: String { "/dev/serial/by-path/\(busPath)-port0" }
    var links: [String] { processedByUdev ? [byIDLink, byPathLink] + extraLinks : [] }

    /// What the code under test should read for the tty.
    var expectedInfo: TTYDeviceInfo {
        TTYDeviceInfo(
            devnode: devnode, syspath: ttyPath, subsystem: "tty", vendorID: vendorID, productID: productID,
            manufacturer: manufacturer, product: product, serialNumber: serial,
            busPath: processedByUdev ? busPath : nil, links: links, driver: driver)
    }

    /// umockdev-record format, parents first: umockdev (0.17 and later) announces each
    /// device with an `add` uevent as it creates it, so this is the order in which the
    /// kernel announces a plugged-in adapter, and every parent is complete when the tty
    /// is announced.
    var record: String {
        // The interface carries the driver link only when udev does not name the
        // driver, to exercise the fallback to sysfs.
        let interfaceDriverLink = processedByUdev ? "" : "L: driver=../../../../../../bus/usb/drivers/\(driver)\n"
        var text = """
            P: \(usbDevicePath.dropFirst(4))
            E: DEVTYPE=usb_device
            E: DRIVER=usb
            E: SUBSYSTEM=usb
            A: idVendor=\(vendorID)
            A: idProduct=\(productID)
            A: manufacturer=\(manufacturer)
            A: product=\(product)
            A: serial=\(serial)

            P: \(interfacePath.dropFirst(4))
            E: DEVTYPE=usb_interface
            E: DRIVER=\(driver)
            E: SUBSYSTEM=usb
            \(interfaceDriverLink)A: bInterfaceNumber=00

            P: \(portPath.dropFirst(4))
            E: DRIVER=\(driver)
            E: SUBSYSTEM=usb-serial
            A: port_number=0

            P: \(ttyPath.dropFirst(4))
            E: DEVNAME=\(devnode)
            E: MAJOR=188
            E: MINOR=\(minor)
            E: SUBSYSTEM=tty
            A: dev=188:\(minor)

            """
        if processedByUdev {
            // As 60-serial.rules, 60-persistent-serial.rules and 70-nmbridge.rules set them.
            text += """
                E: ID_VENDOR=\(manufacturer.replacingOccurrences(of: " ", with: "_"))
                E: ID_VENDOR_ENC=\(manufacturer.replacingOccurrences(of: " ", with: "\\x20"))
                E: ID_VENDOR_ID=\(vendorID)
                E: ID_MODEL=\(product.replacingOccurrences(of: " ", with: "_"))
                E: ID_MODEL_ENC=\(product.replacingOccurrences(of: " ", with: "\\x20"))
                E: ID_MODEL_ID=\(productID)
                E: ID_SERIAL=\(manufacturer)_\(product.replacingOccurrences(of: " ", with: "_"))_\(serial)
                E: ID_SERIAL_SHORT=\(serial)
                E: ID_USB_DRIVER=\(driver)
                E: ID_USB_INTERFACE_NUM=00
                E: ID_PATH=\(busPath)
                E: ID_BUS=usb
                E: DEVLINKS=\(links.joined(separator: " "))

                """
        }
        return text
    }

    /// The devices of the adapter, parent first.
    var pathsParentFirst: [String] { [usbDevicePath, interfacePath, portPath, ttyPath] }

    /// The listed dose calibrator adapter of the scenarios.
    static let listed = FakeSerialAdapter(
        port: "1-2", tty: "ttyUSB0", minor: 0, serial: "A50285BI", extraLinks: ["/dev/nmbridge/dosecal-hotlab"])
    /// Same chip, another serial: some other department's gadget.
    static let unlisted = FakeSerialAdapter(port: "1-3", tty: "ttyUSB1", minor: 1, serial: "A9XK2L0P")
    /// Same chip again, not (yet) processed by udevd: identity from sysfs only.
    static let bare = FakeSerialAdapter(port: "1-4", tty: "ttyUSB2", minor: 2, serial: "FTZ7Q1B9", processedByUdev: false)

    /// A built-in UART (no USB parent) and a tty without a device node.
    static let platformUART = """
        P: /devices/platform/serial8250
        E: DRIVER=serial8250
        E: SUBSYSTEM=platform
        L: driver=../../../bus/platform/drivers/serial8250

        P: /devices/platform/serial8250/tty/ttyS0
        E: DEVNAME=/dev/ttyS0
        E: MAJOR=4
        E: MINOR=64
        E: SUBSYSTEM=tty
        A: dev=4:64

        P: /devices/virtual/tty/ttynonode
        E: SUBSYSTEM=tty

        """
}
