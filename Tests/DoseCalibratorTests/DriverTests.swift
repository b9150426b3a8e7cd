import Foundation
import Logging
import NMBridgeCore
import ServiceLifecycle
import Synchronization
import Testing
import TestSupport

@testable import DoseCalibrator
@testable import NMTransport

/// A driver of the given family on a simulator's pty, configured from TOML like the daemon.
struct DriverRig {
    let simulator: DoseCalibratorSimulator
    let sink = RecordingSink(kinds: EventKindRegistry.dosecalKinds)
    let task: Task<Void, any Error>
    let directory: String

    init(
        model: SimulatedModel, driver: String, script: String, extra: String = "", selector: String? = nil,
        hotplug: (@Sendable (DeviceSelector, Logger) throws -> HotplugDecisions)? = nil
    ) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nmb-dosecal-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        simulator = try DoseCalibratorSimulator(
            model: model, script: try SimulatorScript.parse(script, source: "test"), link: directory + "/tty")
        let toml = """
            [[device]]
            id = "dosecal-test"
            driver = "\(driver)"
            \(selector ?? "path = \"\(directory)/tty\"")
            \(extra)
            """
        let configuration = try DaemonConfiguration.load(
            text: toml, file: "test.toml", drivers: DriverCatalog(doseCalibratorDrivers), defaultNode: "test")
        let device = configuration.devices[0]
        let entry = DriverCatalog(doseCalibratorDrivers).entries[driver]!
        var context = DriverContext(
            deviceID: device.id, driverName: driver, logger: Logger(label: "test"), clock: ContinuousClock(), sink: sink)
        // As the daemon's supervisor runs a driver: on a thread of its own.
        let executor = DeviceThreadExecutor(name: "driver test")
        context.executor = executor
        var settings = device.settings as! DoseCalibratorSettings
        if let hotplug { settings.hotplug = hotplug }
        let service = entry.make(settings, context)
        simulator.start()
        task = Task(executorPreference: executor) {
            defer { executor.shutdown() }
            try await service.run()
        }
    }

    /// The simulator's progress and what the driver reported, for failure messages.
    var diagnosis: String {
        let errors = sink.events("device.protocol_error").suffix(5).map { $0.data["error"]?.stringValue ?? "\($0.data)" }
        let links = sink.links.withLock { $0 }.suffix(5).map { state -> String in
            switch state {
            case .up(let reason, _): "up:\(reason)"
            case .down(let reason): "down:\(reason)"
            }
        }
        return "\(simulator.progress); links \(links); last protocol errors \(errors)"
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
        simulator.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

@Suite struct DoseCalibratorDriverTests {
    /// Steps counted in the driver's requests: the same session whatever the machine's
    /// load. The line model is never asked, so its script runs on time.
    static func vial(_ model: SimulatedModel) -> String {
        model == .line
            ? "empty for 500ms\nshow Tc-99m 740 MBq for 30s\nempty for 600s"
            : "empty for 3 requests\nshow Tc-99m 740 MBq for 40 requests\nempty for 600s"
    }

    @Test(arguments: [
        (SimulatedModel.crc15r, "capintec-crc15r"), (.crc35r, "capintec-crc35r"), (.atomlab500, "biodex-atomlab"),
        (.line, "dosecal-line"),
    ])
    func measurementArrivesWithBecquerel(model: SimulatedModel, driver: String) async throws {
        // A 1 s reply timeout: the simulator's thread, in a test process under load, can answer
        // later than 250 ms, and a late reply taken for the next one's is a protocol error
        // this test does not expect (a fresh-clone run at load 7). Timeouts are tested below.
        let rig = try DriverRig(model: model, driver: driver, script: Self.vial(model), extra: model == .line ? "" : "poll_ms = 1000")
        let arrived = await rig.sink.wait { !rig.sink.events("dosecal.measurement").isEmpty }
        // Let a few more polls pass: the same vial must not count twice.
        try await Task.sleep(for: .milliseconds(600))
        await rig.stop()
        #expect(arrived)
        let measurements = rig.sink.events("dosecal.measurement")
        #expect(measurements.count == 1, "\(measurements)")
        let m = try #require(measurements.first)
        #expect(m.data["nuclide"] == .string("Tc-99m"))
        #expect(m.data["activity_bq"] == .double(740e6))
        #expect(m.data["unit"] == .string("MBq"))
        #expect(m.device == "dosecal-test")
        #expect(m.driver == driver)
        #expect(m.raw?.isEmpty == false)
        if model == .crc35r { #expect(m.data["chamber"] == .int(1)) }
        #expect(rig.sink.events("device.protocol_error").isEmpty, "\(rig.sink.events("device.protocol_error"))")
        guard case .up(let reason, let identity)? = rig.sink.links.withLock({ $0.first }) else {
            Issue.record("no link up")
            return
        }
        #expect(reason == "opened")
        #expect(identity["path"] == .string(rig.directory + "/tty"))
    }

    @Test(arguments: [
        (SimulatedModel.crc15r, "capintec-crc15r"), (.crc35r, "capintec-crc35r"), (.atomlab500, "biodex-atomlab"),
    ])
    func garbageAndCorruptRepliesNeverBecomeMeasurements(model: SimulatedModel, driver: String) async throws {
        let script = """
            garbage for 4 requests
            bad-checksum for 4 requests
            noise 300
            split for 600s
            """
        // Generous reply timeout: a split reply takes 60 ms plus scheduling on a busy machine.
        let rig = try DriverRig(
            model: model, driver: driver, script: script,
            extra: "poll_ms = 250\nreply_timeout_ms = 250\nprotocol_error_interval_s = 0\nemit_readings = true")
        let sawSplit = await rig.sink.wait { !rig.sink.events("dosecal.measurement").isEmpty }
        await rig.stop()
        let measurements = rig.sink.events("dosecal.measurement")
        let errors = rig.sink.events("device.protocol_error")
        #expect(!errors.isEmpty)
        #expect(errors.allSatisfy { $0.data["error"] != nil })
        #expect(errors.contains { $0.data["bytes_hex"] != nil })
        // Replies split in pieces are reassembled: the one measurement is the split phase's
        // Tc-99m 740 MBq, never anything decoded from garbage.
        #expect(sawSplit)
        #expect(measurements.count == 1)
        #expect(measurements.allSatisfy { $0.data["activity_bq"] == .double(740e6) && $0.data["nuclide"] == .string("Tc-99m") })
        let readings = rig.sink.events("dosecal.reading")
        #expect(readings.allSatisfy { $0.data["activity_bq"] == .double(740e6) }, "\(readings.map(\.data))")
    }

    @Test func protocolErrorsAreRateLimitedWithASuppressedCount() async throws {
        let started = ContinuousClock.now
        let rig = try DriverRig(
            model: .crc15r, driver: "capintec-crc15r", script: "garbage for 600s", extra: "poll_ms = 100\nprotocol_error_interval_s = 1")
        func suppressedCounts() -> [Int64] {
            rig.sink.events("device.protocol_error").compactMap { if case .int(let n)? = $0.data["suppressed"] { n } else { nil } }
        }
        let got = await rig.sink.wait { suppressedCounts().contains { $0 > 0 } }
        await rig.stop()
        let elapsed = started.duration(to: .now).components.seconds
        let errors = rig.sink.events("device.protocol_error")
        #expect(got, "no error reported suppressed ones: \(errors.map(\.data))")
        // Ten garbage replies a second, at most one journaled per second.
        #expect(errors.count <= Int(elapsed) + 2, "\(errors.count) errors in \(elapsed) s")
        #expect(errors.first?.data["suppressed"] == nil)
    }

    /// Counted, not timed: a heartbeat needs an answer, so at every moment the driver's
    /// heartbeats are at most the simulator's replies (read in that order). The simulator
    /// leaves its 12 silent requests only when the driver has asked them, and heartbeats
    /// must come back after.
    @Test func silenceStopsHeartbeatsAndAnswersResumeThem() async throws {
        let rig = try DriverRig(
            model: .crc15r, driver: "capintec-crc15r", script: "empty for 10 requests\nsilence for 12 requests\nempty for 600s",
            // A reply timeout a loaded machine can keep: at 50 ms every reply came late, one
            // poll behind, and none counted again (a CI run at load ~15).
            extra: "poll_ms = 250\nreply_timeout_ms = 250")
        var excess: [(heartbeats: Int, replies: Int)] = []
        let resumed = await rig.sink.wait {
            let heartbeats = rig.sink.heartbeats.load(ordering: .relaxed)
            let replies = rig.simulator.replies
            if heartbeats > replies { excess.append((heartbeats, replies)) }
            return heartbeats >= 15
        }
        let heartbeats = rig.sink.heartbeats.load(ordering: .relaxed)
        let diagnosis = rig.diagnosis
        await rig.stop()
        #expect(excess.isEmpty, "heartbeats without answers: \(excess.prefix(5))")
        // In full fresh-clone runs (load ~15) heartbeats once never resumed: a read whose
        // timer fired before it waited hung until bytes came, and in a silence nothing comes
        // (SerialPortTests.aTimerThatFiresBeforeTheReadWaitsStillEndsTheRead).
        #expect(resumed, "heartbeats did not resume after the silence: \(heartbeats) heartbeats; simulator: \(diagnosis)")
    }

    @Test func unplugAndReplugReopensThePort() async throws {
        let rig = try DriverRig(
            model: .crc15r, driver: "capintec-crc15r",
            script: "show Tc-99m 740 MBq for 20 requests\ndisconnect for 1s\nshow F-18 370 MBq for 600s", extra: "poll_ms = 250")
        let both = await rig.sink.wait { rig.sink.events("dosecal.measurement").count >= 2 }
        let diagnosis = rig.diagnosis
        await rig.stop()
        #expect(both, "no second measurement after the replug: \(rig.sink.events("dosecal.measurement").map { $0.data["nuclide"] }); \(diagnosis)")
        let links = rig.sink.links.withLock { $0 }
        let reasons = links.map { state -> String in
            switch state {
            case .up(let reason, _): "up:\(reason)"
            case .down: "down"
            }
        }
        #expect(reasons.first == "up:opened")
        #expect(reasons.contains("down"))
        #expect(reasons.contains("up:reopened"))
        #expect(rig.sink.events("dosecal.measurement").map { $0.data["nuclide"] } == [.string("Tc-99m"), .string("F-18")])
    }

    @Test func aVialShowsOnlyInItsChamber() async throws {
        let rig = try DriverRig(
            model: .crc35r, driver: "capintec-crc35r", script: "show F-18 370 MBq for 600s chamber 3",
            extra: "poll_ms = 1000\nchambers = [1, 3]")  // 1 s reply timeout, as above
        let arrived = await rig.sink.wait { !rig.sink.events("dosecal.measurement").isEmpty }
        try await Task.sleep(for: .milliseconds(500))
        await rig.stop()
        #expect(arrived)
        #expect(rig.sink.events("dosecal.measurement").map { $0.data["chamber"] } == [.int(3)])
    }

    @Test func multiChamberCRC35R() async throws {
        let rig = try DriverRig(
            model: .crc35r, driver: "capintec-crc35r", script: "show Ga-68 1.2 GBq for 600s", extra: "poll_ms = 1000\nchambers = [1, 3]")
        let both = await rig.sink.wait { Set(rig.sink.events("dosecal.measurement").compactMap { $0.data["chamber"] }).count == 2 }
        await rig.stop()
        #expect(both)
        #expect(rig.sink.events("dosecal.measurement").allSatisfy { $0.data["activity_bq"] == .double(1.2e9) })
    }
}

@Suite struct DoseCalibratorHotplugTests {
    /// The driver follows attach/detach decisions for a USB selector: the adapter is
    /// plugged in (here: udev events fed by the test, naming the simulator's pty as the
    /// device node), unplugged, and plugged in again; an unlisted adapter is ignored.
    @Test func attachesOnPlugDetachesOnUnplugIgnoresOthers() async throws {
        let (events, feed) = AsyncThrowingStream<HotplugEvent, any Error>.makeStream()
        let rig = try DriverRig(
            model: .crc15r, driver: "capintec-crc15r", script: "show Tc-99m 740 MBq for 600s", extra: "poll_ms = 250",
            selector: "usb_serial = \"A50285BI\"",
            hotplug: { selector, _ in HotplugDecisions(selector: selector, present: [], events: events) })
        let adapter = TTYDeviceInfo(
            devnode: rig.simulator.path, syspath: "/sys/devices/pci0000:00/usb1/1-2/1-2:1.0/ttyUSB0/tty/ttyUSB0",
            vendorID: "0403", productID: "6001", manufacturer: "FTDI", product: "FT232R USB UART", serialNumber: "A50285BI",
            busPath: "pci-0000:00:14.0-usb-0:2:1.0")
        let stranger = TTYDeviceInfo(
            devnode: "/dev/nmbridge-test-none", syspath: "/sys/devices/other/ttyUSB1", vendorID: "0403", productID: "6001",
            serialNumber: "FT999999")
        func reasons() -> [String] {
            rig.sink.links.withLock { links in
                links.map { if case .up(let reason, _) = $0 { "up:\(reason)" } else if case .down(let reason) = $0 { "down:\(reason)" } else { "" } }
            }
        }
        #expect(await rig.sink.wait { reasons().first?.hasPrefix("down:waiting for usb_serial") == true })
        feed.yield(.added(stranger))
        feed.yield(.added(adapter))
        #expect(await rig.sink.wait { !rig.sink.events("dosecal.measurement").isEmpty })
        feed.yield(.removed(stranger))
        feed.yield(.removed(adapter))
        #expect(await rig.sink.wait { reasons().last == "down:unplugged" })
        feed.yield(.added(adapter))
        #expect(await rig.sink.wait { reasons().filter { $0 == "up:plugged in" }.count == 2 })
        feed.finish()
        await rig.stop()
        #expect(Array(reasons().prefix(4)) == ["down:waiting for usb_serial \"A50285BI\" to be plugged in", "up:plugged in", "down:unplugged", "up:plugged in"], "\(reasons())")
        guard case .up(_, let identity)? = rig.sink.links.withLock({ $0.dropFirst().first }) else { return }
        #expect(identity["serial_number"] == .string("A50285BI"))
        #expect(identity["vendor_id"] == .string("0403"))
        #expect(identity["path"] == .string(rig.simulator.path))
    }
}

/// The drivers against independent implementations of the protocols (Python scripts
/// written from the protocol notes, no shared code), over a socat pty pair.
@Suite struct IndependentPeerTests {
    static let root = repositoryRoot

    /// Runs `driver` on one end of a socat pty pair with the Python `peer` on the other,
    /// until `done` holds for what the driver emitted (or the wait gives up); returns the sink.
    func withPeer(
        _ peer: String, _ peerArguments: [String], driver: String, extra: String,
        until done: @escaping @Sendable (RecordingSink) -> Bool
    ) async throws -> (sink: RecordingSink, finished: Bool) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nmb-socat-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socat = Process()
        socat.executableURL = URL(fileURLWithPath: "/usr/bin/socat")
        socat.arguments = ["pty,raw,echo=0,link=\(dir)/driver", "pty,raw,echo=0,link=\(dir)/device"]
        socat.standardOutput = FileHandle.nullDevice
        socat.standardError = FileHandle.nullDevice
        try socat.runBoundToTest()
        // SIGKILL: children inherit the test runner's blocked signal mask, so SIGTERM may
        // never arrive, and a survivor would hold the runner's output open.
        defer { stopProcess(socat) }
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: dir + "/device") {
            try await Task.sleep(for: .milliseconds(20))
        }
        let device = Process()
        device.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        device.arguments = ["python3", Self.root + "/Tests/Peers/" + peer, dir + "/device"] + peerArguments
        device.standardOutput = FileHandle.nullDevice
        device.standardError = FileHandle.nullDevice
        try device.runBoundToTest()
        defer { stopProcess(device) }

        let sink = RecordingSink(kinds: EventKindRegistry.dosecalKinds)
        let configuration = try DaemonConfiguration.load(
            text: "[[device]]\nid = \"peer\"\ndriver = \"\(driver)\"\npath = \"\(dir)/driver\"\n\(extra)",
            file: nil, drivers: DriverCatalog(doseCalibratorDrivers), defaultNode: "n")
        let entry = DriverCatalog(doseCalibratorDrivers).entries[driver]!
        let service = entry.make(
            configuration.devices[0].settings,
            DriverContext(deviceID: "peer", driverName: driver, logger: Logger(label: "t"), clock: ContinuousClock(), sink: sink))
        let task = Task { try await service.run() }
        let finished = await sink.wait { done(sink) }
        task.cancel()
        _ = try? await task.value
        return (sink, finished)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/socat"), "socat is installed by scripts/test"))
    func crc35rAgainstAPythonDeviceOverSocat() async throws {
        let (sink, arrived) = try await withPeer(
            "crc35r_device.py", ["Tc99m", "740.0", "4", "3"], driver: "capintec-crc35r",
            extra: "poll_ms = 250\nprotocol_error_interval_s = 0"
        ) { !$0.events("dosecal.measurement").isEmpty }
        #expect(arrived)
        let m = try #require(sink.events("dosecal.measurement").first)
        #expect(m.data["activity_bq"] == .double(740e6))
        #expect(m.data["nuclide"] == .string("Tc-99m"))
        #expect(m.data["chamber"] == .int(1))
        let errors = sink.events("device.protocol_error").compactMap { $0.data["error"]?.stringValue }
        #expect(errors.contains { $0.hasPrefix("checksum") }, "\(errors)")
    }

    /// A CRC-15R reply followed by junk in the same burst once counted towards settling, so
    /// 75 such replies still gave a measurement. Now each is an error only: the measurement
    /// comes from clean replies after the junk, and none before.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/socat"), "socat is installed by scripts/test"))
    func crc15rRepliesWithTrailingJunkNeverSettle() async throws {
        let junkReplies = 12
        let (sink, arrived) = try await withPeer(
            "crc15r_device.py", ["Tc99m", "740.0", "5", "\(junkReplies)"], driver: "capintec-crc15r",
            extra: "poll_ms = 250\nprotocol_error_interval_s = 0"
        ) { !$0.events("dosecal.measurement").isEmpty }
        #expect(arrived)
        let m = try #require(sink.events("dosecal.measurement").first)
        #expect(m.data["activity_bq"] == .double(740e6))
        #expect(m.data["nuclide"] == .string("Tc-99m"))
        // Everything emitted before the measurement: the junk replies were all errors.
        // (A pty may deliver the junk apart from its reply; the next poll then finds it.)
        let before = sink.drafts.withLock { events in Array(events.prefix { $0.kind != "dosecal.measurement" }) }
        let junkErrors = before.filter { event in
            guard event.kind == "device.protocol_error", let error = event.data["error"]?.stringValue else { return false }
            return error.hasPrefix("bytes after the reply") || error.hasPrefix("unexpected bytes between replies")
        }
        #expect(junkErrors.count >= junkReplies - 1, "\(before.map { "\($0.kind) \($0.data)" })")
    }
}

extension DoseCalibratorHotplugTests {
    /// An adapter whose port stays open but stops answering is reset through libusb after
    /// `usb_reset_after_timeouts` unanswered polls, journaled, and the port reopened. Here
    /// the adapter's sysfs entry does not exist, so the reset fails, with the reason; the
    /// reset itself is tested against umockdev in NMTransportTests.
    @Test func wedgedAdapterIsResetAndReopened() async throws {
        let (events, feed) = AsyncThrowingStream<HotplugEvent, any Error>.makeStream()
        let rig = try DriverRig(
            model: .crc15r, driver: "capintec-crc15r", script: "empty for 5 requests\nsilence for 600s",
            extra: "poll_ms = 100\nreply_timeout_ms = 50\nusb_reset_after_timeouts = 3",
            selector: "usb_serial = \"A50285BI\"",
            hotplug: { selector, _ in HotplugDecisions(selector: selector, present: [], events: events) })
        feed.yield(
            .added(
                TTYDeviceInfo(
                    devnode: rig.simulator.path, syspath: "/sys/devices/nmbridge-test/usb9/9-1/9-1:1.0/ttyUSB7/tty/ttyUSB7",
                    vendorID: "0403", productID: "6001", serialNumber: "A50285BI")))
        let reopened = await rig.sink.wait {
            rig.sink.links.withLock { $0.contains { if case .up("reopened", _) = $0 { true } else { false } } }
        }
        feed.finish()
        await rig.stop()
        #expect(reopened)
        let reset = try #require(rig.sink.events("device.usb_reset").first)
        #expect(reset.data["reason"] == .string("3 consecutive reply timeouts"))
        #expect(reset.data["result"] == .string("failed"))
        #expect(reset.data["error"]?.stringValue?.contains("ttyUSB7") == true, "\(reset.data)")
        guard case .object(let usb)? = reset.data["usb"] else {
            Issue.record("no usb identity in \(reset.data)")
            return
        }
        #expect(usb["serial_number"] == .string("A50285BI"))
    }
}

@Suite struct DoseCalibratorConfigurationTests {
    func problems(_ body: String) -> [String] {
        do {
            _ = try DaemonConfiguration.load(
                text: "[[device]]\nid = \"d\"\n" + body, file: "c.toml", drivers: DriverCatalog(doseCalibratorDrivers), defaultNode: "n")
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    @Test func everyBadKeyIsNamedWithItsLine() {
        let found = problems(
            """
            driver = "capintec-crc15r"
            path = "/dev/ttyUSB0"
            serial = { baud = 4801, parity = "mark" }
            poll_ms = 5
            settle = "sometimes"
            unit_codes = { "2" = "furlongs" }
            emit_readings = "yes"
            """)
        let text = found.joined(separator: "\n")
        #expect(text.contains("c.toml:5: device[d].serial.baud"), "\(text)")
        #expect(text.contains("device[d].serial.parity"))
        #expect(text.contains("c.toml:6: device[d].poll_ms"))
        #expect(text.contains("c.toml:7: device[d].settle"))
        #expect(text.contains("device[d].unit_codes.2"))
        #expect(text.contains("c.toml:9: device[d].emit_readings"))
        #expect(problems("driver = \"capintec-crc15r\"").joined().contains("no serial port selected"))
        #expect(problems("driver = \"capintec-crc15r\"\nusb_vendor = \"0403\"\nusb_product = \"6001\"").joined().contains("shared by countless devices"))
        #expect(problems("driver = \"dosecal-line\"\npath = \"/dev/x\"\npattern = \"(?<x>\"").joined().contains("device[d].pattern"))
        #expect(problems("driver = \"capintec-crc35r\"\npath = \"/dev/x\"\nchambers = [0, 9]").joined().contains("device[d].chambers"))
        #expect(problems("driver = \"capintec-crc15r\"\npath = \"/dev/x\"\npoll_ms = 500\nreply_timeout_ms = 900").joined().contains("must not exceed poll_ms"))
    }

    @Test func polledDevicesGoStaleByDefaultPrinterPortsDoNot() throws {
        let polled = try DaemonConfiguration.load(
            text: "[[device]]\nid = \"d\"\ndriver = \"capintec-crc15r\"\npath = \"/dev/x\"\npoll_ms = 2000",
            file: nil, drivers: DriverCatalog(doseCalibratorDrivers), defaultNode: "n")
        #expect(polled.devices[0].staleAfter == 10)
        let line = try DaemonConfiguration.load(
            text: "[[device]]\nid = \"d\"\ndriver = \"dosecal-line\"\npath = \"/dev/x\"",
            file: nil, drivers: DriverCatalog(doseCalibratorDrivers), defaultNode: "n")
        #expect(line.devices[0].staleAfter == nil)
        let off = try DaemonConfiguration.load(
            text: "[[device]]\nid = \"d\"\ndriver = \"capintec-crc15r\"\npath = \"/dev/x\"\nstale_after_s = 0",
            file: nil, drivers: DriverCatalog(doseCalibratorDrivers), defaultNode: "n")
        #expect(off.devices[0].staleAfter == nil)
    }
}
