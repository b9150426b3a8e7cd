import Foundation
import Logging
import NIOCore
import NMBridgeCore
import Synchronization

/// What the receiver's associations share: settings, where events go, the count of open
/// associations.
final class ReceiverContext: Sendable {
    let settings: DaemonConfiguration.Dicom
    let sink: any DriverEventSink
    let logger: Logger
    let acceptedSyntaxes: Set<String>
    let acceptedSOPClasses: Set<String>
    let openAssociations = Atomic<Int>(0)
    /// Association handlers not yet deallocated (tests check that closed connections free theirs).
    let liveHandlers = Atomic<Int>(0)
    /// Every open connection, so that stopping the receiver closes them too.
    let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    let studies: StudyTracker
    /// The write-ahead spool (nil: `spool_mb = 0`); used once `spoolReady` (after recovery).
    let spool: InstanceSpool?
    let spoolReady = Atomic<Bool>(false)
    /// Puts spooled instances in place and journals the receiver's events in order.
    let materializer = Materializer()
    /// Files made ahead for transfers (the inode off the receive path).
    let readyFiles: ReadyFiles
    let nextAssociation = Atomic<UInt64>(1)
    /// Where an instance's time goes (nanoseconds, summed): from its C-STORE request to its
    /// last dataset byte, and from there to its response; and the instances answered.
    let receiveNanoseconds = Atomic<Int>(0)
    let answerNanoseconds = Atomic<Int>(0)
    let answered = Atomic<Int>(0)

    init(settings: DaemonConfiguration.Dicom, sink: any DriverEventSink, logger: Logger) {
        self.settings = settings
        self.sink = sink
        self.logger = logger
        acceptedSyntaxes = Set(settings.transferSyntaxes ?? DICOM.TransferSyntax.defaultAccepted)
        acceptedSOPClasses = Set(settings.sopClasses ?? Array(DICOM.storageSOPClasses.keys))
        studies = StudyTracker(storage: settings.storage, quiet: settings.stableAfter, logger: logger)
        spool = settings.spoolMB > 0 ? InstanceSpool(storage: settings.storage, megabytes: settings.spoolMB, logger: logger) : nil
        readyFiles = ReadyFiles(storage: settings.storage)
    }

    /// A writer for one transfer's spool record, when the spool is in use.
    func spoolWriter() -> SpoolWriter? {
        guard let spool, spoolReady.load(ordering: .acquiring) else { return nil }
        return SpoolWriter(spool: spool)
    }

    /// The device a calling AE's instances are journaled under: its configured peer's, or
    /// `dicom-<AE>` (characters a device id may not hold as `_`).
    func device(forCallingAE callingAE: String) -> String {
        if let peer = settings.peers.first(where: { $0.aeTitle == callingAE }) { return peer.device }
        return "dicom-" + String(callingAE.map { DaemonConfiguration.isValidDeviceID(String($0)) ? $0 : "_" })
    }

    /// Journals an event of the receiver. Returns false (and logs) when the journal failed:
    /// a C-STORE is then not answered with success. The event is not lost: it waits in
    /// `backlog` and is journaled, with its own time, once the journal takes writes again
    /// (a full disk is the usual cause); `journaled` runs then.
    @discardableResult
    func emit(
        _ kind: String, device: String, severity: Severity? = nil, data: [String: JSONValue],
        laterData: [String: JSONValue]? = nil, journaled: @escaping @Sendable () -> Void = {}
    ) async -> Bool {
        var draft = EventDraft(device: device, driver: "dicom", kind: kind, severity: severity, data: data)
        do {
            try await sink.emit(draft)
            return true
        } catch {
            logger.error("cannot journal \(kind); kept to journal later", metadata: ["error": "\(error)", "device.id": "\(device)"])
            if let laterData { draft.data = laterData }
            backlog.add(draft, journaled: journaled, sink: sink, logger: logger)
            return false
        }
    }

    let backlog = ReceiverBacklog()
}

