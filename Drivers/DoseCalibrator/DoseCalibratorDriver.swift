import Foundation
import Logging
import NMBridgeCore
import NMTransport

/// Settings shared by every dose calibrator driver, plus the family's own (its method table
/// with the device's parameters).
public struct DoseCalibratorSettings: Sendable {
    /// Which serial port: a fixed path, or a USB adapter found through udev hotplug.
    public var selector: DeviceSelector
    public var serial: SerialSettings
    public var pollInterval: Duration
    public var replyTimeout: Duration
    public var settle: SettleRule
    public var emitReadings: Bool
    public var errorInterval: Duration
    /// Unanswered polls in a row before a USB adapter is reset (0: never).
    public var usbResetAfterTimeouts: Int
    public var family: any DoseCalibratorFamily
    /// Where attach/detach decisions come from for USB selectors (udev; tests inject).
    var hotplug: @Sendable (DeviceSelector, Logger) throws -> HotplugDecisions = { selector, logger in
        try hotplugDecisions(selector: selector, monitor: UdevMonitor(logger: logger))
    }
}

/// A dose calibrator on a serial line (RS-232, USB-serial adapter, or a simulator's pty).
///
/// Read-only: it sends only the family's reading request. It opens the port, polls (or
/// listens), journals settled measurements, and reopens the port by itself after an
/// error or an unplug, with capped back-off. Every answer is a heartbeat, so the staleness
/// watchdog outside the driver journals `device.stale` when a polled device stops
/// answering and `device.recovered` when it answers again.
public struct DoseCalibratorDriver<Family: DoseCalibratorFamily>: Driver {
    public typealias Settings = DoseCalibratorSettings

    public static var manifest: DriverManifest {
        DriverManifest(
            name: Family.driverName, version: "1.0.0", maturity: .simulated, transports: ["serial"],
            summary: Family.summary, configKeys: commonKeys + Family.familyKeys)
    }

    static var commonKeys: [DriverConfigKey] {
        var keys = [
            DriverConfigKey("path", "string", "A fixed serial device, e.g. `/dev/nmbridge/dosecal-hotlab` (a udev symlink) or `/dev/ttyS0`; reopened after errors."),
            DriverConfigKey("usb_serial", "string", "Instead of path: the USB-serial adapter's serial number (`udevadm info`), followed through hotplug."),
            DriverConfigKey("usb_vendor", "string", "With usb_serial: the adapter's USB vendor id (4 hex digits), to narrow the match."),
            DriverConfigKey("usb_product", "string", "With usb_serial: the adapter's USB product id."),
            DriverConfigKey("by_id", "string", "Instead of path: the adapter's name under /dev/serial/by-id/, followed through hotplug."),
            DriverConfigKey("bus_path", "string", "Instead of path: the USB port (udev ID_PATH, e.g. `pci-0000:00:14.0-usb-0:2:1.0`), followed through hotplug."),
            DriverConfigKey(
                "serial", "table",
                "Line settings `{ baud, data_bits, parity, stop_bits, flow_control }`; default \(Family.defaultSerial)."),
            DriverConfigKey(
                "settle", "string",
                "When a reading is a measurement: `polls` (N consecutive polls within a band) or `device` (the device's own final marker). Default: \(Family.defaultSettle == .device ? "device" : "polls")."),
            DriverConfigKey("settle_polls", "integer", "Consecutive polls for `settle = \"polls\"` (default 3)."),
            DriverConfigKey("settle_band_pct", "number", "How much a poll may differ from the one before, in % (default 1.0)."),
            DriverConfigKey("min_activity_bq", "number", "Below this the chamber counts as empty (default 1e5 Bq)."),
            DriverConfigKey("emit_readings", "boolean", "Journal every reading as `dosecal.reading` (default false; for diagnosis)."),
            ProtocolErrorLimiter.configKey,
        ]
        if Family.isPolled {
            keys += [
                DriverConfigKey("poll_ms", "integer", "Poll interval in ms, 100–60000 (default 1000)."),
                DriverConfigKey("reply_timeout_ms", "integer", "How long to wait for a reply, in ms (default 1000, at most poll_ms)."),
                DriverConfigKey(
                    "usb_reset_after_timeouts", "integer",
                    "Unanswered polls in a row after which a USB adapter whose port stays open is reset (libusb), at most once per 5 min; 0 turns it off (default 5)."),
            ]
        }
        return keys
    }

    public static func settings(from reader: ConfigTableReader) -> Settings? {
        // Every bad value is recorded on `reader`; a default stands in meanwhile, and any
        // new problem makes the settings unusable.
        let problemsBefore = reader.problems.count
        let selector = DeviceSelector.read(from: reader)
        let serial = SerialSettings.read(from: reader, defaults: Family.defaultSerial)
        var pollMs: Int64 = 1000
        var replyMs: Int64 = 1000
        var resetAfter = 0
        if Family.isPolled {
            pollMs = reader.int("poll_ms", in: 100...60_000) ?? 1000
            replyMs = reader.int("reply_timeout_ms", in: 10...60_000) ?? min(1000, pollMs)
            if replyMs > pollMs { reader.problem("reply_timeout_ms", "must not exceed poll_ms (\(pollMs))") }
            resetAfter = Int(reader.int("usb_reset_after_timeouts", in: 0...1000) ?? 5)
        }
        var mode = Family.defaultSettle
        if let choice = reader.choice("settle", ["polls", "device"]) {
            mode = choice == "device" ? .device : .polls(count: 3, band: 0.01)
        }
        if case .polls = mode {
            let count = reader.int("settle_polls", in: 2...100) ?? 3
            let bandPct = reader.double("settle_band_pct", in: 0.01...50) ?? 1
            mode = .polls(count: Int(count), band: bandPct / 100)
        }
        let minActivity = reader.double("min_activity_bq", in: 0...1e12) ?? 100_000
        let emitReadings = reader.bool("emit_readings") ?? false
        let errorInterval = ProtocolErrorLimiter.interval(from: reader)
        let family = Family(from: reader)
        guard reader.problems.count == problemsBefore, let selector, let serial, let family else { return nil }
        return Settings(
            selector: selector, serial: serial, pollInterval: .milliseconds(pollMs), replyTimeout: .milliseconds(replyMs),
            settle: SettleRule(mode: mode, minActivityBq: minActivity), emitReadings: emitReadings,
            errorInterval: errorInterval, usbResetAfterTimeouts: resetAfter, family: family)
    }

