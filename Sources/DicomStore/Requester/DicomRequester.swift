import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import NIOSSL
import NMBridgeCore

/// Why an association or an operation on it failed. `code` says what a queue should do
/// about it: retry later (`connection`, `rejected` association, `aborted`, `timeout`,
/// `protocolError`) or give the job up (`notAccepted`, `file`).
public struct RequesterError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// Could not connect (refused, unreachable, TLS handshake).
        public static let connection = Code(name: "connection")
        /// The peer answered A-ASSOCIATE-RJ.
        public static let associationRejected = Code(name: "association_rejected")
        /// The peer aborted, or closed the connection.
        public static let aborted = Code(name: "aborted")
        /// Nothing moved on the association for the destination's timeout.
        public static let timeout = Code(name: "timeout")
        /// The peer sent something that is not what PS3.8 allows here.
        public static let protocolError = Code(name: "protocol")
        /// No presentation context for the SOP class and transfer syntax was accepted.
        public static let notAccepted = Code(name: "not_accepted")
        /// The stored file is unreadable or not Part-10.
        public static let file = Code(name: "file")
        public var description: String { name }
    }

    public var code: Code
    public var message: String
    public var description: String { message }

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Whether trying again later may succeed.
    public var isTransient: Bool { code != .notAccepted && code != .file }
}

/// What a C-STORE status means for the job (PS3.4 Annex B.2.3, PS3.7 Annex C).
public enum StoreStatusClass: Sendable, Equatable {
    case success, warning, duplicate
    /// Out of resources, processing failure: the destination may take it later.
    case transient
    /// Refused (SOP class not supported, dataset does not match, cannot understand, …).
    case rejected

    public init(_ status: UInt16) {
        switch status {
        case 0x0000: self = .success
        case 0x0111: self = .duplicate
        case 0x0001, 0xB000...0xBFFF: self = .warning
        case 0xA700...0xA7FF, 0x0110, 0x0213: self = .transient
        default: self = .rejected
        }
    }

    /// Whether the destination now holds the instance.
    public var isDelivered: Bool { self == .success || self == .warning || self == .duplicate }

    /// The status in words, for journal entries.
    public static func meaning(_ status: UInt16) -> String {
        switch status {
        case 0x0000: return "success"
        case 0x0001: return "warning: requested optional attributes not supported"
        case 0x0111: return "duplicate SOP instance"
        case 0x0110: return "processing failure"
        case 0x0122: return "SOP class not supported"
        case 0x0124: return "not authorized"
        case 0x0211: return "unrecognized operation"
        case 0x0213: return "resource limitation"
        case 0xB000: return "warning: coercion of data elements"
        case 0xB006: return "warning: elements discarded"
        case 0xB007: return "warning: data set does not match SOP class"
        case 0xA700...0xA7FF: return "refused: out of resources"
        case 0xA900...0xA9FF: return "error: data set does not match SOP class"
        case 0xC000...0xCFFF: return "error: cannot understand"
        default: return "failure"
        }
    }
}

/// A presentation context to propose: one SOP class and the transfer syntaxes offered for it.
public struct PresentationContextRequest: Sendable, Hashable {
    public var abstractSyntax: String
    public var transferSyntaxes: [String]

    public init(abstractSyntax: String, transferSyntaxes: [String]) {
        self.abstractSyntax = abstractSyntax
        self.transferSyntaxes = transferSyntaxes
    }

    /// The contexts needed to send `instances`: one per SOP class and stored transfer syntax,
    /// offering the syntax the file is in first (its dataset is then sent exactly as
    /// stored) and, for explicit VR little endian, implicit VR little endian as the lossless
    /// fallback (``ImplicitVRTranscoder``). At most 128, the most an association can carry.
    public static func forSending(_ instances: [StoredInstance]) -> [PresentationContextRequest] {
        var seen = Set<PresentationContextRequest>()
        var out: [PresentationContextRequest] = []
        for instance in instances {
            let request = PresentationContextRequest(
                abstractSyntax: instance.sopClass, transferSyntaxes: [instance.transferSyntax] + (fallbacks[instance.transferSyntax] ?? []))
            if seen.insert(request).inserted { out.append(request) }
            if out.count == 128 { break }
        }
        return out
    }