/// Receiver events the journal refused (disk full), retried every 2 s in their order until
/// it takes them. Bounded: beyond `capacity` the oldest are dropped, and said so in the log.
final class ReceiverBacklog: Sendable {
    private struct Item {
        let id: UInt64
        let draft: EventDraft
        let journaled: @Sendable () -> Void
    }
    private struct State {
        var waiting: [Item] = []
        var nextID: UInt64 = 0
        var retrying = false
        var dropped = 0
    }
    private let state = Mutex(State())
    static let capacity = 10_000

    func add(_ draft: EventDraft, journaled: @escaping @Sendable () -> Void, sink: any DriverEventSink, logger: Logger) {
        let start = state.withLock { s -> Bool in
            s.waiting.append(Item(id: s.nextID, draft: draft, journaled: journaled))
            s.nextID += 1
            if s.waiting.count > Self.capacity {
                s.waiting.removeFirst()
                s.dropped += 1
            }
            defer { s.retrying = true }
            return !s.retrying
        }
        guard start else { return }
        Task {
            while true {
                try? await Task.sleep(for: .seconds(2))
                let dropped = state.withLock { s in defer { s.dropped = 0 }; return s.dropped }
                if dropped > 0 { logger.error("dropped receiver events that could not be journaled", metadata: ["count": "\(dropped)"]) }
                while let item = state.withLock({ $0.waiting.first }) {
                    do {
                        try await sink.emit(item.draft)
                    } catch {
                        break
                    }
                    state.withLock { $0.waiting.removeAll { $0.id == item.id } }
                    item.journaled()
                }
                let done = state.withLock { s -> Bool in
                    if s.waiting.isEmpty { s.retrying = false }
                    return s.waiting.isEmpty
                }
                if done { return }
            }
        }
    }
}

/// One association, from A-ASSOCIATE-RQ to release or abort, the acceptor's side. Its
/// protocol state is an ``AssociationStateMachine`` (PS3.8 §9.2): this handler feeds it the
/// connection's events, carries out its actions, and is the DIMSE layer above it (the
/// user: negotiation, C-ECHO, C-STORE). Runs on its channel's event loop; file I/O runs on
/// a serial queue of its own. The C-STORE response is sent once the instance is durable:
/// its spool record covered by a data sync (the materializer puts the file in place and
/// journals it later), or, without the spool, the file durable in place and journaled.
final class AssociationHandler: ChannelInboundHandler {
    typealias InboundIn = RawPDU
    typealias OutboundOut = ByteBuffer

    /// The instance being received on this association.
    private final class Transfer: @unchecked Sendable {
        let contextID: UInt8
        let command: Command
        let transferSyntax: String
        let file: InstanceFile?
        /// When the C-STORE request arrived, and when its last dataset byte.
        let started = ContinuousClock.now
        var received = ContinuousClock.now
        /// The first error; later bytes are dropped (touched on the storage queue only).
        var failure: StoreError?

        init(contextID: UInt8, command: Command, transferSyntax: String, file: InstanceFile?, failure: StoreError?) {
            self.contextID = contextID
            self.command = command
            self.transferSyntax = transferSyntax
            self.file = file
            self.failure = failure
        }
    }

    private let shared: ReceiverContext
    private var machine = AssociationStateMachine(role: .acceptor)
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private let storage = DispatchQueue(label: "nmbridge.dicom.storage")
    private var queuedBytes = 0
    private var counted = false

    // The association, once established.
    private var callingAE = ""
    private var calledAE = ""
    private var device = ""
    private var peerAddress = ""
    private var contexts: [UInt8: (abstractSyntax: String, transferSyntax: String)] = [:]
    private var started = Date()
    private var stored = 0
    private var failed = 0
    private var receivedBytes = 0

    private var commandBytes: [UInt8] = []
    private var transfer: Transfer?
    /// Responses in flight (store results not yet journaled and sent).
    private var pendingResponses = 0

    static let maximumCommandBytes = 65_536
    static let pauseReadingAbove = 16 << 20

    /// Whether the connection is DICOM TLS.
    private let tls: Bool
    /// This association's number in the spool's records.
    private let association: UInt64

