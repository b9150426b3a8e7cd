#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NMBridgeCore
import Testing

@testable import NMTransport

/// Namespace for the USB reset tests (wedge policy, sysfs lookup, libusb under
/// umockdev), so that `--filter UsbReset` runs all of them.
@Suite enum UsbResetTests {}

// MARK: - WedgeDetector

extension UsbResetTests {
    @Suite struct WedgePolicy {
        let start = ContinuousClock.now

        /// Feeds `count` timeouts one second apart from `from` seconds; returns the verdicts.
        func timeouts(_ detector: inout WedgeDetector, _ count: Int, from: Int) -> [WedgeDetector.Verdict] {
            (0..<count).map { detector.replyTimedOut(at: start + .seconds(from + $0)) }
        }

        @Test func defaultsAreFiveTimeoutsAndFiveMinutes() {
            let detector = WedgeDetector()
            #expect(detector.threshold == 5)
            #expect(detector.cooldown == .seconds(300))
            #expect(detector.consecutiveTimeouts == 0)
            #expect(detector.lastReset == nil)
        }

        @Test func resetsOnTheFifthConsecutiveTimeoutOnce() {
            var detector = WedgeDetector()
            let verdicts = timeouts(&detector, 5, from: 0)
            #expect(verdicts == Array(repeating: .keepPolling, count: 4) + [.resetNow(consecutiveTimeouts: 5)])
            #expect(detector.lastReset == start + .seconds(4))
            // The device stays silent: no second reset within the cooldown, however long
            // the streak grows.
            #expect(timeouts(&detector, 200, from: 5).allSatisfy { $0 == .keepPolling })
            #expect(detector.consecutiveTimeouts == 200)
        }

        @Test func anotherResetOnlyAfterTheCooldown() {
            var detector = WedgeDetector()
            _ = timeouts(&detector, 5, from: 0)  // reset at 4 s
            // At 303 s (299 s after the reset) the streak is long enough, the cooldown not over.
            #expect(timeouts(&detector, 299, from: 5).allSatisfy { $0 == .keepPolling })
            // At exactly 304 s, 300 s after the reset: the second reset.
            #expect(detector.replyTimedOut(at: start + .seconds(304)) == .resetNow(consecutiveTimeouts: 300))
            #expect(detector.lastReset == start + .seconds(304))
            #expect(detector.replyTimedOut(at: start + .seconds(305)) == .keepPolling)
        }

        @Test func afterTheCooldownAFreshStreakIsStillNeeded() {
            var detector = WedgeDetector()
            _ = timeouts(&detector, 5, from: 0)  // reset at 4 s
            detector.replyReceived()  // the reset helped for a while
            // Long after the cooldown, timeouts start again: a reset only at the fifth.
            #expect(timeouts(&detector, 5, from: 1000) == Array(repeating: .keepPolling, count: 4) + [.resetNow(consecutiveTimeouts: 5)])
        }

        @Test func aValidReplyEndsTheStreak() {
            var detector = WedgeDetector()
            #expect(timeouts(&detector, 4, from: 0).allSatisfy { $0 == .keepPolling })
            detector.replyReceived()
            #expect(detector.consecutiveTimeouts == 0)
            #expect(timeouts(&detector, 4, from: 10).allSatisfy { $0 == .keepPolling })
            #expect(detector.replyTimedOut(at: start + .seconds(20)) == .resetNow(consecutiveTimeouts: 5))
        }

        @Test func intermittentTimeoutsNeverReset() {
            var detector = WedgeDetector()
            for second in 0..<10_000 {
                if second % 5 == 4 {
                    detector.replyReceived()
                } else {
                    #expect(detector.replyTimedOut(at: start + .seconds(second)) == .keepPolling)
                }
            }
            #expect(detector.lastReset == nil)
        }

        @Test func closingThePortEndsTheStreakButNotTheCooldown() {
            var detector = WedgeDetector()
            _ = timeouts(&detector, 3, from: 0)
            detector.portClosed()  // an I/O error: the driver reopens, no wedge
            #expect(detector.consecutiveTimeouts == 0)
            #expect(timeouts(&detector, 4, from: 10).allSatisfy { $0 == .keepPolling })
            #expect(detector.replyTimedOut(at: start + .seconds(14)) == .resetNow(consecutiveTimeouts: 5))
            // The reset unbinds the tty: the port closes and reopens; the cooldown holds.
            detector.portClosed()
            #expect(timeouts(&detector, 50, from: 20).allSatisfy { $0 == .keepPolling })
        }

