import DicomStore
import Foundation
import Hummingbird
import Logging
import NIOCore
import NMBridgeCore
import NMCatalog
import NMForward
import NMJournal
import NMQualityControl
import NMShipper
import ServiceLifecycle

/// Composes and runs the daemon: journal, driver supervisor, retention, HTTP API and
/// sd_notify, as one `ServiceGroup` that shuts down gracefully on SIGTERM/SIGINT.
public enum Daemon {
    /// How long a graceful shutdown may take before the remaining tasks are cancelled.
    public static let gracefulShutdownLimit: Duration = .seconds(10)

    /// The ports the daemon ended up listening on (a configured port 0 is chosen by the
    /// system), given to `announce`.
    public struct Listeners: Sendable {
        /// The DICOM receiver's port, when `[dicom]` is configured.
        public var dicomPort: Int?
        /// Its DICOM TLS port, when `[dicom.tls]` is configured.
        public var dicomTLSPort: Int?
        /// The API's TCP port (and the web dashboard's), when `[api] tcp` is configured.
        public var apiPort: Int?
    }

    /// Runs until SIGTERM/SIGINT. `announce` is called once the API (and the DICOM
    /// receiver, when configured) is listening, at the same time as READY=1.
    public static func run(
        _ configuration: DaemonConfiguration, logger: Logger, catalog: DriverCatalog = .standard,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        announce: @escaping @Sendable (Listeners) -> Void = { _ in }
    ) async throws {
        let notifier = SystemdNotifier(environment: environment, logger: logger)
        // Files the configuration names are read before the state directory is touched.
        let token = try configuration.api.tokenFile.map(readToken)
        let lock = try StateLock(journalPath: configuration.journal.path)
        defer { lock.release() }
        let journal = try Journal.open(
            JournalOptions(
                path: configuration.journal.path, node: configuration.daemon.node, registry: catalog.eventKinds,
                sync: configuration.journal.sync, subscriberBuffer: configuration.api.subscriberBuffer),
            logger: logger)
        logger.info(
            "journal open",
            metadata: ["journal.path": "\(journal.path)", "journal.id": "\(journal.id.uuidString.lowercased())", "journal.last_seq": "\(journal.lastSeq)"])

        let monitor = DeviceMonitor(journal: journal, devices: configuration.devices, logger: logger)
        // The shipper, when [shipper] is configured; its password is read now so that a
        // missing file stops the daemon at start with a message naming it.
        var shipper: JournalShipper?
        if let settings = configuration.shipper {
            let connector = try PostgresConnector(settings, environment: environment)
            shipper = JournalShipper(journal: journal, settings: settings, connector: connector, logger: logger)
        }
        let qualityControl = configuration.qualityControl.map { settings in
            QualityControlService(
                journal: journal, settings: settings,
                zone: configuration.daemon.timeZone.flatMap(TimeZone.init(identifier:)) ?? .current, logger: logger)
        }
        let dicomStatus = configuration.dicom.map { _ in DicomReceiverStatus() }
        var routes = APIRoutes(
            journal: journal, monitor: monitor, node: configuration.daemon.node, shipper: shipper?.status, qc: qualityControl?.status,
            dashboard: DashboardSettings(
                sessions: DashboardSessions(path: configuration.daemon.stateDirectory + "/ui-sessions", logger: logger),
                zone: configuration.daemon.timeZone.flatMap(TimeZone.init(identifier:)) ?? .current),
            dicom: dicomStatus)
        // Forwarding and RRDSRs (NMForward), when [[dicom.destination]] or rrdsr is configured.
        let outbound = configuration.dicom.flatMap { dicom in
            dicom.outbound.isActive
                ? OutboundService(
                    journal: journal, dicom: dicom, qualityControl: configuration.qualityControl,
                    zone: configuration.daemon.timeZone.flatMap(TimeZone.init(identifier:)) ?? .current, node: configuration.daemon.node,
                    logger: logger) : nil
        }
        routes.outbound = outbound
        routes.tokenName = configuration.api.tokenFile.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
        let readiness = Readiness(
            expected: 1 + (configuration.api.tcpPort == nil ? 0 : 1) + (configuration.dicom == nil ? 0 : 1)
        ) { listeners in
            notifier.notify("READY=1\nSTATUS=journaling \(configuration.devices.count) device(s)")
            announce(listeners)
        }

        try UnixSocketPath.prepare(configuration.api.socketPath)
        let socketPath = configuration.api.socketPath
        let socketMode = configuration.api.socketMode
        var shippedThrough: (@Sendable () -> Int64)?
        if let status = shipper?.status {
            shippedThrough = { status.retentionLimit }
        }
        var services: [any Service] = [
            RetentionService(
                journal: journal, policy: RetentionPolicy(configuration.journal), logger: logger,
                shippedThrough: shippedThrough,
                mayDropUnshipped: configuration.shipper?.retentionMayDropUnshipped ?? false),
        ]
        // Services stop in reverse order: the shipper after the drivers, so that its last
        // batch holds everything they journaled (and `daemon.stopping`).
        if let shipper { services.append(shipper) }
        // The producers (drivers, the DICOM receiver) come after the announcer in the list, so
        // they stop before it: their last events precede `daemon.stopping`.
        var producers: [any Service] = [
            DriverSupervisor(
                devices: configuration.devices, catalog: catalog, monitor: monitor, settings: configuration.supervisor,
                logger: logger)
        ]
        services += [
            Application(
                router: routes.router(token: nil),
                configuration: ApplicationConfiguration(address: .unixDomainSocket(path: socketPath), serverName: "nmbridged"),
                onServerRunning: { _ in
                    chmod(socketPath, mode_t(socketMode))
                    logger.info("API listening", metadata: ["api.socket": "\(socketPath)"])
                    await readiness.arrived()
                },
                logger: logger),
        ]
        if let host = configuration.api.tcpHost, let port = configuration.api.tcpPort, let token {
            services.append(
                Application(
                    router: routes.router(token: token),
                    configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "nmbridged"),
                    onServerRunning: { channel in
                        logger.info("API listening", metadata: ["api.tcp": "\(channel.localAddress?.description ?? "\(host):\(port)")"])
                        await readiness.apiListening(port: channel.localAddress?.port ?? port)
                    },
                    logger: logger))
        }
        if let dicom = configuration.dicom {
            // `FileDescriptorName=dicom` in nmbridged-dicom.socket: systemd listens (port 104
            // needs no privilege of ours); otherwise the receiver binds [dicom] listen/port.
            let inherited = SocketActivation.descriptors(environment: environment)["dicom"]
            producers.append(
                DicomReceiver(
                    settings: dicom, sink: monitor, logger: logger, inheritedSocket: inherited,
                    isJournaled: { path, sha256 in
                        let query = EventQuery(
                            filter: EventFilter(kinds: ["dicom.instance.stored"]), limit: 1, newestFirst: true,
                            dataEquals: ["path": path, "sha256": sha256])
                        return try await !journal.events(query).events.isEmpty
                    },
                    status: dicomStatus,
                    onListening: { port, tlsPort in
                        Task { await readiness.dicomListening(port: port, tlsPort: tlsPort) }
                    }))
        }
        if let qualityControl { services.append(UntilItsShutdown(qualityControl)) }
        if let outbound { services.append(UntilItsShutdown(outbound)) }
        if let interval = SystemdNotifier.watchdogInterval(environment: environment) {
            services.append(WatchdogService(journal: journal, notifier: notifier, interval: interval, logger: logger))
        }
        // Services stop in reverse order. After the producers, the announcer is the first to hear
        // of a graceful shutdown: it journals it, tells systemd, and ends live streams so that
        // the HTTP servers can drain.
        services.append(ShutdownAnnouncer(journal: journal, notifier: notifier, logger: logger))
        services += producers