    public static func defaultStaleAfter(_ settings: Settings) -> Double? {
        // A polled device that misses five polls (at least 5 s) is stale; a printer port
        // is silent between measurements, so it never is by default.
        guard Family.isPolled else { return nil }
        return staleAfter(polledEvery: settings.pollInterval)
    }

    let settings: Settings
    let context: DriverContext

    public init(settings: Settings, context: DriverContext) {
        self.settings = settings
        self.context = context
    }

    public func run() async throws {
        if case .path(let path) = settings.selector.criterion {
            try await serve(path: path, tty: nil, reason: "opened")
        } else {
            try await followHotplug()
        }
    }

    /// A USB adapter chosen by serial number, by-id name or port: attach when it is
    /// present or plugged in, detach when it is unplugged, ignore every other device.
    private func followHotplug() async throws {
        let decisions = try settings.hotplug(settings.selector, context.logger)
        try await context.reportLink(.down(reason: "waiting for \(settings.selector) to be plugged in"))
        var session: Task<Void, any Error>?
        defer { session?.cancel() }
        for try await decision in decisions {
            switch decision {
            case .attach(let info, let reason):
                session?.cancel()
                _ = await session?.result
                guard let devnode = info.devnode else { continue }
                context.logger.info("dose calibrator attached", metadata: ["path": "\(devnode)", "reason": "\(reason)"])
                // On the driver's thread: a session on the shared pool once polled every ten
                // seconds while the pool was busy.
                session = Task(executorPreference: context.executor) { try await serve(path: devnode, tty: info, reason: reason.rawValue) }
            case .detach(let info, let reason):
                session?.cancel()
                _ = await session?.result
                session = nil
                context.logger.info("dose calibrator detached", metadata: ["path": "\(info.devnode ?? info.syspath)"])
                try await context.reportLink(.down(reason: reason.rawValue))
            }
        }
        throw NMBridgeError(.transportFailed, "the udev monitor for \(settings.selector) stopped")
    }

    /// Opens `path` and talks to the calibrator until cancelled; reopens the port after an
    /// error with capped back-off (1 s doubling to 30 s). `tty` is the adapter's udev
    /// identity when it came from hotplug; for a fixed path it is looked up in udev at each
    /// open (a USB adapter behind /dev/nmbridge/… is known there, a pty is not).
    private func serve(path: String, tty: TTYDeviceInfo?, reason: String) async throws {
        var retryDelay = 1.0
        var everOpened = false
        var lastFailure: String?
        var wedge = WedgeDetector(threshold: max(settings.usbResetAfterTimeouts, 1))
        while true {
            try Task.checkCancellation()
            let port: SerialPort
            do {
                port = try SerialPort.open(path: path, settings: settings.serial)
            } catch {
                let failure = "\(error)"
                if failure != lastFailure {
                    context.logger.warning("cannot open the dose calibrator's port", metadata: ["error": "\(failure)"])
                    lastFailure = failure
                }
                try await context.reportLink(.down(reason: failure))
                try await context.clock.sleep(for: .milliseconds(Int64(retryDelay * 1000)))
                retryDelay = min(retryDelay * 2, 30)
                continue
            }
            let adapter = tty ?? (try? Udev.enumerateTTYs())?.first(where: DeviceSelector.path(path).matches)
            var identity = adapter?.identity ?? [:]
            identity["path"] = .string(path)
            identity["serial"] = .string(settings.serial.description)
            retryDelay = 1
            lastFailure = nil
            try await context.reportLink(.up(reason: everOpened ? "reopened" : reason, identity: identity))
            everOpened = true
            var session = CalibratorSession(
                settings: settings, context: context, tty: settings.usbResetAfterTimeouts > 0 ? adapter : nil, wedge: wedge)
            do {
                defer { port.close() }
                // A session ends only by throwing: cancellation (shutdown, unplug) or a port error.
                try await session.run(port)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                context.logger.warning("dose calibrator link lost", metadata: ["error": "\(error)"])
                try await context.reportLink(.down(reason: "\(error)"))
            }
            wedge = session.wedge
            wedge.portClosed()
            try await context.clock.sleep(for: .seconds(1))
        }
    }
}

public typealias CapintecCRC15RDriver = DoseCalibratorDriver<CapintecCRC15RFamily>
public typealias CapintecCRC35RDriver = DoseCalibratorDriver<CapintecCRC35RFamily>
public typealias BiodexAtomlabDriver = DoseCalibratorDriver<BiodexAtomlabFamily>
public typealias DoseCalibratorLineDriver = DoseCalibratorDriver<DoseCalibratorLineFamily>