    /// Syntaxes a dataset can be converted to without loss, by stored syntax.
    static let fallbacks = [DICOM.TransferSyntax.explicitLittle: [DICOM.TransferSyntax.implicitLittle]]
}

/// The requestor side of the DICOM upper layer (PS3.8) on SwiftNIO: opens an association
/// to a destination, sends C-ECHO and C-STORE, releases. It uses the receiver's PDU codec
/// and framer, so both directions speak through the same code.
public enum DicomRequester {
    /// The largest P-DATA-TF we receive (responses are small).
    public static let ourMaxPDU: UInt32 = 65_536
    /// The largest P-DATA-TF we send when the peer sets no limit.
    static let unlimitedPDU = 1 << 20

    /// Opens an association, runs `body` on it, and releases it (or aborts it when `body`
    /// throws). Errors name the destination.
    public static func withAssociation<Result: Sendable>(
        to destination: DaemonConfiguration.Dicom.Destination, contexts: [PresentationContextRequest], logger: Logger,
        _ body: (inout RequesterAssociation) async throws -> Result
    ) async throws -> Result {
        let peer = "\(destination.aeTitle)@\(destination.host):\(destination.port)"
        let tls: NIOSSLContext?
        do {
            tls = try destination.tls.map(tlsContext)
        } catch {
            throw RequesterError(.connection, "\(peer): TLS setup failed: \(error)")
        }
        let serverName = destination.tls?.serverName ?? (destination.tls?.verifyHostname == true ? destination.host : nil)
        let timeout = TimeAmount.milliseconds(Int64(destination.timeout * 1000))
        let channel: NIOAsyncChannel<RawPDU, ByteBuffer>
        // The association's code runs on its channel's event loop (see EventLoopTaskExecutor).
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.milliseconds(Int64(destination.connectTimeout * 1000)))
                .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                .connect(host: destination.host, port: destination.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        if let tls { try pipeline.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
                        try pipeline.addHandler(IdleStateHandler(allTimeout: timeout))
                        try pipeline.addHandler(RequesterIdleHandler(peer: peer, seconds: destination.timeout))
                        try pipeline.addHandler(ByteToMessageHandler(PDUFramer(maximumLength: Int(ourMaxPDU))))
                        return try NIOAsyncChannel<RawPDU, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw RequesterError(.connection, "cannot connect to \(peer): \(error)")
        }
        return try await withTaskExecutorPreference(EventLoopTaskExecutor(loop)) {
            try await exchange(on: channel, peer: peer, destination: destination, contexts: contexts, logger: logger, body)
        }
    }

    private static func exchange<Result: Sendable>(
        on channel: NIOAsyncChannel<RawPDU, ByteBuffer>, peer: String, destination: DaemonConfiguration.Dicom.Destination,
        contexts: [PresentationContextRequest], logger: Logger, _ body: (inout RequesterAssociation) async throws -> Result
    ) async throws -> Result {
        try await channel.executeThenClose { inbound, outbound in
            var association = RequesterAssociation(
                peer: peer, destination: destination, iterator: inbound.makeAsyncIterator(), outbound: outbound, logger: logger)
            try await association.associate(contexts)
            let result: Result
            do {
                result = try await body(&association)
            } catch {
                await association.abort()
                throw error
            }
            try await association.release()
            return result
        }
    }

    /// Runs a task's jobs on an event loop: the association's task, given this as its
    /// executor preference, runs on its channel's loop. A response then resumes the sender
    /// on the thread that read it, and its next write is made there, where on the shared
    /// pool each instance cost two more thread wake-ups (the response handed from the loop
    /// to the pool, the write back), each a scheduling delay on a busy machine. Files are
    /// read and converted on the global executor (`RequesterAssociation.Framing`): the loop
    /// also serves the receiver's associations. The loops are `MultiThreadedEventLoopGroup`'s
    /// singleton's, which never shut down (a job given to a loop that had would be lost).
    final class EventLoopTaskExecutor: TaskExecutor {
        let loop: any EventLoop

        init(_ loop: any EventLoop) {
            self.loop = loop
        }