        try await journal.append(
            EventDraft(
                kind: "daemon.started",
                data: [
                    "version": .string(NMBridgeVersion.current), "pid": .int(Int64(getpid())),
                    "devices": .int(Int64(configuration.devices.count)), "demo": .bool(configuration.demo),
                ]))
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // A live-stream client that stops reading leaves its response blocked in a socket
        // write that graceful shutdown cannot end; after this long the remaining tasks are
        // cancelled, which ends such writes (well within systemd's TimeoutStopSec=30s).
        groupConfiguration.maximumGracefulShutdownDuration = Daemon.gracefulShutdownLimit
        let group = ServiceGroup(configuration: groupConfiguration)
        try await group.run()
        try? UnixSocketPath.remove(socketPath)
        logger.info("stopped", metadata: ["journal.last_seq": "\(journal.lastSeq)"])
    }

    static func readToken(_ path: String) throws -> String {
        let (token, problem) = DaemonConfiguration.API.token(path: path)
        guard let token else { throw NMBridgeError(.invalidConfiguration, "api.token_file: \(problem ?? "unusable")") }
        return token
    }
}

extension Daemon {
    /// `[daemon] node` when unset: the host name's first label.
    public static var defaultNode: String { DaemonConfiguration.defaultNode }
}

/// Calls `action` once all expected listeners are up.
actor Readiness {
    private var remaining: Int
    private var listeners = Daemon.Listeners()
    private let action: @Sendable (Daemon.Listeners) -> Void

    init(expected: Int, action: @escaping @Sendable (Daemon.Listeners) -> Void) {
        self.remaining = expected
        self.action = action
    }

    func arrived() {
        remaining -= 1
        if remaining == 0 { action(listeners) }
    }

    func apiListening(port: Int) {
        listeners.apiPort = port
        arrived()
    }

    func dicomListening(port: Int, tlsPort: Int?) {
        listeners.dicomPort = port
        listeners.dicomTLSPort = tlsPort
        arrived()
    }
}

