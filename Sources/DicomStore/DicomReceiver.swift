import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NMBridgeCore
import ServiceLifecycle

/// The DICOM C-STORE receiver (`[dicom]`): accepts associations from the configured
/// senders, stores what they send under the storage root, and journals associations and
/// instances. A `Service` of the daemon; its events go through the same sink as drivers'.
public struct DicomReceiver: Service {
    let shared: ReceiverContext
    let onListening: @Sendable (_ port: Int, _ tlsPort: Int?) -> Void
    /// A listening socket passed by systemd (socket activation), used instead of binding.
    let inheritedSocket: Int32?
    /// Whether the journal holds a `dicom.instance.stored` for a path and SHA-256 (for
    /// recovery at start; without it a file found in place is journaled again).
    let isJournaled: (@Sendable (_ path: String, _ sha256: String) async throws -> Bool)?

    public init(
        settings: DaemonConfiguration.Dicom, sink: any DriverEventSink, logger: Logger, inheritedSocket: Int32? = nil,
        isJournaled: (@Sendable (_ path: String, _ sha256: String) async throws -> Bool)? = nil,
        status: DicomReceiverStatus? = nil,
        onListening: @escaping @Sendable (_ port: Int, _ tlsPort: Int?) -> Void = { _, _ in }
    ) {
        shared = ReceiverContext(settings: settings, sink: sink, logger: logger)
        status?.attach(shared)
        self.inheritedSocket = inheritedSocket
        self.isJournaled = isJournaled
        self.onListening = onListening
    }

    public func run() async throws {
        let shared = shared
        let settings = shared.settings
        // A P-DATA-TF may be as large as we announced; the framer keeps the rest to 64 KiB.
        let maximumPDU = settings.maxPDULength
        // What a crash or kill left in .incoming: nothing there belongs to a live association yet.
        _ = await IncomingRecovery.run(shared, isJournaled: isJournaled)
        // What the spool holds is put in place and journaled before anyone can send more.
        if let spool = shared.spool {
            _ = try await SpoolRecovery.run(shared, spool: spool, isJournaled: isJournaled)
            shared.spoolReady.store(true, ordering: .releasing)
        }
        let materializer = Task { await shared.materializer.run(shared) }
        func bootstrap(tls: NIOSSLContext?) -> ServerBootstrap {
            ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(ChannelOptions.backlog, value: 64)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                // tcpOption, not socketOption: at the socket level the same number is
                // SO_DEBUG, which needs CAP_NET_ADMIN; without it every accepted connection
                // was closed at once (found under systemd, where the daemon has no capabilities).
                .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    let id = ObjectIdentifier(channel)
                    shared.connections.withLock { $0[id] = channel }
                    channel.closeFuture.whenComplete { _ in _ = shared.connections.withLock { $0.removeValue(forKey: id) } }
                    return channel.eventLoop.makeCompletedFuture {
                        if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PDUFramer(maximumLength: maximumPDU)))
                        try channel.pipeline.syncOperations.addHandler(AssociationHandler(shared: shared, tls: tls != nil))
                    }
                }
        }
        let channel: any Channel
        if let inheritedSocket {
            channel = try await bootstrap(tls: nil).withBoundSocket(inheritedSocket).get()
        } else {
            channel = try await bootstrap(tls: nil).bind(host: settings.listen, port: settings.port).get()
        }
        var listeners = [channel]
        var tlsPort: Int?
        if let tls = settings.tls {
            do {
                let secure = try await bootstrap(tls: try Self.tlsContext(tls)).bind(host: settings.listen, port: tls.port).get()
                listeners.append(secure)
                tlsPort = secure.localAddress?.port
            } catch {
                try? await channel.close()
                throw error
            }
        }
        let port = channel.localAddress?.port ?? settings.port
        shared.logger.info(
            "DICOM receiver listening",
            metadata: [
                "dicom.ae_title": "\(settings.aeTitle)", "dicom.port": "\(port)", "dicom.storage": "\(settings.storage)",
                "dicom.socket": "\(inheritedSocket == nil ? "bound" : "from systemd")",
                "dicom.tls_port": "\(tlsPort.map(String.init) ?? "none")",
            ])
        onListening(port, tlsPort)
        // Studies quiet for stable_after_s get their dicom.study.stable (also those pending
        // from before a restart).
        let watcher = Task {
            let period = Duration.milliseconds(Int64(max(0.2, min(5, settings.stableAfter / 4)) * 1000))
            while !Task.isCancelled {
                for (uid, study) in shared.studies.takeStable() {
                    await shared.emit("dicom.study.stable", device: study.device, data: StudyTracker.event(uid: uid, study: study))
                }
                try? await Task.sleep(for: period)
            }
        }
        defer { watcher.cancel() }
        // Ends on graceful shutdown (the daemon) or cancellation (tests): open associations
        // are closed with the listener, their partial files removed.
        let closing = listeners
        @Sendable func closeAll() {
            for listener in closing { listener.close(promise: nil) }
            for connection in shared.connections.withLock({ Array($0.values) }) { connection.close(promise: nil) }
        }
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await channel.closeFuture.get()
            } onGracefulShutdown: {
                closeAll()
            }
        } onCancel: {
            closeAll()
        }
        // The closed associations queue their last events; then what the materializer
        // holds is put in place and journaled before the receiver returns.
        // (Paused on a dispatch timer: this task may be cancelled, which ends Task.sleep at once.)
        func pause() async {
            await withCheckedContinuation { continuation in
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { continuation.resume() }
            }
        }
        for _ in 0..<100 where shared.liveHandlers.load(ordering: .relaxed) > 0 { await pause() }
        await pause()
        shared.readyFiles.close()
        shared.materializer.finish()
        await materializer.value
    }

    /// The DICOM TLS profile of BCP 195 (RFC 9325): TLS 1.2 or later, ECDHE with AES-GCM for
    /// TLS 1.2 (TLS 1.3's suites as they are); with a client CA, senders must present a
    /// certificate it issued. Errors name the file.
    static func tlsContext(_ tls: DaemonConfiguration.Dicom.TLS) throws -> NIOSSLContext {
        func load<T>(_ what: String, _ path: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch { throw NMBridgeError(.invalidConfiguration, "[dicom.tls] \(what) \(path): \(error)") }
        }
        let chain = try load("certificate", tls.certificate) { try NIOSSLCertificate.fromPEMFile(tls.certificate) }
        let key = try load("key", tls.key) { try NIOSSLPrivateKey(file: tls.key, format: .pem) }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.cipherSuites =
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
        if let clientCA = tls.clientCA {
            let roots = try load("client_ca", clientCA) { try NIOSSLCertificate.fromPEMFile(clientCA) }
            configuration.trustRoots = .certificates(roots)
            configuration.certificateVerification = .noHostnameVerification
        } else {
            configuration.certificateVerification = .none
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw NMBridgeError(
                .invalidConfiguration, "[dicom.tls] cannot set up TLS with \(tls.certificate) and \(tls.key): \(error)")
        }
    }
}