        @Test func customThresholdAndCooldown() {
            var detector = WedgeDetector(threshold: 2, cooldown: .seconds(10))
            #expect(timeouts(&detector, 2, from: 0) == [.keepPolling, .resetNow(consecutiveTimeouts: 2)])
            #expect(timeouts(&detector, 9, from: 2).allSatisfy { $0 == .keepPolling })  // 2…10 s
            #expect(detector.replyTimedOut(at: start + .seconds(11)) == .resetNow(consecutiveTimeouts: 10))
        }

        @Test func degenerateSettingsAreClamped() {
            var detector = WedgeDetector(threshold: 0, cooldown: .seconds(-5))
            #expect(detector.threshold == 1)
            #expect(detector.cooldown == .zero)
            #expect(detector.replyTimedOut(at: start) == .resetNow(consecutiveTimeouts: 1))
            #expect(detector.replyTimedOut(at: start) == .resetNow(consecutiveTimeouts: 1))
        }

        @Test func reasonText() {
            #expect(WedgeDetector.reason(consecutiveTimeouts: 5) == "5 consecutive reply timeouts")
            #expect(WedgeDetector.reason(consecutiveTimeouts: 1) == "1 consecutive reply timeout")
        }
    }
}

// MARK: - Lookup errors without umockdev

extension UsbResetTests {
    /// Error paths that need no testbed: the machine's real sysfs has no such device.
    @Suite(.enabled(if: Umockdev.scenario == nil, "this process is a umockdev child"))
    struct Lookup {
        static let gone = "/sys/devices/nmbridge-test-no-such-controller/usb9/9-1/9-1:1.0/ttyUSB9/tty/ttyUSB9"

        @Test func aDeviceThatDoesNotExistIsNamed() throws {
            let error = try #require(throws: NMBridgeError.self) { try USBSysfsDevice(containing: Self.gone) }
            #expect(error.code == .transportFailed)
            #expect(error.message == "USB lookup for \(Self.gone): no such device in sysfs (unplugged?)")
        }

        @Test func aDeviceNodeIsNotASysfsPath() throws {
            let error = try #require(throws: NMBridgeError.self) { try USBDevice(tty: TTYDeviceInfo(devnode: "/dev/ttyUSB0", syspath: "/dev/ttyUSB0")) }
            #expect(error.message == "USB lookup for /dev/ttyUSB0: not a sysfs device path (expected /sys/devices/…)")
        }

        @Test func resetOfAVanishedAdapterIsAFailedAttemptToJournal() async throws {
            let tty = TTYDeviceInfo(
                devnode: "/dev/ttyUSB9", syspath: Self.gone, vendorID: "0403", productID: "6001", serialNumber: "A50285BI")
            let attempt = await USBDevice.resetAdapter(of: tty, reason: WedgeDetector.reason(consecutiveTimeouts: 5))
            #expect(!attempt.succeeded)
            #expect(attempt.device == nil)
            let data = attempt.eventData(tty: tty)
            #expect(
                data == [
                    "reason": "5 consecutive reply timeouts",
                    "usb": ["vendor_id": "0403", "product_id": "6001", "serial_number": "A50285BI", "syspath": .string(Self.gone)],
                    "result": "failed",
                    "error": .string("USB lookup for \(Self.gone): no such device in sysfs (unplugged?)"),
                ])
            #expect(EventKindRegistry(EventKindRegistry.coreKinds).problems(kind: "device.usb_reset", data: data) == [])
            #expect(EventKindRegistry(EventKindRegistry.coreKinds).kind(named: "device.usb_reset")?.defaultSeverity == .warning)
        }
    }
}

// MARK: - libusb under umockdev (parent side)

extension UsbResetTests {
    /// Runs `TestbedScenarios` in a child under the umockdev preload library; see
    /// UmockdevHarness.swift.
    @Suite(.umockdevInstalled, .notUmockdevChild)
    struct Testbed {
        @Test func sysfsLookupIdentityAndReset() async throws {
            try await Umockdev.runScenario("usbResetLookupIdentityAndResetUnderTestbed")
        }
    }
}

// MARK: - libusb under umockdev (child side)

/// A USB-serial adapter for libusb: the USB device with what libusb reads from sysfs
/// (`busnum`, `devnum`, the `descriptors` blob) and a `/dev/bus/usb` node, below a
/// root hub, plus its interface, usb-serial port and tty.
private struct FakeUSBAdapter {
    var port: String  // "1-2"
    var address: Int
    var tty: String
    var minor: Int
    var serial: String
    /// Whether /dev/bus/usb/001/<address> exists in the testbed.
    var hasNode = true

