#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NMBridgeCore
import NMTOML
import Testing

@testable import NMTransport

/// Namespace for the udev tests, so that `--filter Udev` runs all of them.
@Suite enum UdevTests {}

// MARK: - Real libudev under umockdev (parent side)

extension UdevTests {
    /// Each test runs one scenario of `TestbedScenarios` in a child process under the
    /// umockdev preload library; see UmockdevHarness.swift.
    @Suite(.umockdevInstalled, .notUmockdevChild)
    struct Testbed {
        @Test func enumerationIdentityAndSelectors() async throws {
            try await Umockdev.runScenario("enumerationAndSelectorsUnderTestbed")
        }

        @Test func monitorAttachesTheListedAdapterAndIgnoresOthers() async throws {
            try await Umockdev.runScenario("hotplugUnderTestbed")
        }
    }
}

// MARK: - Real libudev under umockdev (child side)

extension UdevTests {
    /// Runs only in the child started by `Testbed` (skipped everywhere else, where it
    /// would see the machine's real devices).
    @Suite struct TestbedScenarios {
        let logger = Logger(label: "nmbridge.test.udev")

        @Test(.enabled(if: Umockdev.scenario == "enumerationAndSelectorsUnderTestbed", "runs only in its umockdev child process"))
        func enumerationAndSelectorsUnderTestbed() async throws {
            Umockdev.markStarted()
            let testbed = try UmockdevTestbed()
            let listed = FakeSerialAdapter.listed
            let unlisted = FakeSerialAdapter.unlisted
            let bare = FakeSerialAdapter.bare
            for record in [listed.record, unlisted.record, bare.record, FakeSerialAdapter.platformUART] {
                try testbed.add(record)
            }

            let devices = try Udev.enumerateTTYs()
            // Every tty with a node, USB or not; the one without a node is left out.
            #expect(devices.map(\.devnode) == ["/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyUSB2", "/dev/ttyS0"])
            let byNode = Dictionary(devices.map { ($0.devnode ?? "", $0) }, uniquingKeysWith: { first, _ in first })

            // Full identity from udev properties…
            #expect(byNode["/dev/ttyUSB0"] == listed.expectedInfo)
            let info = try #require(byNode["/dev/ttyUSB0"])
            #expect(info.byIDLinks == ["/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"])
            #expect(info.busPath == "pci-0000:00:14.0-usb-0:2:1.0")
            #expect(
                info.identity == [
                    "devnode": "/dev/ttyUSB0", "syspath": .string(listed.ttyPath), "vendor_id": "0403", "product_id": "6001",
                    "manufacturer": "FTDI", "product": "FT232R USB UART", "serial_number": "A50285BI",
                    "bus_path": "pci-0000:00:14.0-usb-0:2:1.0", "driver": "ftdi_sio",
                    "by_id": ["/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"],
                ])
            // …and from the USB parent's sysfs attributes when udevd has not run.
            #expect(byNode["/dev/ttyUSB2"] == bare.expectedInfo)
            // A built-in UART: no USB identity, the driver of its parent.
            #expect(
                byNode["/dev/ttyS0"]
                    == TTYDeviceInfo(devnode: "/dev/ttyS0", syspath: "/sys/devices/platform/serial8250/tty/ttyS0", driver: "serial8250"))

            // Every form of selector picks the listed adapter and nothing else.
            let selectors: [DeviceSelector] = [
                .usbSerial("A50285BI"),
                .usbSerial("A50285BI", vendorID: "0403", productID: "6001"),
                .byID("usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"),
                .byID("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"),
                .busPath("pci-0000:00:14.0-usb-0:2:1.0"),
                .path("/dev/nmbridge/dosecal-hotlab"),
                .path("/dev/ttyUSB0"),
            ]
            for selector in selectors {
                #expect(devices.filter(selector.matches).map(\.devnode) == ["/dev/ttyUSB0"], "\(selector)")
            }
            // The bare adapter is found by its serial from sysfs too.
            #expect(devices.filter(DeviceSelector.usbSerial("FTZ7Q1B9").matches).map(\.devnode) == ["/dev/ttyUSB2"])
            // Right serial, wrong vendor: nothing.
            #expect(devices.filter(DeviceSelector.usbSerial("A50285BI", vendorID: "067b").matches).isEmpty)