        func enqueue(_ job: consuming ExecutorJob) {
            let job = UnownedJob(job)
            loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
        }
    }

    /// A client TLS context per the DICOM TLS profile of BCP 195: TLS 1.2 or later; the
    /// peer's certificate checked against `ca` (else the system's roots), its host name only
    /// when asked (DICOM peers are often addressed by IP).
    static func tlsContext(_ tls: DaemonConfiguration.Dicom.Destination.TLS) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let ca = tls.ca { configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
        configuration.certificateVerification = tls.verifyHostname ? .fullVerification : .noHostnameVerification
        if let certificate = tls.certificate, let key = tls.key {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        return try NIOSSLContext(configuration: configuration)
    }
}

/// Turns the idle timer into an error on the association's inbound stream, then closes.
final class RequesterIdleHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    let peer: String
    let seconds: Double

    init(peer: String, seconds: Double) {
        self.peer = peer
        self.seconds = seconds
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.fireErrorCaught(RequesterError(.timeout, "\(peer): nothing moved for \(seconds) s; association abandoned"))
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// An open association, for the body of ``DicomRequester/withAssociation(to:contexts:logger:_:)``.
public struct RequesterAssociation {
    let peer: String
    let destination: DaemonConfiguration.Dicom.Destination
    var iterator: NIOAsyncChannelInboundStream<RawPDU>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let logger: Logger
    /// Accepted contexts: (abstract syntax, transfer syntax) → context id.
    public private(set) var accepted: [String: [String: UInt8]] = [:]
    /// What the peer said about each proposed context that it did not accept.
    public private(set) var refused: [String: String] = [:]
    /// The largest PDV payload the peer takes.
    private(set) var maxPDVData = DicomRequester.unlimitedPDU
    private var nextMessageID: UInt16 = 1
    /// The association's protocol state (PS3.8 §9.2), the requestor's side.
    private(set) var machine = AssociationStateMachine(role: .requestor)

    init(
        peer: String, destination: DaemonConfiguration.Dicom.Destination, iterator: NIOAsyncChannelInboundStream<RawPDU>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, logger: Logger
    ) {
        self.peer = peer
        self.destination = destination
        self.iterator = iterator
        self.outbound = outbound
        self.logger = logger
    }

    /// The transfer syntax the peer accepted for a SOP class, among `syntaxes` (in order).
    public func acceptedSyntax(for sopClass: String, among syntaxes: [String]) -> String? {
        syntaxes.first { accepted[sopClass]?[$0] != nil }
    }

    mutating func associate(_ contexts: [PresentationContextRequest]) async throws {
        var proposed: [ProposedContext] = []
        for (index, context) in contexts.prefix(128).enumerated() {
            proposed.append(ProposedContext(id: UInt8(index * 2 + 1), abstractSyntax: context.abstractSyntax, transferSyntaxes: context.transferSyntaxes))
        }
        let request = AssociateRequest(
            calledAE: destination.aeTitle, callingAE: destination.callingAE, applicationContext: DICOM.applicationContext,
            contexts: proposed, maxPDULength: DicomRequester.ourMaxPDU, implementationClassUID: DICOM.implementationClassUID,
            implementationVersionName: DICOM.implementationVersionName, asyncOperations: nil, roles: [])
        // The connection is open (withAssociation): Evt1, then Evt2 sends the request.
        _ = machine.associateRequested()
        try await perform(machine.transportConnected(request: request))
        let (answer, action) = try await receive("the A-ASSOCIATE answer")
        switch action {
        case .deliverAssociateAccept(let accept):
            for answer in accept.contexts {
                guard let asked = proposed.first(where: { $0.id == answer.id }) else { continue }
                if answer.result == .acceptance, asked.transferSyntaxes.contains(answer.transferSyntax) {
                    accepted[asked.abstractSyntax, default: [:]][answer.transferSyntax] = answer.id
                } else if accepted[asked.abstractSyntax] == nil {
                    refused[asked.abstractSyntax] = Self.contextResult(answer.result)
                }
            }
            if accept.maxPDULength > 6 { maxPDVData = Int(accept.maxPDULength) - 6 }  // 0: no limit
        case .close(_, .rejected(let result, let source, let reason)?):
            throw RequesterError(
                .associationRejected,
                "\(peer) rejected the association (\(result == 1 ? "permanent" : "transient"), \(Self.rejectReason(source: source, reason: reason)))")
        case .close(_, .aborted(.peer(let source, let reason))?):
            throw RequesterError(.aborted, "\(peer) aborted the association request (source \(source), reason \(reason))")
        default:
            throw RequesterError(.protocolError, "\(peer) answered the A-ASSOCIATE-RQ with \(answer.name)")
        }
    }

    static func contextResult(_ result: AcceptedContext.Result) -> String {
        switch result {
        case .acceptance: return "accepted with another transfer syntax"
        case .userRejection: return "rejected by the user"
        case .noReason: return "rejected (no reason given)"
        case .abstractSyntaxNotSupported: return "SOP class not supported"
        case .transferSyntaxesNotSupported: return "transfer syntax not supported"
        }
    }

    static func rejectReason(source: UInt8, reason: UInt8) -> String {
        switch (source, reason) {
        case (1, 2): return "application context name not supported"
        case (1, 3): return "calling AE title not recognized"
        case (1, 7): return "called AE title not recognized"
        case (2, 1): return "no reason given by the presentation service"
        case (2, 2): return "protocol version not supported"
        case (3, 1): return "temporary congestion"
        case (3, 2): return "local limit exceeded"
        default: return "source \(source), reason \(reason)"
        }
    }

    /// C-ECHO; returns the status.
    public mutating func echo() async throws -> UInt16 {
        guard let context = accepted[DICOM.verification]?.values.first else {
            throw RequesterError(.notAccepted, "\(peer) did not accept the Verification SOP class")
        }
        try requireDataTransfer()
        let id = takeMessageID()
        let command = Command(field: Command.cEchoRequest, messageID: id, affectedSOPClass: DICOM.verification)
        try await send(.data([PDV(contextID: context, isCommand: true, isLast: true, bytes: command.encoded())]))
        return try await response(to: id, field: Command.cEchoResponse).status ?? 0xFFFF
    }

    /// The largest dataset converted in memory for a destination that refuses the stored
    /// syntax; a larger one is refused with a message saying so.
    public static let conversionLimit = 512 << 20
    /// The largest dataset read ahead, while the destination answers the one before it; a
    /// larger one is read (or converted) when it is sent.
    static let readAheadLimit = 16 << 20

    /// An instance's dataset, framed as P-DATA-TF PDUs on the context it goes on.
    struct FramedDataset: Sendable {
        let syntax: String
        let context: UInt8
        /// The PDUs in writes of about `Framing.writeSize`; nil when the dataset is stored
        /// as it goes and too large to hold: it is then read from its file as it is sent.
        let writes: [ByteBuffer]?
    }

    /// The next instance, being read and framed while the destination answers the one before.
    private var readAhead: (instance: StoredInstance, framing: Task<FramedDataset, any Error>)?

    /// C-STORE of a stored file: its dataset as stored, in PDUs the peer takes, or, when the
    /// peer accepted only the lossless fallback, converted first. Returns the peer's status
    /// and the syntax the dataset went in; throws ``RequesterError`` `.notAccepted` when no
    /// context for its SOP class and transfer syntax was accepted.
    ///
    /// With `next` (the instance the caller sends after this one), its dataset is read and
    /// framed while the peer answers this one, so that the disk and the destination work at
    /// the same time; its errors are thrown by the call that sends it. Files are read on
    /// the global executor, never on the channel's event loop (see `EventLoopTaskExecutor`).
    public mutating func store(_ instance: StoredInstance, next: StoredInstance? = nil) async throws -> (
        status: UInt16, transferSyntax: String
    ) {
        let framing = Framing(peer: peer, accepted: accepted, refused: refused, maxPDVData: maxPDVData)
        let ahead = readAhead
        readAhead = nil
        let framed: FramedDataset
        if let ahead, ahead.instance == instance {
            framed = try await ahead.framing.value
        } else {
            ahead?.framing.cancel()
            framed = try await withTaskExecutorPreference(globalConcurrentExecutor) { try framing.frame(instance) }
        }
        try requireDataTransfer()
        let id = takeMessageID()
        let command = Command(
            field: Command.cStoreRequest, messageID: id, affectedSOPClass: instance.sopClass, affectedSOPInstance: instance.sopInstance,
            dataSetType: 0x0000, priority: 0)
        let request = ByteBuffer(bytes: PDU.data([PDV(contextID: framed.context, isCommand: true, isLast: true, bytes: command.encoded())]).encoded())
        if let writes = framed.writes {
            try await write([request] + writes)
        } else {
            let fd = try framing.open(instance.path)
            defer { close(fd) }
            try await write(request)
            for range in framing.writeRanges(from: instance.datasetOffset, to: instance.size) {
                let buffer: ByteBuffer
                do {
                    buffer = try await withTaskExecutorPreference(globalConcurrentExecutor) {
                        try Framing.pdus(context: framed.context, range, end: instance.size, pdv: framing.pdvSize, path: instance.path, fd: fd)
                    }
                } catch let error as RequesterError {
                    // Part of the dataset is out: the association cannot go on with another.
                    throw RequesterError(.aborted, "\(error.message); the association is abandoned in the middle of the dataset")
                }
                try await write(buffer)
            }
        }
        if let next, next.size - next.datasetOffset <= Self.readAheadLimit {
            readAhead = (next, Task(executorPreference: globalConcurrentExecutor) { try framing.frame(next) })
        }
        return (try await response(to: id, field: Command.cStoreResponse).status ?? 0xFFFF, framed.syntax)
    }

    /// What framing a dataset needs of the association, as a value: datasets are read and
    /// framed off the event loop, beside the association.
    struct Framing: Sendable {
        let peer: String
        let accepted: [String: [String: UInt8]]
        let refused: [String: String]
        /// The largest PDV payload we send: what the peer takes, at most 1 MiB.
        let pdvSize: Int
        /// Dataset PDUs go out in writes of about this size, several PDUs each: one await
        /// per PDU (16 KiB for many peers) would set the pace.
        static let writeSize = 1 << 20

        init(peer: String, accepted: [String: [String: UInt8]], refused: [String: String], maxPDVData: Int) {
            self.peer = peer
            self.accepted = accepted
            self.refused = refused
            pdvSize = max(1, min(maxPDVData, DicomRequester.unlimitedPDU))
        }

        /// Chooses the context for `instance` and, unless its dataset goes as stored and is
        /// too large to hold, reads (and, for the fallback syntax, converts) it into
        /// P-DATA-TF PDUs.
        func frame(_ instance: StoredInstance) throws(RequesterError) -> FramedDataset {
            let forSOPClass = accepted[instance.sopClass] ?? [:]
            let candidates = [instance.transferSyntax] + (PresentationContextRequest.fallbacks[instance.transferSyntax] ?? [])
            guard let syntax = candidates.first(where: { forSOPClass[$0] != nil }), let context = forSOPClass[syntax] else {
                let why = refused[instance.sopClass] ?? "not proposed on this association"
                throw RequesterError(
                    .notAccepted, "\(peer) accepts no context for SOP class \(instance.sopClass) in \(instance.transferSyntax) (\(why))")
            }
            let converting = syntax != instance.transferSyntax
            guard converting || instance.size - instance.datasetOffset <= RequesterAssociation.readAheadLimit else {
                return FramedDataset(syntax: syntax, context: context, writes: nil)
            }
            let fd = try open(instance.path)
            defer { close(fd) }
            var writes: [ByteBuffer] = []
            if converting {
                let bytes = try RequesterAssociation.converted(instance, fd: fd)
                for range in writeRanges(from: 0, to: bytes.count) {
                    writes.append(try Self.pdus(context: context, range, end: bytes.count, pdv: pdvSize, path: instance.path, bytes: bytes))
                }
            } else {
                for range in writeRanges(from: instance.datasetOffset, to: instance.size) {
                    writes.append(try Self.pdus(context: context, range, end: instance.size, pdv: pdvSize, path: instance.path, fd: fd))
                }
            }
            return FramedDataset(syntax: syntax, context: context, writes: writes)
        }

        func open(_ path: String) throws(RequesterError) -> Int32 {
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw RequesterError(.file, "cannot open \(path): \(String(cString: strerror(errno)))") }
            return fd
        }

        /// `[start, end)` in pieces of whole PDVs, about `writeSize` each (at least one PDV).
        func writeRanges(from start: Int, to end: Int) -> [Range<Int>] {
            let step = max(1, Self.writeSize / pdvSize) * pdvSize
            return stride(from: start, to: max(end, start + 1), by: step).map { $0..<min(end, $0 + step) }
        }

        /// The P-DATA-TF PDUs carrying `range` of a dataset that ends at `end` (the last one
        /// says so), `pdv` bytes each at most, read from `fd` or taken from `bytes`.
        static func pdus(
            context: UInt8, _ range: Range<Int>, end: Int, pdv: Int, path: String, fd: Int32 = -1, bytes: [UInt8]? = nil
        ) throws(RequesterError) -> ByteBuffer {
            var buffer = ByteBufferAllocator().buffer(capacity: range.count + (range.count / pdv + 1) * 12)
            var offset = range.lowerBound
            repeat {
                let count = min(pdv, range.upperBound - offset)
                buffer.writeInteger(UInt8(0x04))
                buffer.writeInteger(UInt8(0))
                buffer.writeInteger(UInt32(6 + count))
                buffer.writeInteger(UInt32(2 + count))
                buffer.writeInteger(context)
                buffer.writeInteger(UInt8(offset + count >= end ? 0x02 : 0x00))
                if let bytes {
                    buffer.writeBytes(bytes[offset..<(offset + count)])
                } else {
                    let start = offset
                    let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
                        var done = 0
                        while done < count {
                            let n = pread(fd, pointer.baseAddress! + done, count - done, off_t(start + done))
                            if n <= 0 { break }
                            done += n
                        }
                        return done
                    }
                    guard read == count else {
                        throw RequesterError(.file, "\(path) ended or failed to read at byte \(offset + read) of \(end)")
                    }
                }
                offset += count
            } while offset < range.upperBound
            return buffer
        }
    }

