import Logging
import NIOCore
import NIOPosix
import NMBridgeCore
import ServiceLifecycle

/// The DICOM C-STORE receiver (`[dicom]`): accepts associations from the configured
/// senders, stores what they send under the storage root, and journals associations and
/// instances. A `Service` of the daemon; its events go through the same sink as drivers'.
public struct DicomReceiver: Service {
    let shared: ReceiverContext
    let onListening: @Sendable (Int) -> Void
    /// A listening socket passed by systemd (socket activation), used instead of binding.
    let inheritedSocket: Int32?

    public init(
        settings: DaemonConfiguration.Dicom, sink: any DriverEventSink, logger: Logger, inheritedSocket: Int32? = nil,
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        shared = ReceiverContext(settings: settings, sink: sink, logger: logger)
        self.inheritedSocket = inheritedSocket
        self.onListening = onListening
    }

    public func run() async throws {
        let shared = shared
        let settings = shared.settings
        // A PDU may carry the largest P-DATA-TF we announced; association requests are small.
        let maximumPDU = max(settings.maxPDULength, 65_536)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                shared.connections.withLock { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in _ = shared.connections.withLock { $0.removeValue(forKey: id) } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PDUFramer(maximumLength: maximumPDU)))
                    try channel.pipeline.syncOperations.addHandler(AssociationHandler(shared: shared))
                }
            }
        let channel: any Channel
        if let inheritedSocket {
            channel = try await bootstrap.withBoundSocket(inheritedSocket).get()
        } else {
            channel = try await bootstrap.bind(host: settings.listen, port: settings.port).get()
        }
        let port = channel.localAddress?.port ?? settings.port
        shared.logger.info(
            "DICOM receiver listening",
            metadata: [
                "dicom.ae_title": "\(settings.aeTitle)", "dicom.port": "\(port)", "dicom.storage": "\(settings.storage)",
                "dicom.socket": "\(inheritedSocket == nil ? "bound" : "from systemd")",
            ])
        onListening(port)
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
        @Sendable func closeAll() {
            channel.close(promise: nil)
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
    }
}