    static let rootHub = "/sys/devices/pci0000:00/0000:00:14.0/usb1"
    var usbDevicePath: String { "\(Self.rootHub)/\(port)" }
    var ttyPath: String { "\(usbDevicePath)/\(port):1.0/\(tty)/tty/\(tty)" }
    var usbNode: String { "/dev/bus/usb/001/" + String(format: "%03d", address) }
    var sysfs: USBSysfsDevice {
        USBSysfsDevice(
            syspath: usbDevicePath, portPath: port, busNumber: 1, deviceAddress: address, vendorID: "0403",
            productID: "6001", serialNumber: serial)
    }

    /// Device descriptor of an FT232R (0403:6001, strings 1, 2, 3), then its configuration.
    static let descriptors =
        "12010002000000080304016000060102030109022000010100A02D0904000002FFFFFF02070581024000000705020240000000"

    static let rootHubRecord = """
        P: /devices/pci0000:00/0000:00:14.0/usb1
        N: bus/usb/001/001
        E: DEVNAME=/dev/bus/usb/001/001
        E: DEVTYPE=usb_device
        E: DRIVER=usb
        E: SUBSYSTEM=usb
        E: BUSNUM=001
        E: DEVNUM=001
        A: busnum=1
        A: devnum=1
        A: dev=189:0
        A: idVendor=1d6b
        A: idProduct=0002
        A: speed=480
        A: bConfigurationValue=1
        H: descriptors=12010002090001406B1D020006050302010109021900010100E0000904000001090000000705810304000C


        """

    var record: String {
        """
        P: \(usbDevicePath.dropFirst(4))
        \(hasNode ? "N: \(usbNode.dropFirst(5))\n" : "")E: DEVNAME=\(usbNode)
        E: DEVTYPE=usb_device
        E: DRIVER=usb
        E: SUBSYSTEM=usb
        E: BUSNUM=001
        E: DEVNUM=\(String(format: "%03d", address))
        A: busnum=1
        A: devnum=\(address)
        A: dev=189:\(address - 1)
        A: idVendor=0403
        A: idProduct=6001
        A: manufacturer=FTDI
        A: product=FT232R USB UART
        A: serial=\(serial)
        A: speed=12
        A: bConfigurationValue=1
        H: descriptors=\(Self.descriptors)

        P: \(usbDevicePath.dropFirst(4))/\(port):1.0
        E: DEVTYPE=usb_interface
        E: DRIVER=ftdi_sio
        E: SUBSYSTEM=usb
        A: bInterfaceNumber=00

        P: \(usbDevicePath.dropFirst(4))/\(port):1.0/\(tty)
        E: DRIVER=ftdi_sio
        E: SUBSYSTEM=usb-serial
        A: port_number=0

        P: \(ttyPath.dropFirst(4))
        E: DEVNAME=/dev/\(tty)
        E: MAJOR=188
        E: MINOR=\(minor)
        E: SUBSYSTEM=tty
        A: dev=188:\(minor)


        """
    }

    static let adapter = FakeUSBAdapter(port: "1-2", address: 5, tty: "ttyUSB0", minor: 0, serial: "A50285BI")
    /// Enumerated by libusb but without a device node: opening it fails.
    static let nodeless = FakeUSBAdapter(port: "1-3", address: 7, tty: "ttyUSB1", minor: 1, serial: "A9XK2L0P", hasNode: false)
}

/// `USBDEVFS_RESET`, `_IO('U', 20)`.
private let usbdevfsReset: UInt = 0x5514

