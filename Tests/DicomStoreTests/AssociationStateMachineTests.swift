import Testing

@testable import DicomStore

/// The upper-layer state machine against PS3.8 Table 9-10, row by row: the rows are written
/// out here again (`expectedRow`), independently of the implementation, and each transition
/// is classified back into the action it performed.
@Suite struct AssociationStateMachineTests {
    typealias Machine = AssociationStateMachine
    typealias State = AssociationStateMachine.State

    static let request = AssociateRequest(
        calledAE: "NMBRIDGE", callingAE: "SPECTCT1", applicationContext: DICOM.applicationContext,
        contexts: [ProposedContext(id: 1, abstractSyntax: DICOM.verification, transferSyntaxes: [DICOM.TransferSyntax.implicitLittle])],
        maxPDULength: 16_384, implementationClassUID: "1.2.3", implementationVersionName: nil, asyncOperations: nil, roles: [])
    static let accept = AssociateAccept(
        calledAE: "NMBRIDGE", callingAE: "SPECTCT1",
        contexts: [AcceptedContext(id: 1, result: .acceptance, transferSyntax: DICOM.TransferSyntax.implicitLittle)], maxPDULength: 16_384,
        implementationClassUID: "1.2.3", implementationVersionName: "TEST", asyncOperations: nil, roles: [])
    static let pdv = PDV(contextID: 1, isCommand: true, isLast: true, bytes: [1, 2, 3])

    /// A machine brought to `state` by events alone (the acceptor's states through the
    /// acceptor, the requestor's through the requestor).
    static func machine(in state: State) -> Machine {
        var acceptor = Machine(role: .acceptor)
        var requestor = Machine(role: .requestor)
        func established(_ role: Machine.Role) -> Machine {
            if role == .acceptor {
                var m = Machine(role: .acceptor)
                _ = m.transportAccepted()
                _ = m.received(.associateRequest(request))
                _ = m.accept(accept)
                return m
            }
            var m = Machine(role: .requestor)
            _ = m.associateRequested()
            _ = m.transportConnected(request: request)
            _ = m.received(.associateAccept(accept))
            return m
        }
        switch state {
        case .idle:
            return acceptor
        case .awaitingAssociateRequest:
            _ = acceptor.transportAccepted()
            return acceptor
        case .awaitingLocalAssociateResponse:
            _ = acceptor.transportAccepted()
            _ = acceptor.received(.associateRequest(request))
            return acceptor
        case .awaitingTransportConnection:
            _ = requestor.associateRequested()
            return requestor
        case .awaitingAssociateResponse:
            _ = requestor.associateRequested()
            _ = requestor.transportConnected(request: request)
            return requestor
        case .established:
            return established(.acceptor)
        case .awaitingReleaseResponse:
            var m = established(.requestor)
            _ = m.requestRelease()
            return m
        case .awaitingLocalReleaseResponse:
            var m = established(.acceptor)
            _ = m.received(.releaseRequest)
            return m
        case .collisionRequestorAwaitingLocalResponse, .collisionRequestorAwaitingReleaseResponse:
            var m = established(.requestor)
            _ = m.requestRelease()
            _ = m.received(.releaseRequest)
            if state == .collisionRequestorAwaitingReleaseResponse { _ = m.respondToRelease() }
            return m
        case .collisionAcceptorAwaitingReleaseResponse, .collisionAcceptorAwaitingLocalResponse:
            var m = established(.acceptor)
            _ = m.requestRelease()
            _ = m.received(.releaseRequest)
            if state == .collisionAcceptorAwaitingLocalResponse { _ = m.received(.releaseResponse) }
            return m
        case .awaitingTransportClose:
            var m = established(.acceptor)
            _ = m.abort(source: 0, reason: 0, why: "test")
            return m
        }
    }

    @Test(arguments: State.allCases)
    func eachStateIsReachable(_ state: State) {
        #expect(Self.machine(in: state).state == state)
    }

    /// The PDUs a peer can send (Evt3, 4, 6, 10, 12, 13, 16) and an invalid one (Evt19).
    enum Incoming: String, CaseIterable, CustomStringConvertible {
        case evt3, evt4, evt6, evt10, evt12, evt13, evt16, evt19
        var description: String { rawValue }