    /// The file's dataset in implicit VR little endian.
    fileprivate static func converted(_ instance: StoredInstance, fd: Int32) throws(RequesterError) -> [UInt8] {
        let count = instance.size - instance.datasetOffset
        guard count <= conversionLimit else {
            throw RequesterError(
                .notAccepted, "\(instance.path): the destination takes only implicit VR little endian, and a dataset of \(count) bytes is more than the \(conversionLimit >> 20) MiB converted in memory")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        guard InstanceSpool.readChunks(fd, offset: instance.datasetOffset, length: count, { bytes += $0; return true }) else {
            throw RequesterError(.file, "\(instance.path) ended or failed to read at byte \(bytes.count) of \(count)")
        }
        do {
            return try ImplicitVRTranscoder.transcode(bytes)
        } catch {
            throw RequesterError(.notAccepted, "\(instance.path): \(error.message)")
        }
    }

    private mutating func takeMessageID() -> UInt16 {
        defer { nextMessageID = nextMessageID == UInt16.max ? 1 : nextMessageID + 1 }
        return nextMessageID
    }

    /// Evt9, P-DATA request: sending is allowed in Sta6 (DT-1) only, as far as the requestor goes.
    private mutating func requireDataTransfer() throws {
        guard machine.sendData() == .sendData else {
            throw RequesterError(.protocolError, "\(peer): no data may be sent in \(machine.state.explained)")
        }
    }

    /// Waits for the response command to message `id`.
    private mutating func response(to id: UInt16, field: UInt16) async throws -> Command {
        var fragments: [UInt8] = []
        while true {
            let (pdu, action) = try await receive("the response to message \(id)")
            switch action {
            case .deliverData(let pdvs):
                for pdv in pdvs {
                    guard pdv.isCommand else { continue }  // a response carries no dataset we ask for
                    fragments += pdv.bytes
                    guard fragments.count <= 65_536 else { throw RequesterError(.protocolError, "\(peer) sent a command set over 64 KiB") }
                    guard pdv.isLast else { continue }
                    let command: Command
                    do {
                        command = try Command.decode(fragments)
                    } catch {
                        throw RequesterError(.protocolError, "\(peer) sent an unreadable command set: \(error)")
                    }
                    fragments = []
                    guard command.field == field, command.respondingTo == id else {
                        throw RequesterError(
                            .protocolError,
                            "\(peer) answered message \(id) with command 0x\(String(command.field, radix: 16)) for message \(command.respondingTo.map(String.init) ?? "none")")
                    }
                    return command
                }
            case .close(_, .aborted(.peer(let source, let reason))?):
                throw RequesterError(.aborted, "\(peer) aborted the association (source \(source), reason \(reason))")
            default:
                // An A-RELEASE-RQ before the answer (AR-2, Sta8) too: the caller aborts (AA-1).
                throw RequesterError(.protocolError, "\(peer) sent \(pdu.name) while a response was awaited")
            }
        }
    }

    /// A-RELEASE-RQ (AR-1), then waits for the A-RELEASE-RP (AR-3). In a release collision
    /// (the peer's A-RELEASE-RQ crossing ours, AR-8) we answer its request first (AR-9) and
    /// then wait for its answer to ours (Sta11, AR-3).
    mutating func release() async throws {
        guard case .send = machine.requestRelease() else { return }
        try await send(.releaseRequest)
        while true {
            let (pdu, action) = try await receive("the A-RELEASE-RP")
            switch action {
            case .close(_, .released?): return
            case .deliverData: continue  // AR-6: a late response; nothing more to do with it
            case .deliverReleaseRequest(collision: true): try await perform(machine.respondToRelease())
            case .close(_, .aborted(.peer)?): return
            default: throw RequesterError(.protocolError, "\(peer) answered the A-RELEASE-RQ with \(pdu.name)")
            }
        }
    }

    /// A-ABORT (source: service user), best effort (Evt15, AA-1).
    mutating func abort() async {
        try? await perform(machine.abort(source: 0, reason: 0, why: "the association's user gave up"))
    }

    /// Carries out what the state machine says: writes the PDU it names (a last one before
    /// closing, best effort). Closing is `executeThenClose`'s: the channel closes when
    /// ``DicomRequester/withAssociation(to:contexts:logger:_:)`` returns or throws.
    private func perform(_ action: AssociationStateMachine.Action) async throws {
        switch action {
        case .send(let pdu): try await send(pdu)
        case .close(let pdu?, _): try? await send(pdu)
        default: break
        }
    }

    private func send(_ pdu: PDU) async throws {
        try await write(ByteBuffer(bytes: pdu.encoded()))
    }

    private func write(_ buffer: ByteBuffer) async throws {
        try await write([buffer])
    }

    /// Writes buffers as one flush.
    private func write(_ buffers: [ByteBuffer]) async throws {
        do {
            try await outbound.write(contentsOf: buffers)
        } catch let error as RequesterError {
            throw error
        } catch {
            throw RequesterError(.aborted, "\(peer): connection lost while sending: \(error)")
        }
    }

    /// Reads the next PDU and gives it to the state machine; returns the PDU and what the
    /// machine says, after writing what it says to write (A-ABORT for a PDU the state does
    /// not allow, AA-8). A closed connection (AA-4) or a malformed PDU (Evt19) throws.
    private mutating func receive(_ what: String) async throws -> (PDU, AssociationStateMachine.Action) {
        let raw: RawPDU?
        do {
            raw = try await iterator.next()
        } catch let error as RequesterError {
            _ = machine.transportClosed()
            throw error
        } catch {
            _ = machine.transportClosed()
            throw RequesterError(.aborted, "\(peer): connection lost waiting for \(what): \(error)")
        }
        guard let raw else {
            _ = machine.transportClosed()
            throw RequesterError(.aborted, "\(peer) closed the connection before \(what)")
        }
        let pdu: PDU
        do {
            pdu = try PDU.decode(type: raw.type, body: raw.body[...])
        } catch {
            try await perform(machine.receivedInvalidPDU(reason: 2, detail: "\(error)"))
            throw RequesterError(.protocolError, "\(peer) sent a malformed PDU while we waited for \(what): \(error)")
        }
        let action = machine.received(pdu)
        try await perform(action)
        return (pdu, action)
    }
}