extension UsbResetTests {
    @Suite struct TestbedScenarios {
        @Test(.enabled(if: Umockdev.scenario == "usbResetLookupIdentityAndResetUnderTestbed", "runs only in its umockdev child process"))
        func usbResetLookupIdentityAndResetUnderTestbed() async throws {
            Umockdev.markStarted()
            let testbed = try UmockdevTestbed()
            let adapter = FakeUSBAdapter.adapter
            let nodeless = FakeUSBAdapter.nodeless
            for record in [FakeUSBAdapter.rootHubRecord, adapter.record, nodeless.record, FakeSerialAdapter.platformUART] {
                try testbed.add(record)
            }
            // The kernel's usbfs: USBDEVFS_RESET succeeds, everything else (capabilities,
            // URBs for string descriptors) is "not supported".
            let kernel = try testbed.attachIoctl(adapter.usbNode) { request in
                request == usbdevfsReset ? (0, 0) : (-1, ENOTTY)
            }

            try withExtendedLifetime((testbed, kernel)) {
                // sysfs: from the tty (and from the USB device itself) to the USB device.
                #expect(try USBSysfsDevice(containing: adapter.ttyPath) == adapter.sysfs)
                #expect(try USBSysfsDevice(containing: adapter.usbDevicePath) == adapter.sysfs)
                #expect(adapter.sysfs.description == "USB 1-2 (0403:6001 serial A50285BI)")
                let uart = "/sys/devices/platform/serial8250/tty/ttyS0"
                let notUSB = try #require(throws: NMBridgeError.self) { try USBSysfsDevice(containing: uart) }
                #expect(notUSB.message == "USB lookup for \(uart): not on a USB device (no USB parent in sysfs)")

                // libusb: the same device, identity from its descriptor, cross-checked with udev.
                let tty = try #require(try Udev.enumerateTTYs().first { $0.devnode == "/dev/ttyUSB0" })
                let device = try USBDevice(tty: tty)
                #expect(device.sysfs == adapter.sysfs)
                #expect(
                    device.identity
                        == USBIdentity(busNumber: 1, deviceAddress: 5, portNumbers: [2], vendorID: "0403", productID: "6001"))
                #expect(device.identity.portPath == "1-2")
                #expect(device.identity.vendorID == tty.vendorID)
                #expect(device.identity.productID == tty.productID)

                // String descriptors are control transfers, which this kernel refuses: the
                // error names the device and libusb's error.
                let strings = try #require(throws: NMBridgeError.self) { try device.readIdentity() }
                #expect(strings.message.hasPrefix("USB 1-2 (0403:6001 serial A50285BI): cannot read the iManufacturer string: LIBUSB_ERROR_"))

                // The reset reaches the kernel as USBDEVFS_RESET, once.
                try device.reset()
                #expect(kernel.requests.filter { $0 == usbdevfsReset }.count == 1)

                // A failing reset: the device went away during it.
                kernel.respond { request in request == usbdevfsReset ? (-1, ENODEV) : (-1, ENOTTY) }
                let failed = try #require(throws: NMBridgeError.self) { try device.reset() }
                #expect(failed.code == .transportFailed)
                #expect(failed.message.hasPrefix("USB 1-2 (0403:6001 serial A50285BI): USB reset failed: LIBUSB_ERROR_NOT_FOUND ("))

                // Enumerated but not openable: named, with libusb's error.
                let closed = try #require(throws: NMBridgeError.self) { try USBDevice(nodeless.sysfs) }
                #expect(closed.message.hasPrefix("USB 1-3 (0403:6001 serial A9XK2L0P): cannot open: LIBUSB_ERROR_"))

                // A stale view: the address is gone, or now belongs to another port.
                var stale = adapter.sysfs
                stale.deviceAddress = 9
                let gone = try #require(throws: NMBridgeError.self) { try USBDevice(stale) }
                #expect(gone.message == "USB 1-2 (0403:6001 serial A50285BI): libusb has no device at bus 1 address 9 (unplugged or re-enumerated?)")
                var moved = adapter.sysfs
                moved.portPath = "1-4"
                let reused = try #require(throws: NMBridgeError.self) { try USBDevice(moved) }
                #expect(reused.message == "USB 1-4 (0403:6001 serial A50285BI): bus 1 address 5 is now USB 1-2 (0403:6001) (re-enumerated?)")
            }

            // The driver's entry point, on its own thread: a failed and a good reset, both
            // journalable as device.usb_reset.
            let tty = try #require(try Udev.enumerateTTYs().first { $0.devnode == "/dev/ttyUSB0" })
            let reason = WedgeDetector.reason(consecutiveTimeouts: 5)
            let usb: JSONValue = [
                "port_path": "1-2", "vendor_id": "0403", "product_id": "6001", "serial_number": "A50285BI", "bus": 1, "address": 5,
            ]
            let failedAttempt = await USBDevice.resetAdapter(of: tty, reason: reason)
            #expect(!failedAttempt.succeeded)
            let failedData = failedAttempt.eventData(tty: tty)
            #expect(failedData["result"] == "failed")
            #expect(failedData["usb"] == usb)
            #expect(failedData["error"]?.stringValue?.contains("USB reset failed: LIBUSB_ERROR_NOT_FOUND") == true)
            #expect(EventKindRegistry(EventKindRegistry.coreKinds).problems(kind: "device.usb_reset", data: failedData) == [])

            kernel.respond { request in request == usbdevfsReset ? (0, 0) : (-1, ENOTTY) }
            let attempt = await USBDevice.resetAdapter(of: tty, reason: reason)
            #expect(attempt.error == nil)
            #expect(attempt.device == adapter.sysfs)
            let data = attempt.eventData(tty: tty)
            #expect(data == ["reason": "5 consecutive reply timeouts", "usb": usb, "result": "reset"])
            #expect(EventKindRegistry(EventKindRegistry.coreKinds).problems(kind: "device.usb_reset", data: data) == [])
            #expect(kernel.requests.filter { $0 == usbdevfsReset }.count == 4)
            withExtendedLifetime((testbed, kernel)) {}
        }
    }
}