        func feed(_ m: inout Machine) -> Machine.Action {
            switch self {
            case .evt3: m.received(.associateAccept(AssociationStateMachineTests.accept))
            case .evt4: m.received(.associateReject(result: 1, source: 1, reason: 7))
            case .evt6: m.received(.associateRequest(AssociationStateMachineTests.request))
            case .evt10: m.received(.data([AssociationStateMachineTests.pdv]))
            case .evt12: m.received(.releaseRequest)
            case .evt13: m.received(.releaseResponse)
            case .evt16: m.received(.abort(source: 0, reason: 0))
            case .evt19: m.receivedInvalidPDU(reason: 2, detail: "a bad PDU")
            }
        }
    }

    /// PS3.8 Table 9-10 for the PDUs from the peer, with the next state; "local" marks
    /// nmbridge's choices (AssociationStateMachine's comment says why).
    static func expectedRow(_ state: State, _ event: Incoming) -> (action: String, next: State) {
        let s = state.rawValue
        switch (event, s) {
        case (.evt16, 2), (.evt16, 13): return ("AA-2", .idle)
        case (.evt16, _): return ("AA-3", .idle)
        case (.evt3, 5): return ("AE-3", .established)
        case (.evt4, 5): return ("AE-4", .idle)
        case (.evt6, 2): return ("AE-6", .awaitingLocalAssociateResponse)
        case (.evt6, 13), (.evt19, 13): return ("AA-7", .awaitingTransportClose)
        case (.evt10, 6): return ("DT-2", .established)
        case (.evt10, 7): return ("AR-6", .awaitingReleaseResponse)
        case (.evt10, 8): return ("local: DT-2", .awaitingLocalReleaseResponse)
        case (.evt12, 6): return ("AR-2", .awaitingLocalReleaseResponse)
        case (.evt12, 7): return ("AR-8", .collisionRequestorAwaitingLocalResponse)  // the requestor's Sta7
        case (.evt12, 8): return ("local: ignored", .awaitingLocalReleaseResponse)
        case (.evt13, 7), (.evt13, 11): return ("AR-3", .idle)
        case (.evt13, 10): return ("AR-10", .collisionAcceptorAwaitingLocalResponse)
        case (_, 2): return ("AA-1", .awaitingTransportClose)
        case (_, 13): return ("AA-6", .awaitingTransportClose)
        default: return ("AA-8", .awaitingTransportClose)
        }
    }

    /// Names the table action a transition performed, from what it returned.
    static func classify(_ action: Machine.Action, from state: State) -> String {
        switch action {
        case .deliverAssociateAccept: "AE-3"
        case .close(nil, .rejected?): "AE-4"
        case .deliverAssociateRequest: "AE-6"
        case .deliverData: state == .awaitingReleaseResponse ? "AR-6" : state == .established ? "DT-2" : "local: DT-2"
        case .deliverReleaseRequest(let collision): collision ? "AR-8" : "AR-2"
        case .close(nil, .released?): "AR-3"
        case .deliverReleaseConfirmation: "AR-10"
        case .close(nil, nil): "AA-2"
        case .close(nil, .aborted(.peer)?): "AA-3"
        case .close(.abort(2, _)?, nil): "AA-1"
        case .close(.abort(2, _)?, .aborted?): "AA-8"
        case .send(.abort(2, _)): "AA-7"
        case .none: state == .awaitingLocalReleaseResponse ? "local: ignored" : "AA-6"
        default: "unexpected action \(action)"
        }
    }

    /// Every PDU in every state with a connection (Sta2, Sta3, Sta5–Sta13).
    @Test(arguments: State.allCases.filter { $0 != .idle && $0 != .awaitingTransportConnection }, Incoming.allCases)
    func aPDUFromThePeerFollowsTheTable(_ state: State, _ event: Incoming) {
        var m = Self.machine(in: state)
        let action = event.feed(&m)
        let expected = Self.expectedRow(state, event)
        #expect(Self.classify(action, from: state) == expected.action, "\(state) + \(event): \(action)")
        #expect(m.state == expected.next, "\(state) + \(event)")
    }