            // Present at start: the first decision attaches it, and stopping ends the sequence.
            let monitor = try UdevMonitor(logger: logger)
            var decisions = try hotplugDecisions(selector: .usbSerial("A50285BI"), monitor: monitor).makeAsyncIterator()
            let first = try await decisions.next()
            #expect(first == .attach(listed.expectedInfo, reason: .presentAtStart))
            monitor.stop()
            #expect(try await decisions.next() == nil)
            withExtendedLifetime(testbed) {}
        }

        @Test(.enabled(if: Umockdev.scenario == "hotplugUnderTestbed", "runs only in its umockdev child process"))
        func hotplugUnderTestbed() async throws {
            Umockdev.markStarted()
            let testbed = try UmockdevTestbed()
            let listed = FakeSerialAdapter.listed
            let unlisted = FakeSerialAdapter.unlisted
            let bare = FakeSerialAdapter.bare
            func plugIn(_ adapter: FakeSerialAdapter) throws {
                // umockdev announces each device ("add") as it creates it, parent first.
                try testbed.add(adapter.record)
            }
            func unplug(_ adapter: FakeSerialAdapter) {
                // The kernel announces the removal, then sysfs forgets the device: what
                // the consumer learns must come from the event alone.
                for path in adapter.pathsParentFirst.reversed() {
                    testbed.uevent("remove", path)
                    // One by one: umockdev removes the class link of the named device only.
                    testbed.remove(path)
                }
            }

            let fdsBefore = openFileDescriptors()
            try testbed.add(unlisted.record)  // plugged in before the driver starts
            // `raw` shows what the monitor reports; `decisions` follows its own monitor.
            let raw = try UdevMonitor(logger: logger)
            let decisionMonitor = try UdevMonitor(logger: logger)
            var events = raw.events.makeAsyncIterator()
            var decisions = try hotplugDecisions(selector: .usbSerial("A50285BI", vendorID: "0403"), monitor: decisionMonitor)
                .makeAsyncIterator()

            // An unlisted adapter appears: reported by the monitor (tty events only, though
            // four devices were announced), no decision.
            try plugIn(bare)
            #expect(try await nextEvent(&events, stopping: raw) == .added(bare.expectedInfo))

            // The listed adapter appears: attach, with the full identity. Being the first
            // decision, it also shows that neither the unlisted adapter present at start
            // nor the one just plugged in produced one.
            try plugIn(listed)
            #expect(try await nextEvent(&events, stopping: raw) == .added(listed.expectedInfo))
            #expect(try await nextEvent(&decisions, stopping: decisionMonitor) == .attach(listed.expectedInfo, reason: .pluggedIn))

            // Unlisted one unplugged: no decision. Listed one unplugged: detach, with the
            // identity known from the attach although the removal carried only paths.
            unplug(bare)
            let bareRemoval = try await nextEvent(&events, stopping: raw)
            #expect(bareRemoval?.device.syspath == bare.ttyPath)
            unplug(listed)
            let removal = try await nextEvent(&events, stopping: raw)
            guard case .removed(let removed)? = removal else {
                Issue.record("expected a removal, got \(String(describing: removal))")
                return
            }
            #expect(removed.syspath == listed.ttyPath)
            #expect(removed.devnode == "/dev/ttyUSB0")
            #expect(try await nextEvent(&decisions, stopping: decisionMonitor) == .detach(listed.expectedInfo, reason: .unplugged))

            // A re-announcement of the unlisted adapter ("change") while nothing is
            // attached: no decision. Plugging the listed adapter in again: attach.
            testbed.uevent("change", unlisted.ttyPath)
            #expect(try await nextEvent(&events, stopping: raw) == .added(unlisted.expectedInfo))
            try plugIn(listed)
            #expect(try await nextEvent(&events, stopping: raw) == .added(listed.expectedInfo))
            #expect(try await nextEvent(&decisions, stopping: decisionMonitor) == .attach(listed.expectedInfo, reason: .pluggedIn))

            // Stopping ends both sequences and closes every descriptor the monitors opened,
            // also for a monitor that is only released, never stopped.
            raw.stop()
            decisionMonitor.stop()
            #expect(try await events.next() == nil)
            #expect(try await decisions.next() == nil)
            do {
                let released = try UdevMonitor(logger: logger)
                #expect(openFileDescriptors().count > fdsBefore.count)
                _ = released
            }
            // Sockets and pipes only: the runtime opens descriptors of its own meanwhile
            // (e.g. the timerfd behind Task.sleep).
            let leaked = openFileDescriptors().subtracting(fdsBefore).sorted()
                .map { "\($0) → " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) ?? "?") }
                .filter { $0.contains("socket:") || $0.contains("pipe:") }
            #expect(leaked.isEmpty, "sockets or pipes opened since the monitors were created and still open")
            withExtendedLifetime(testbed) {}
        }
    }
}

/// The next element, or nil after 10 s: a watchdog then stops the monitor, which ends
/// the sequence (and with it the rest of the scenario, quickly).
private func nextEvent<Iterator: AsyncIteratorProtocol>(
    _ iterator: inout Iterator, stopping monitor: UdevMonitor, sourceLocation: Testing.SourceLocation = #_sourceLocation
) async throws -> Iterator.Element? {
    let watchdog = Task {
        try await Task.sleep(for: .seconds(10))
        monitor.stop()
    }
    defer { watchdog.cancel() }
    let element = try await iterator.next()
    #expect(element != nil, "nothing within 10 s", sourceLocation: sourceLocation)
    return element
}

/// The open file descriptors of this process (from /proc/self/fd, which the umockdev
/// preload library leaves alone).
private func openFileDescriptors() -> Set<Int32> {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return Set(names.compactMap { Int32($0) })
}