/// Applies retention at start and then every hour. With a shipper, events after the last
/// one shipped to PostgreSQL are kept unless `mayDropUnshipped`.
struct RetentionService: Service {
    let journal: Journal
    let policy: RetentionPolicy
    let logger: Logger
    /// The last seq shipped to PostgreSQL; `nil` without a shipper.
    var shippedThrough: (@Sendable () -> Int64)? = nil
    var mayDropUnshipped = false
    var interval: Duration = .seconds(3600)

    func run() async throws {
        // A service that returns early would end the whole ServiceGroup: with retention
        // off there is nothing to do but wait for shutdown.
        guard policy.maxAge != nil || policy.maxBytes != nil else { return try await waitForShutdown() }
        await untilGracefulShutdown {
            while !Task.isCancelled {
                var policy = policy
                policy.shippedThrough = shippedThrough?()
                policy.mayDropUnshipped = mayDropUnshipped
                do {
                    try await journal.applyRetention(policy)
                } catch {
                    logger.error("journal retention failed", metadata: ["error": "\(error)"])
                }
                try await Task.sleep(for: interval)
            }
        }
    }
}

/// Pings the systemd watchdog at half its interval, but only while the journal answers
/// reads and no commit has been running for longer than the interval: a daemon whose
/// journal hangs (e.g. a stuck fsync) should be restarted.
struct WatchdogService: Service {
    let journal: Journal
    let notifier: SystemdNotifier
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await untilGracefulShutdown {
            while !Task.isCancelled {
                do {
                    _ = try await journal.bounds()
                    if let busy = journal.writeInProgressFor, busy > interval {
                        logger.error("journal commit has not finished; withholding watchdog ping", metadata: ["busy_s": "\(busy)"])
                    } else {
                        notifier.notify("WATCHDOG=1")
                    }
                } catch {
                    logger.error("journal does not answer; withholding watchdog ping", metadata: ["error": "\(error)"])
                }
                try await Task.sleep(for: interval / 2)
            }
        }
    }
}

/// Waits for graceful shutdown (or cancellation) and returns normally.
func waitForShutdown() async throws {
    try? await gracefulShutdown()
}

/// Runs `body` until it finishes or graceful shutdown cancels it. Cancellation at
/// shutdown is the normal way out, not an error for the ServiceGroup.
func untilGracefulShutdown(_ body: @escaping @Sendable () async throws -> Void) async {
    do {
        try await cancelWhenGracefulShutdown { try await body() }
    } catch is CancellationError {
    } catch {
        Logger(label: "nmbridged").error("service failed", metadata: ["error": "\(error)"])
    }
}

/// Waits for graceful shutdown, then journals `daemon.stopping`, sends STOPPING=1 and
/// closes live streams.
struct ShutdownAnnouncer: Service {
    let journal: Journal
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.info("shutting down")
        notifier.notify("STOPPING=1")
        do {
            try await journal.append(EventDraft(kind: "daemon.stopping", data: ["reason": "signal (SIGTERM or SIGINT)"]))
        } catch {
            logger.error("cannot journal daemon.stopping", metadata: ["error": "\(error)"])
        }
        journal.closeFollowers()
    }
}

/// One daemon per journal: an exclusive `flock` on `<journal>.lock`, released at exit
/// (also by the kernel when the process dies).
struct StateLock {
    let fd: Int32

    init(journalPath: String) throws {
        let path = journalPath + ".lock"
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw NMBridgeError(.journalUnusable, "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw NMBridgeError(.journalUnusable, "journal \(journalPath) is in use by another nmbridged (lock \(path))")
        }
    }

    func release() { close(fd) }
}

/// Unix socket files: a leftover from a crashed daemon is removed, a live one is not.
enum UnixSocketPath {
    static func prepare(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw NMBridgeError(.invalidConfiguration, "api.socket: cannot create directory \(directory)", underlying: error)
            }
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw NMBridgeError(.invalidConfiguration, "api.socket: \(path) exists and is not a socket; refusing to replace it")
        }
        if isListening(path) {
            throw NMBridgeError(.invalidConfiguration, "api.socket: another process is listening on \(path)")
        }
        try remove(path)
    }

    static func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT {
            throw NMBridgeError(.invalidConfiguration, "cannot remove stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func isListening(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard let (address, length) = UnixSocketAddress.make(path) else { return false }
        return withUnsafePointer(to: address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) == 0 }
        }
    }
}

/// A service that ends by itself when the journal closes its followers (the QC service):
/// the shutdown announcer closes them before the group reaches this service, and a service
/// that returns out of turn is "a service has finished unexpectedly" (exit status 1, seen
/// under load). It returns only once its own graceful shutdown has come.
struct UntilItsShutdown<Base: Service>: Service {
    let base: Base

    init(_ base: Base) { self.base = base }

    func run() async throws {
        try await base.run()
        try? await gracefulShutdown()
    }
}
