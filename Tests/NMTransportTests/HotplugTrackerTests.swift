import Testing

@testable import NMTransport

extension UdevTests {
    /// Attach/detach decisions from events, without udev.
    @Suite struct Tracker {
        let listed = FakeSerialAdapter.listed.expectedInfo
        let unlisted = FakeSerialAdapter.unlisted.expectedInfo
        let selector = DeviceSelector.usbSerial("A50285BI")

        /// What a removal event carries under udevd: paths, not necessarily the identity.
        func removal(of info: TTYDeviceInfo) -> HotplugEvent {
            .removed(TTYDeviceInfo(devnode: info.devnode, syspath: info.syspath))
        }

        @Test func presentAtStartThenUnpluggedThenPluggedIn() {
            var tracker = HotplugTracker(selector: selector)
            #expect(tracker.start(present: [unlisted, listed]) == .attach(listed, reason: .presentAtStart))
            #expect(tracker.handle(.added(listed)) == nil, "a re-announcement (change) is no news")
            #expect(tracker.handle(removal(of: unlisted)) == nil)
            #expect(tracker.handle(removal(of: listed)) == .detach(listed, reason: .unplugged))
            #expect(tracker.attached == nil)
            #expect(tracker.handle(removal(of: listed)) == nil)
            #expect(tracker.handle(.added(unlisted)) == nil)
            #expect(tracker.handle(.added(listed)) == .attach(listed, reason: .pluggedIn))
            #expect(tracker.attached == listed)
        }

        @Test func nothingMatchingMeansNoDecision() {
            var tracker = HotplugTracker(selector: selector)
            #expect(tracker.start(present: [unlisted]) == nil)
            #expect(tracker.handle(.added(unlisted)) == nil)
            #expect(tracker.handle(removal(of: unlisted)) == nil)
        }

        @Test func firstMatchOnlyAndRemovalMatchedByPath() {
            // Two adapters answering to one selector (cloned chips sharing a serial): the
            // first keeps the binding, the second is ignored, also when it goes away.
            var clone = unlisted
            clone.serialNumber = "A50285BI"
            var tracker = HotplugTracker(selector: selector)
            #expect(tracker.handle(.added(listed)) == .attach(listed, reason: .pluggedIn))
            #expect(tracker.handle(.added(clone)) == nil)
            #expect(tracker.handle(removal(of: clone)) == nil)
            #expect(tracker.attached == listed)
            // Same node, other sysfs path (e.g. the event lacked the path): still the device.
            let byNode = HotplugEvent.removed(TTYDeviceInfo(devnode: "/dev/ttyUSB0", syspath: ""))
            #expect(tracker.handle(byNode) == .detach(listed, reason: .unplugged))
        }

        @Test func decisionsSequenceFollowsAnEventStream() async throws {
            let (events, continuation) = AsyncThrowingStream<HotplugEvent, any Error>.makeStream()
            let decisions = HotplugDecisions(selector: selector, present: [listed], events: events)
            for event in [HotplugEvent.added(unlisted), removal(of: listed), .added(unlisted), .added(listed)] {
                continuation.yield(event)
            }
            continuation.finish()
            var seen: [HotplugDecision] = []
            for try await decision in decisions { seen.append(decision) }
            #expect(
                seen == [
                    .attach(listed, reason: .presentAtStart), .detach(listed, reason: .unplugged),
                    .attach(listed, reason: .pluggedIn),
                ])
        }

        @Test func aFailingMonitorEndsTheDecisionsWithItsError() async {
            struct SocketGone: Error {}
            let (events, continuation) = AsyncThrowingStream<HotplugEvent, any Error>.makeStream()
            continuation.finish(throwing: SocketGone())
            var iterator = HotplugDecisions(selector: selector, present: [], events: events).makeAsyncIterator()
            await #expect(throws: SocketGone.self) { _ = try await iterator.next() }
        }

        @Test func identityIsJSONForTheJournal() {
            let uart = TTYDeviceInfo(devnode: "/dev/ttyS0", syspath: "/sys/devices/platform/serial8250/tty/ttyS0")
            #expect(uart.identity == ["devnode": "/dev/ttyS0", "syspath": "/sys/devices/platform/serial8250/tty/ttyS0"])
            #expect(listed.identity["by_id"] == ["/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"])
            #expect("\(listed)" == "/dev/ttyUSB0 (0403:6001 serial A50285BI)")
        }
    }
}
