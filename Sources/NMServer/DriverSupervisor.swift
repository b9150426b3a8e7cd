import Foundation
import Logging
import NMBridgeCore
import NMJournal
import ServiceLifecycle

/// Runs every enabled device's driver and keeps it running: a driver that throws (or
/// returns) is journaled as `driver.crashed`, restarted after a capped exponential
/// back-off, and journaled as `driver.restarted`. A crash never takes the daemon down.
/// The staleness watchdog runs here too, outside every driver.
public struct DriverSupervisor: Service {
    let devices: [DaemonConfiguration.Device]
    let catalog: DriverCatalog
    let monitor: DeviceMonitor
    let settings: DaemonConfiguration.Supervisor
    let logger: Logger
    let clock: any Clock<Duration>

    public init(
        devices: [DaemonConfiguration.Device], catalog: DriverCatalog, monitor: DeviceMonitor,
        settings: DaemonConfiguration.Supervisor, logger: Logger, clock: any Clock<Duration> = ContinuousClock()
    ) {
        self.devices = devices
        self.catalog = catalog
        self.monitor = monitor
        self.settings = settings
        self.logger = logger
        self.clock = clock
    }

    public func run() async throws {
        // Drivers stop by cancellation at shutdown; their CancellationErrors are not crashes.
        await untilGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for device in devices where device.enabled {
                    guard let entry = catalog.entries[device.driver] else { continue }
                    // A thread per device: its polls keep their pace whatever else the daemon does.
                    let executor = DeviceThreadExecutor(name: "driver \(device.id)")
                    group.addTask(executorPreference: executor) {
                        await supervise(device, entry, on: executor)
                        executor.shutdown()
                    }
                }
                if devices.contains(where: { $0.staleAfter != nil }) {
                    group.addTask { await watchStaleness() }
                }
                // With no enabled device the group would finish at once and, with it, the
                // daemon: keep the supervisor alive until shutdown.
                group.addTask { try? await waitForShutdown() }
            }
        }
    }

    /// Back-off before restart number `attempt` (1-based): initial · 2^(attempt−1), capped.
    static func backoff(attempt: Int, initial: Double, maximum: Double) -> Double {
        min(maximum, initial * pow(2, Double(min(attempt - 1, 60))))
    }

    private func supervise(_ device: DaemonConfiguration.Device, _ entry: DriverCatalogEntry, on executor: DeviceThreadExecutor) async {
        var logger = logger
        logger[metadataKey: "device.id"] = "\(device.id)"
        var attempt = 0
        while !Task.isCancelled {
            var context = DriverContext(
                deviceID: device.id, driverName: device.driver, logger: logger, clock: clock,
                sink: InstrumentIdentitySink.wrapping(monitor, for: device))
            context.executor = executor
            let driver = entry.make(device.settings, context)
            monitor.driverStarted(device.id)
            let started = ContinuousClock.now
            var failure: String
            do {
                try await driver.run()
                if Task.isCancelled { break }
                failure = "driver returned while the daemon is running"
            } catch {
                if Task.isCancelled { break }
                failure = "\(error)"
            }
            if started.duration(to: .now).seconds >= settings.resetAfter { attempt = 0 }
            attempt += 1
            let delay = Self.backoff(attempt: attempt, initial: settings.initialBackoff, maximum: settings.maxBackoff)
            logger.error(
                "driver crashed; restarting",
                metadata: ["error": "\(failure)", "attempt": "\(attempt)", "restart_in_s": "\(delay)"])
            var drafts: [EventDraft] = []
            if let disconnected = monitor.driverCrashed(device.id, error: failure) { drafts.append(disconnected) }
            drafts.append(
                EventDraft(
                    device: device.id, driver: device.driver, kind: "driver.crashed",
                    data: ["error": .string(failure), "attempt": .int(Int64(attempt)), "restart_in_s": .double(delay)]))
            await journal(drafts, logger: logger)
            let crashed = ContinuousClock.now
            do {
                try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            } catch {
                break
            }
            await journal(
                [
                    EventDraft(
                        device: device.id, driver: device.driver, kind: "driver.restarted",
                        data: ["attempt": .int(Int64(attempt)), "down_s": .double(crashed.duration(to: .now).seconds.rounded3)])
                ], logger: logger)
        }
        monitor.driverStopped(device.id)
    }

    private func watchStaleness() async {
        let interval = max(0.05, min(1.0, (devices.compactMap(\.staleAfter).min() ?? 1) / 4))
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
            } catch {
                return
            }
            let drafts = monitor.checkStaleness()
            for draft in drafts {
                logger.warning("device is stale", metadata: ["device.id": "\(draft.device ?? "")"])
            }
            if !drafts.isEmpty { await journal(drafts, logger: logger) }
        }
    }

    /// Journals the supervisor's events, retrying while the journal refuses (a full disk):
    /// the driver is not restarted before its crash is on record, and a restart while its
    /// events cannot be journaled would only crash again. Ends early only at shutdown.
    private func journal(_ drafts: [EventDraft], logger: Logger) async {
        _ = try? await monitor.journal.appendRetrying(drafts, what: "supervisor events", logger: logger, initialDelay: 0.1, maxDelay: 5)
    }
}