    /// AA-8 and AA-1 send A-ABORT from the service provider, reason "unexpected PDU", and
    /// say what came in which state.
    @Test func anUnexpectedPDUIsAbortedAndNamed() {
        var m = Self.machine(in: .established)
        let action = m.received(.associateRequest(Self.request))
        #expect(
            action
                == .close(
                    sending: .abort(source: 2, reason: 2), ending: .aborted(.unexpectedPDU("A-ASSOCIATE-RQ", in: .established))))
        guard case .close(_, .aborted(let cause)?) = action else { return }
        #expect(cause.description == "unexpected A-ASSOCIATE-RQ in Sta6 (association established)")
        var idle = Self.machine(in: .awaitingAssociateRequest)
        #expect(idle.received(.data([Self.pdv])) == .close(sending: .abort(source: 2, reason: 2), ending: nil))
    }

    /// The acceptor's whole life: Sta1 → Sta2 (AE-5) → Sta3 (AE-6) → Sta6 (AE-7) → DT-2,
    /// DT-1 → Sta8 (AR-2) → AR-7 → Sta13 (AR-4) → Sta1 (AR-5).
    @Test func theAcceptorAssociatesTransfersAndReleases() {
        var m = Machine(role: .acceptor)
        #expect(m.transportAccepted() == .startARTIM)
        #expect(m.state == .awaitingAssociateRequest)
        #expect(m.received(.associateRequest(Self.request)) == .deliverAssociateRequest(Self.request))
        #expect(m.state == .awaitingLocalAssociateResponse)
        #expect(m.accept(Self.accept) == .send(.associateAccept(Self.accept)))
        #expect(m.state == .established)
        #expect(m.received(.data([Self.pdv])) == .deliverData([Self.pdv]))
        #expect(m.sendData() == .sendData)
        #expect(m.received(.releaseRequest) == .deliverReleaseRequest(collision: false))
        #expect(m.state == .awaitingLocalReleaseResponse)
        #expect(m.sendData() == .sendData, "AR-7: responses still owed go out")
        #expect(m.respondToRelease() == .close(sending: .releaseResponse, ending: .released))
        #expect(m.state == .awaitingTransportClose)
        #expect(m.sendData() == .none, "nothing is sent once the association is over")
        #expect(m.transportClosed() == .close(sending: nil, ending: nil))
        #expect(m.state == .idle)
    }

    /// Sta3 + Evt8: AE-8, A-ASSOCIATE-RJ, then close.
    @Test func theAcceptorRejects() {
        var m = Self.machine(in: .awaitingLocalAssociateResponse)
        #expect(
            m.reject(result: 2, source: 3, reason: 2)
                == .close(sending: .associateReject(result: 2, source: 3, reason: 2), ending: .rejected(result: 2, source: 3, reason: 2)))
        #expect(m.state == .awaitingTransportClose)
    }

    /// The requestor: Sta1 → Sta4 (AE-1) → Sta5 (AE-2) → Sta6 (AE-3) → Sta7 (AR-1) → AR-6 →
    /// Sta1 (AR-3); and a rejection in Sta5 (AE-4).
    @Test func theRequestorAssociatesAndReleases() {
        var m = Machine(role: .requestor)
        #expect(m.associateRequested() == .connect)
        #expect(m.state == .awaitingTransportConnection)
        #expect(m.transportConnected(request: Self.request) == .send(.associateRequest(Self.request)))
        #expect(m.state == .awaitingAssociateResponse)
        #expect(m.received(.associateAccept(Self.accept)) == .deliverAssociateAccept(Self.accept))
        #expect(m.sendData() == .sendData)
        #expect(m.requestRelease() == .send(.releaseRequest))
        #expect(m.state == .awaitingReleaseResponse)
        #expect(m.sendData() == .none, "no DT-1 in Sta7")
        #expect(m.received(.data([Self.pdv])) == .deliverData([Self.pdv]))
        #expect(m.received(.releaseResponse) == .close(sending: nil, ending: .released))
        #expect(m.state == .idle)

        var rejected = Self.machine(in: .awaitingAssociateResponse)
        #expect(rejected.received(.associateReject(result: 1, source: 1, reason: 7)) == .close(sending: nil, ending: .rejected(result: 1, source: 1, reason: 7)))
        #expect(rejected.state == .idle)
    }

    /// Release collision, both sides: the requestor Sta7 → Sta9 (AR-8) → Sta11 (AR-9) → Sta1
    /// (AR-3); the acceptor Sta7 → Sta10 (AR-8) → Sta12 (AR-10) → Sta13 (AR-4).
    @Test func aReleaseCollisionIsResolvedOnBothSides() {
        var requestor = Self.machine(in: .awaitingReleaseResponse)
        #expect(requestor.received(.releaseRequest) == .deliverReleaseRequest(collision: true))
        #expect(requestor.state == .collisionRequestorAwaitingLocalResponse)
        #expect(requestor.respondToRelease() == .send(.releaseResponse))
        #expect(requestor.state == .collisionRequestorAwaitingReleaseResponse)
        #expect(requestor.received(.releaseResponse) == .close(sending: nil, ending: .released))
        #expect(requestor.state == .idle)

        var acceptor = Self.machine(in: .established)
        #expect(acceptor.requestRelease() == .send(.releaseRequest))
        #expect(acceptor.received(.releaseRequest) == .deliverReleaseRequest(collision: true))
        #expect(acceptor.state == .collisionAcceptorAwaitingReleaseResponse)
        #expect(acceptor.respondToRelease() == .none, "the acceptor answers only after the peer's A-RELEASE-RP")
        #expect(acceptor.received(.releaseResponse) == .deliverReleaseConfirmation)
        #expect(acceptor.state == .collisionAcceptorAwaitingLocalResponse)
        #expect(acceptor.respondToRelease() == .close(sending: .releaseResponse, ending: .released))
        #expect(acceptor.state == .awaitingTransportClose)
    }

    /// Evt18: in Sta2 the connection is closed after an A-ABORT (service provider, reason 0;
    /// a local choice, the table's AA-2 only closes); in Sta13 AA-2; elsewhere no timer runs.
    @Test func theARTIMTimer() {
        var waiting = Self.machine(in: .awaitingAssociateRequest)
        #expect(waiting.artimExpired() == .close(sending: .abort(source: 2, reason: 0), ending: nil))
        #expect(waiting.state == .awaitingTransportClose)
        #expect(waiting.artimExpired() == .close(sending: nil, ending: nil), "Sta13 + Evt18: AA-2")
        #expect(waiting.state == .idle)
        var established = Self.machine(in: .established)
        #expect(established.artimExpired() == .none)
        #expect(established.state == .established)
    }

    /// Evt15 in every state: AA-1 where an association exists (Sta3, Sta5–Sta12), AA-2 while
    /// connecting (Sta4), nothing where the table has no row.
    @Test(arguments: State.allCases)
    func aLocalAbort(_ state: State) {
        var m = Self.machine(in: state)
        let action = m.abort(source: 2, reason: 6, why: "a command set longer than 65536 bytes")
        switch state {
        case .awaitingTransportConnection:
            #expect(action == .close(sending: nil, ending: nil))
            #expect(m.state == .idle)
        case .idle, .awaitingAssociateRequest, .awaitingTransportClose:
            #expect(action == .none)
            #expect(m.state == state)
        default:
            #expect(action == .close(sending: .abort(source: 2, reason: 6), ending: .aborted(.local("a command set longer than 65536 bytes"))))
            #expect(m.state == .awaitingTransportClose)
        }
    }

    /// Evt17 in every state: AA-5 (Sta2), AR-5 (Sta13), AA-4 with its A-P-ABORT indication
    /// in Sta3–Sta12 (Sta4 too: the requestor's user is waiting); always → Sta1.
    @Test(arguments: State.allCases)
    func theConnectionCloses(_ state: State) {
        var m = Self.machine(in: state)
        let action = m.transportClosed()
        #expect(m.state == .idle)
        switch state {
        case .idle: #expect(action == .none)
        case .awaitingAssociateRequest, .awaitingTransportClose: #expect(action == .close(sending: nil, ending: nil))
        default: #expect(action == .close(sending: nil, ending: .aborted(.connectionClosed)))
        }
    }

    /// Errors below the upper layer (the framer's unknown PDU type, a PDU over the limit) are
    /// Evt19 with reason 0: AA-1 in Sta2, AA-8 with the error as the cause in Sta6; ignored
    /// in Sta13.
    @Test func aFailureBelowIsAnInvalidPDU() {
        var waiting = Self.machine(in: .awaitingAssociateRequest)
        #expect(waiting.failedBelow("unknown PDU type 0x9") == .close(sending: .abort(source: 2, reason: 0), ending: nil))
        var established = Self.machine(in: .established)
        #expect(
            established.failedBelow("a PDU of type 4 claims 99 bytes")
                == .close(sending: .abort(source: 2, reason: 0), ending: .aborted(.failure("a PDU of type 4 claims 99 bytes"))))
        #expect(established.failedBelow("Connection reset by peer") == .none, "Sta13: nothing more is written")
    }

    /// Local requests out of turn change nothing.
    @Test func localRequestsOutOfTurnAreRefused() {
        var established = Self.machine(in: .established)
        #expect(established.accept(Self.accept) == .none)
        #expect(established.reject(result: 1, source: 1, reason: 1) == .none)
        #expect(established.respondToRelease() == .none)
        #expect(established.transportAccepted() == .none)
        #expect(established.state == .established)
        var waiting = Self.machine(in: .awaitingAssociateRequest)
        #expect(waiting.requestRelease() == .none)
        #expect(waiting.sendData() == .none)
        #expect(waiting.state == .awaitingAssociateRequest)
        var acceptor = Machine(role: .acceptor)
        #expect(acceptor.associateRequested() == .none, "an acceptor does not connect")
    }
}