    init(shared: ReceiverContext, tls: Bool = false) {
        self.shared = shared
        self.tls = tls
        association = shared.nextAssociation.add(1, ordering: .relaxed).oldValue
        shared.liveHandlers.add(1, ordering: .relaxed)
    }

    deinit {
        shared.liveHandlers.subtract(1, ordering: .relaxed)
    }

    /// Queues journal work behind everything the storage queue has been given so far
    /// (the materializer's queue: an instance's events and the association's closing
    /// event keep the order of what happened).
    private func journalInOrder(_ work: @escaping @Sendable () async -> Void) {
        let materializer = shared.materializer
        storage.async { materializer.enqueue(.work(work)) }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Breaks the references that would keep a closed association alive: the context
    /// (which holds this handler) and the ARTIM/idle timer (whose task holds it too, even
    /// cancelled, through the `Scheduled` value). Before this, every connection leaked
    /// its handler, storage queue and journal task (about 3.4 KB each).
    func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
        self.context = nil
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        peerAddress = context.remoteAddress?.ipAddress.map { IPAddress.canonical($0) ?? $0 } ?? "unknown"
        perform(machine.transportAccepted())
        context.fireChannelActive()
    }

    /// Starts the one timer (replacing the last): ARTIM until the A-ASSOCIATE-RQ, then the
    /// idle timeout between PDUs.
    private func arm(seconds: Double, expired: @escaping (AssociationHandler) -> Void) {
        timer?.cancel()
        guard let context else { return }
        let bound = NIOLoopBound((handler: self, expired: expired), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(seconds * 1000))) {
            bound.value.expired(bound.value.handler)
        }
    }

    /// The idle timeout: nothing read for `idle_timeout_s`, the association is aborted.
    private func armIdle() {
        let seconds = shared.settings.idleTimeout
        arm(seconds: seconds) { $0.abort(reason: "idle for \(Int(seconds)) s", source: 2, code: 0) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let raw = unwrapInboundIn(data)
        let pdu: PDU
        do {
            pdu = try PDU.decode(type: raw.type, body: raw.body[...])
        } catch {
            return perform(machine.receivedInvalidPDU(reason: 2, detail: "\(error)"))
        }
        perform(machine.received(pdu))
    }

    /// Carries out what the state machine says; the DIMSE layer's part is called from here.
    private func perform(_ action: AssociationStateMachine.Action) {
        switch action {
        case .none, .sendData:
            break
        case .connect, .deliverAssociateAccept, .deliverReleaseConfirmation:
            // The requestor's actions: an acceptor that never asks to associate or release
            // is never given them.
            break
        case .startARTIM:
            let seconds = shared.settings.artimTimeout
            arm(seconds: seconds) { $0.perform($0.machine.artimExpired()) }
        case .send(let pdu):
            send(pdu)
        case .deliverAssociateRequest(let request):
            disarm()
            negotiate(request)
        case .deliverData(let pdvs):
            armIdle()
            for pdv in pdvs where machine.isTransferringData { receive(pdv) }
        case .deliverReleaseRequest:
            // Answered once every C-STORE response is out (``stored(_:status:)``).
            if pendingResponses == 0, transfer == nil { perform(machine.respondToRelease()) }
        case .close(let pdu, let ending):
            disarm()
            if let pdu { send(pdu) }
            if let ending { finish(ending) }
            context?.close(promise: nil)
        }
    }

    // MARK: - Association

    private func negotiate(_ request: AssociateRequest) {
        callingAE = request.callingAE
        calledAE = request.calledAE
        let settings = shared.settings
        // Reject reasons (PS3.8 §9.3.4): 7 called AE not recognized, 3 calling AE not recognized;
        // 2 (source 3, transient) local limit exceeded. A title that is not a valid AE value
        // (control characters, backslash, NUL, non-ASCII) is refused before anything else;
        // it is journaled in its escaped form only.
        guard PDU.isValidAETitle(request.callingAE) else {
            return reject(result: 1, source: 1, reason: 3, why: "calling AE \"\(request.callingAE)\" is not a valid AE title (PS3.5: printable ASCII without backslash)")
        }
        guard PDU.isValidAETitle(request.calledAE) else {
            return reject(result: 1, source: 1, reason: 7, why: "called AE \"\(request.calledAE)\" is not a valid AE title (PS3.5: printable ASCII without backslash)")
        }
        guard request.calledAE == settings.aeTitle else {
            return reject(result: 1, source: 1, reason: 7, why: "called AE \"\(request.calledAE)\" is not \"\(settings.aeTitle)\"")
        }
        if let peer = settings.peers.first(where: { $0.aeTitle == request.callingAE }) {
            if let host = peer.host, host != peerAddress {
                return reject(
                    result: 1, source: 1, reason: 3, why: "calling AE \"\(request.callingAE)\" is allowed from \(host), not from \(peerAddress)")
            }
            device = peer.device
        } else if settings.acceptAnyCallingAE {
            device = shared.device(forCallingAE: request.callingAE)
        } else {
            return reject(result: 1, source: 1, reason: 3, why: "calling AE \"\(request.callingAE)\" is not a configured peer")
        }
        let open = shared.openAssociations.add(1, ordering: .relaxed).newValue
        counted = true
        guard open <= settings.maxAssociations else {
            return reject(result: 2, source: 3, reason: 2, why: "\(open - 1) associations are open, the limit is \(settings.maxAssociations)")
        }

        var answers: [AcceptedContext] = []
        for proposed in request.contexts {
            let known = proposed.abstractSyntax == DICOM.verification || shared.acceptedSOPClasses.contains(proposed.abstractSyntax)
            guard known || settings.acceptUnknownSOPClasses else {
                answers.append(AcceptedContext(id: proposed.id, result: .abstractSyntaxNotSupported, transferSyntax: DICOM.TransferSyntax.implicitLittle))
                continue
            }
            guard let syntax = proposed.transferSyntaxes.first(where: shared.acceptedSyntaxes.contains) else {
                answers.append(AcceptedContext(id: proposed.id, result: .transferSyntaxesNotSupported, transferSyntax: DICOM.TransferSyntax.implicitLittle))
                continue
            }
            answers.append(AcceptedContext(id: proposed.id, result: .acceptance, transferSyntax: syntax))
            contexts[proposed.id] = (proposed.abstractSyntax, syntax)
        }
        let accept = AssociateAccept(
            calledAE: request.calledAE, callingAE: request.callingAE, contexts: answers, maxPDULength: UInt32(settings.maxPDULength),
            implementationClassUID: DICOM.implementationClassUID, implementationVersionName: DICOM.implementationVersionName,
            // One operation at a time each way: we answer each C-STORE before reading on.
            asyncOperations: request.asyncOperations.map { _ in (1, 1) },
            roles: Self.roleAnswers(request.roles, accepted: Set(contexts.values.map(\.abstractSyntax))))
        started = Date()
        perform(machine.accept(accept))
        armIdle()
        let data: [String: JSONValue] = [
            "calling_ae": .string(callingAE), "called_ae": .string(calledAE), "peer": .string(peerAddress),
            "contexts_accepted": .int(Int64(contexts.count)), "contexts_proposed": .int(Int64(request.contexts.count)),
            "max_pdu": .int(Int64(request.maxPDULength)), "tls": .bool(tls),
        ]
        let shared = shared
        let device = device
        journalInOrder { await shared.emit("dicom.association.accepted", device: device, data: data) }
    }

    /// Role selection answers (PS3.7 D.3.3.4): one per accepted SOP class that the sender
    /// proposed a role for, as SCU only. Bounded by the accepted contexts, so a request
    /// full of role items cannot inflate the answer.
    static func roleAnswers(_ proposed: [RoleSelection], accepted: Set<String>) -> [RoleSelection] {
        var seen: Set<String> = []
        return proposed.compactMap { role in
            guard accepted.contains(role.sopClass), seen.insert(role.sopClass).inserted else { return nil }
            return RoleSelection(sopClass: role.sopClass, scu: role.scu, scp: false)
        }
    }

    private func reject(result: UInt8, source: UInt8, reason: UInt8, why: String) {
        shared.logger.notice("association rejected", metadata: ["peer": "\(peerAddress)", "calling_ae": "\(callingAE)", "reason": "\(why)"])
        let data: [String: JSONValue] = [
            "calling_ae": .string(callingAE), "called_ae": .string(calledAE), "peer": .string(peerAddress),
            "result": .int(Int64(result)), "source": .int(Int64(source)), "reason": .int(Int64(reason)), "why": .string(why),
        ]
        let shared = shared
        let device = device.isEmpty ? "dicom" : device
        journalInOrder { await shared.emit("dicom.association.rejected", device: device, severity: .warning, data: data) }
        perform(machine.reject(result: result, source: source, reason: reason))
    }

    /// Aborts (A-ABORT with source/reason); the state machine's ending discards a partial
    /// instance and journals it.
    private func abort(reason: String, source: UInt8, code: UInt8) {
        perform(machine.abort(source: source, reason: code, why: reason))
    }

    /// Ends the association (the state machine reports it once): partial files removed, the
    /// closing event journaled. A rejection was journaled where it was decided.
    private func finish(_ ending: AssociationStateMachine.Ending) {
        let kind: String
        let reason: String?
        switch ending {
        case .rejected: return
        case .released: (kind, reason) = ("dicom.association.released", nil)
        case .aborted(let cause): (kind, reason) = ("dicom.association.aborted", cause.description)
        }
        if let transfer { storage.async { transfer.file?.discard() } }
        transfer = nil
        var data: [String: JSONValue] = [
            "calling_ae": .string(callingAE), "peer": .string(peerAddress), "instances": .int(Int64(stored)),
            "failed": .int(Int64(failed)), "bytes": .int(Int64(receivedBytes)),
            "duration_s": .double((Date().timeIntervalSince(started) * 1000).rounded() / 1000),
        ]
        if let reason { data["reason"] = .string(reason) }
        let shared = shared
        let device = device
        let closing = data
        journalInOrder { await shared.emit(kind, device: device, severity: reason == nil ? nil : .warning, data: closing) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        perform(machine.transportClosed())
        if counted {
            shared.openAssociations.subtract(1, ordering: .relaxed)
            counted = false
        }
        context.fireChannelInactive()
    }

    /// The framer refusing a PDU (unknown type, a length over the limit), TLS or the socket:
    /// an invalid PDU to the state machine (Evt19), aborted with reason 0.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        perform(machine.failedBelow("\(error)"))
    }

    private func send(_ pdu: PDU) {
        guard let context else { return }
        let bytes = pdu.encoded()
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    // MARK: - DIMSE

    private func receive(_ pdv: PDV) {
        guard let presentation = contexts[pdv.contextID] else {
            return abort(reason: "a PDV on presentation context \(pdv.contextID), which was not accepted", source: 2, code: 6)
        }
        if pdv.isCommand {
            guard transfer == nil else {
                return abort(reason: "a command arrived before the last fragment of the dataset being received", source: 2, code: 6)
            }
            guard commandBytes.count + pdv.bytes.count <= Self.maximumCommandBytes else {
                return abort(reason: "a command set longer than \(Self.maximumCommandBytes) bytes", source: 2, code: 6)
            }
            commandBytes += pdv.bytes
            guard pdv.isLast else { return }
            let bytes = commandBytes
            commandBytes = []
            do {
                try handle(try Command.decode(bytes), contextID: pdv.contextID, presentation: presentation)
            } catch {
                abort(reason: "unreadable command set: \(error)", source: 2, code: 6)
            }
            return
        }
        guard let transfer, transfer.contextID == pdv.contextID else {
            return abort(reason: "dataset bytes without a C-STORE request", source: 2, code: 6)
        }
        receivedBytes += pdv.bytes.count
        queuedBytes += pdv.bytes.count
        let bytes = pdv.bytes
        let bound = NIOLoopBound(self, eventLoop: context!.eventLoop)
        let eventLoop = context!.eventLoop
        storage.async {
            if transfer.failure == nil, let file = transfer.file {
                do throws(StoreError) { try file.append(bytes) } catch { transfer.failure = error }
            }
            eventLoop.execute { bound.value.drained(bytes.count) }
        }
        if queuedBytes > Self.pauseReadingAbove { context?.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
        if pdv.isLast {
            self.transfer = nil
            transfer.received = .now
            complete(transfer)
        }
    }

    private func drained(_ count: Int) {
        let wasPaused = queuedBytes > Self.pauseReadingAbove
        queuedBytes -= count
        if wasPaused, queuedBytes <= Self.pauseReadingAbove / 4, let context {
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            context.read()
        }
    }

    private func handle(_ command: Command, contextID: UInt8, presentation: (abstractSyntax: String, transferSyntax: String)) throws {
        switch command.field {
        case Command.cEchoRequest:
            respond(
                Command(field: Command.cEchoResponse, respondingTo: command.messageID, affectedSOPClass: DICOM.verification, status: 0),
                contextID: contextID)
        case Command.cStoreRequest:
            guard command.hasDataSet, let sopClass = command.affectedSOPClass, let instance = command.affectedSOPInstance else {
                return abort(reason: "a C-STORE request without SOP class, instance or dataset", source: 2, code: 6)
            }
            var file: InstanceFile?
            var failure: StoreError?
            if sopClass != presentation.abstractSyntax {
                failure = StoreError(
                    status: DICOM.Status.dataSetDoesNotMatchSOPClass,
                    message: "the command's SOP class \(sopClass) is not the context's \(presentation.abstractSyntax)")
            } else {
                do {
                    file = try InstanceFile(
                        root: shared.settings.storage, sopClass: sopClass, sopInstance: instance,
                        transferSyntax: presentation.transferSyntax, callingAE: callingAE, spool: shared.spoolWriter(),
                        ready: shared.readyFiles)
                } catch {
                    failure = error
                }
            }
            transfer = Transfer(contextID: contextID, command: command, transferSyntax: presentation.transferSyntax, file: file, failure: failure)
        default:
            // Not a service we provide: answer "unrecognized operation" (0x0211) without a dataset.
            respond(
                Command(field: command.field | 0x8000, respondingTo: command.messageID, affectedSOPClass: command.affectedSOPClass, status: 0x0211),
                contextID: contextID)
        }
    }

    /// The dataset is complete: read it, check it, then make it durable, the fast way
    /// (its spool record synced, together with other associations' records; the
    /// materializer puts it in place later) or the slow way (file fsync, rename, directory
    /// fsync, journal) when it is not in the spool. Then answer.
    private func complete(_ transfer: Transfer) {
        guard let context else { return }
        pendingResponses += 1
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let shared = shared
        let device = device
        let facts: [String: JSONValue] = [
            "calling_ae": .string(callingAE), "peer": .string(peerAddress), "transfer_syntax": .string(transfer.transferSyntax),
        ]
        let association = association
        let peer = peerAddress
        storage.async {
            let outcome = Self.store(transfer, settings: shared.settings, association: association, peer: peer)
            if case .spooled(let spooled) = outcome, let spool = shared.spool {
                var data = facts.merging(spooled.data) { a, _ in a }
                data["sop_instance_uid"] = data["sop_instance_uid"] ?? .string(transfer.command.affectedSOPInstance ?? "")
                shared.materializer.enqueue(
                    .instance(
                        SpooledInstance(
                            file: spooled.file, relativePath: spooled.relativePath, device: device, data: data,
                            study: spooled.study, series: spooled.series, record: spooled.record, received: Date())))
                spool.syncer.sync(spooled.record.fd) { synced in
                    eventLoop.execute { bound.value.stored(transfer, status: synced ? DICOM.Status.success : DICOM.Status.outOfResources) }
                }
                return
            }
            shared.materializer.enqueue(
                .work {
                    var status = DICOM.Status.success
                    switch outcome {
                    case .failed(let error):
                        var data = facts
                        data["sop_instance_uid"] = .string(transfer.command.affectedSOPInstance ?? "")
                        data["status"] = .string(String(format: "0x%04X", error.status))
                        data["error"] = .string(error.message)
                        status = error.status
                        await shared.emit("dicom.instance.failed", device: device, severity: .error, data: data)
                    case .stored(let fields, let replaced, let study, let series):
                        var data = facts.merging(fields) { a, _ in a }
                        data["sop_instance_uid"] = data["sop_instance_uid"] ?? .string(transfer.command.affectedSOPInstance ?? "")
                        if let old = replaced {
                            await shared.emit(
                                "dicom.instance.replaced", device: device, severity: .notice,
                                data: ["path": data["path"] ?? .null, "old_sha256": .string(old), "new_sha256": data["sha256"] ?? .null,
                                       "sop_instance_uid": data["sop_instance_uid"] ?? .null])
                        }
                        // The file is durable; without its event the sender must not hear "stored".
                        // Journaled later (the sender having heard 0xA700), it says `recovered`.
                        let stored = data
                        let journaled: @Sendable () -> Void = {
                            // Recovery has nothing to do for this file any more.
                            transfer.file?.unstage()
                            if stored["duplicate"] == nil {
                                shared.studies.add(
                                    study: study, series: series, device: device, fields: stored, bytes: Int(stored["bytes"]?.intValue ?? 0))
                            }
                        }
                        var later = data
                        later["recovered"] = .bool(true)
                        if await shared.emit("dicom.instance.stored", device: device, data: data, laterData: later, journaled: journaled) {
                            journaled()
                        } else {
                            status = DICOM.Status.outOfResources
                        }
                    case .spooled:
                        break
                    }
                    eventLoop.execute { bound.value.stored(transfer, status: status) }
                })
        }
    }

    private func stored(_ transfer: Transfer, status: UInt16) {
        pendingResponses -= 1
        shared.receiveNanoseconds.add(Self.nanoseconds(transfer.received - transfer.started), ordering: .relaxed)
        shared.answerNanoseconds.add(Self.nanoseconds(.now - transfer.received), ordering: .relaxed)
        shared.answered.add(1, ordering: .relaxed)
        if status == DICOM.Status.success { stored += 1 } else { failed += 1 }
        guard machine.isTransferringData else { return }
        respond(
            Command(
                field: Command.cStoreResponse, respondingTo: transfer.command.messageID, affectedSOPClass: transfer.command.affectedSOPClass,
                affectedSOPInstance: transfer.command.affectedSOPInstance, status: status),
            contextID: transfer.contextID)
        if machine.state == .awaitingLocalReleaseResponse, pendingResponses == 0, self.transfer == nil { perform(machine.respondToRelease()) }
    }

    static func nanoseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds) * 1_000_000_000 + Int(duration.components.attoseconds / 1_000_000_000)
    }

    private func respond(_ command: Command, contextID: UInt8) {
        guard machine.sendData() == .sendData else { return }
        send(.data([PDV(contextID: contextID, isCommand: true, isLast: true, bytes: command.encoded())]))
    }

    /// Reads a finished file's dataset up to its pixel data and checks the structure of the
    /// rest: a dataset cut short or with lengths that do not fit is unreadable (0xC000).
    static func readDataset(_ file: InstanceFile) throws(StoreError) -> Dataset {
        var dataset = Dataset()
        var limit = 65_536
        var pixelData: Int?
        while true {
            guard let prefix = file.datasetPrefix(limit: limit) else { throw .unreadable("the deflated dataset does not inflate") }
            var reader = DatasetReader(bytes: prefix, encoding: file.encoding)
            do {
                dataset = try reader.read()
            } catch {
                throw .unreadable("the dataset cannot be parsed: \(error)")
            }
            pixelData = reader.pixelDataOffset
            guard reader.truncated else { break }
            // Running out of the whole dataset is not the end of a header: it is cut short.
            let whole = file.deflated ? prefix.count < limit : prefix.count >= file.size - file.datasetOffset
            if whole { throw .unreadable("the dataset is cut short: it ends inside \(reader.truncation ?? "an element")") }
            // Headers are small; read more of a long one, up to 8 MiB.
            guard limit < 8 << 20 else { break }
            limit *= 4
        }
        // The pixel data and whatever follows it: lengths that fit, sequences closed.
        if let pixelData, !file.deflated {
            do throws(DatasetError) {
                try file.withDatasetReader { read throws(DatasetError) in
                    try DatasetReader.checkTail(from: pixelData, end: file.size - file.datasetOffset, encoding: file.encoding, read: read)
                }
            } catch {
                throw .unreadable("the dataset cannot be parsed: \(error)")
            }
        }
        return dataset
    }

    /// What became of a received instance.
    enum StoreOutcome: Sendable {
        /// Not stored; the status says why.
        case failed(StoreError)
        /// Durable in place (the slow way): the event's fields.
        case stored(data: [String: JSONValue], replaced: String?, study: String, series: String)
        /// Checked and whole in the spool, its record sealed (not yet synced): the
        /// materializer puts the file in place.
        case spooled(Spooled)
    }

    struct Spooled: Sendable {
        let file: InstanceFile
        let relativePath: String
        let data: [String: JSONValue]
        let study: String
        let series: String
        let record: InstanceSpool.Record
    }

    /// On the storage queue: finish, read, check, then seal the spool record or commit
    /// the file. Never throws: the outcome says.
    private static func store(_ transfer: Transfer, settings: DaemonConfiguration.Dicom, association: UInt64, peer: String) -> StoreOutcome {
        guard let file = transfer.file, transfer.failure == nil else {
            transfer.file?.discard()
            return .failed(transfer.failure ?? .resources("no file"))
        }
        do throws(StoreError) {
            try file.finish(sync: false)
            let dataset = try Self.readDataset(file)
            var data = InstanceSummary.fields(of: dataset)
            let sopClass = dataset.string(Tag(0x0008, 0x0016))
            let instance = dataset.string(Tag(0x0008, 0x0018))
            guard sopClass == transfer.command.affectedSOPClass, instance == transfer.command.affectedSOPInstance else {
                throw StoreError(
                    status: DICOM.Status.dataSetDoesNotMatchSOPClass,
                    message: "the dataset's SOP class/instance (\(sopClass ?? "none") / \(instance ?? "none")) differ from the command's (\(transfer.command.affectedSOPClass ?? "") / \(transfer.command.affectedSOPInstance ?? ""))")
            }
            guard let study = dataset.string(Tag(0x0020, 0x000D)), let series = dataset.string(Tag(0x0020, 0x000E)) else {
                throw .unreadable("the dataset has no Study or Series Instance UID")
            }
            let relative = StoragePath.relative(study: study, series: series, instance: instance ?? "")
            if let writer = file.spool, !writer.failed {
                // Refused duplicates are refused before the answer, as without the spool.
                if settings.duplicates == .reject {
                    let target = file.root + "/" + relative
                    if access(target, F_OK) == 0, let existing = StoragePath.sha256OfFile(target), try existing != file.sha256() {
                        throw StoreError(
                            status: DICOM.Status.duplicateInstance,
                            message: "\(target) is already stored with other bytes (SHA-256 \(existing)) and duplicates = \"reject\"")
                    }
                }
                if let record = writer.seal(association: association, peer: peer) {
                    return .spooled(Spooled(file: file, relativePath: relative, data: data, study: study, series: series, record: record))
                }
            }
            let sha256 = try file.sha256()
            try file.sync()
            let committed = try StoragePath.commit(file, sha256: sha256, relativePath: relative, policy: settings.duplicates)
            data["path"] = .string(committed.path)
            data["bytes"] = .int(Int64(file.size))
            data["sha256"] = .string(sha256)
            switch committed.outcome {
            case .stored(let replaced):
                return .stored(data: data, replaced: replaced, study: study, series: series)
            case .identical:
                data["duplicate"] = .string("identical bytes were already stored")
            case .kept(let existing):
                data["sha256"] = .string(existing)
                data["duplicate"] = .string("different bytes (SHA-256 \(sha256)) were received and discarded: duplicates = \"keep\"")
            }
            return .stored(data: data, replaced: nil, study: study, series: series)
        } catch {
            file.discard()
            return .failed(error)
        }
    }
}
