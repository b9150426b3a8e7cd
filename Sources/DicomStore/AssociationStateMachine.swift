/// The protocol state of one DICOM association: the upper-layer state machine of PS3.8
/// §9.2 (states Sta1–Sta13 of Table 9-1, events Evt1–Evt19 and the transitions of Table
/// 9-10, actions AE-n, DT-n, AR-n, AA-n of Tables 9-6 to 9-9), for either role.
///
/// A value type without I/O, like swift-nio's protocol state machines: the channel handler
/// (``AssociationHandler``, acceptor) or the requester (``RequesterAssociation``, requestor)
/// calls the `mutating` function for each event — a PDU read, a timer, a decision of its
/// own — and carries out the ``Action`` it returns: write a PDU, start or stop the ARTIM
/// timer, hand something to the DIMSE layer above, close the connection. Each function's
/// comment lists the table rows it implements.
///
/// Local choices, where nmbridge does something other than the table says (each one is what
/// the receiver did before the state machine was a type of its own, and the tests hold it):
/// - **Sta13 is left at once.** Where the table writes a last PDU (A-ASSOCIATE-RJ,
///   A-RELEASE-RP, A-ABORT) and waits in Sta13, under ARTIM, for the peer to close, we
///   close the connection ourselves right after the write (``Action/close(sending:ending:)``).
///   The Sta13 rows are implemented all the same, for PDUs already read when we closed.
/// - **ARTIM in Sta2 says why.** When no A-ASSOCIATE-RQ came in time (Sta2 + Evt18) the
///   table closes the connection (AA-2); we first send A-ABORT (service provider, reason
///   not specified), so a silent peer that reads learns the association is gone.
/// - **A-ABORT's source and reason.** Where the table sends A-ABORT with the service-user
///   source from Sta2 (AA-1), we say service provider, reason 2 (unexpected PDU), as for
///   the same PDUs in the other states (AA-8).
/// - **A sender that asked to release early is still served.** In Sta8 (its A-RELEASE-RQ
///   read, our answers not all sent) a P-DATA-TF is handed up like in Sta6, and a second
///   A-RELEASE-RQ is ignored, where the table aborts (AA-8): a sender that asked to release
///   before the last fragment of its dataset still gets the C-STORE response.
/// - **Every A-ASSOCIATE-RQ is acceptable to the service provider** (AE-6): what may be
///   refused (AE titles, the association limit) is decided by the acceptor's user above,
///   which then calls ``reject(result:source:reason:)`` (Evt8, AE-8).
///
/// Events the table has no row for in the current state (a local request made at the wrong
/// time, a PDU before the connection exists) change nothing and return ``Action/none``.
struct AssociationStateMachine: Sendable {
    /// Which end of the association we are (PS3.8 §7.1): it decides Sta9 or Sta10 on a
    /// release collision (AR-8).
    enum Role: Sendable, Equatable {
        case requestor, acceptor
    }

    /// PS3.8 Table 9-1; `rawValue` is the state's number (Sta`n`).
    enum State: Int, Sendable, Equatable, CustomStringConvertible, CaseIterable {
        /// Sta1: idle (no connection, or the association is over).
        case idle = 1
        /// Sta2: connection open, awaiting the A-ASSOCIATE-RQ (acceptor).
        case awaitingAssociateRequest
        /// Sta3: awaiting our own A-ASSOCIATE response (acceptor's user deciding).
        case awaitingLocalAssociateResponse
        /// Sta4: awaiting the transport connection to open (requestor).
        case awaitingTransportConnection
        /// Sta5: A-ASSOCIATE-RQ sent, awaiting A-ASSOCIATE-AC or -RJ (requestor).
        case awaitingAssociateResponse
        /// Sta6: association established, ready for data transfer.
        case established
        /// Sta7: A-RELEASE-RQ sent, awaiting A-RELEASE-RP.
        case awaitingReleaseResponse
        /// Sta8: A-RELEASE-RQ received, awaiting our own A-RELEASE response.
        case awaitingLocalReleaseResponse
        /// Sta9: release collision, requestor: awaiting our own A-RELEASE response.
        case collisionRequestorAwaitingLocalResponse
        /// Sta10: release collision, acceptor: awaiting A-RELEASE-RP.
        case collisionAcceptorAwaitingReleaseResponse
        /// Sta11: release collision, requestor: awaiting A-RELEASE-RP.
        case collisionRequestorAwaitingReleaseResponse
        /// Sta12: release collision, acceptor: awaiting our own A-RELEASE response.
        case collisionAcceptorAwaitingLocalResponse
        /// Sta13: awaiting the transport connection to close (the association is over).
        case awaitingTransportClose

        var description: String { "Sta\(rawValue)" }

        /// The state's number and meaning, for messages.
        var explained: String {
            switch self {
            case .idle: "Sta1 (idle)"
            case .awaitingAssociateRequest: "Sta2 (awaiting A-ASSOCIATE-RQ)"
            case .awaitingLocalAssociateResponse: "Sta3 (deciding on the A-ASSOCIATE-RQ)"
            case .awaitingTransportConnection: "Sta4 (connecting)"
            case .awaitingAssociateResponse: "Sta5 (awaiting A-ASSOCIATE-AC or -RJ)"
            case .established: "Sta6 (association established)"
            case .awaitingReleaseResponse: "Sta7 (awaiting A-RELEASE-RP)"
            case .awaitingLocalReleaseResponse: "Sta8 (release requested by the peer)"
            case .collisionRequestorAwaitingLocalResponse, .collisionAcceptorAwaitingReleaseResponse,
                .collisionRequestorAwaitingReleaseResponse, .collisionAcceptorAwaitingLocalResponse:
                "\(self) (release collision)"
            case .awaitingTransportClose: "Sta13 (association ended)"
            }
        }

        /// Whether an association exists that the user above knows of (Sta3, Sta5–Sta12):
        /// its end is then reported (``Ending``).
        var hasAssociation: Bool {
            switch self {
            case .idle, .awaitingAssociateRequest, .awaitingTransportConnection, .awaitingTransportClose: false
            default: true
            }
        }
    }

    /// Why we aborted, or how the association otherwise ended without release.
    enum AbortCause: Sendable, Equatable, CustomStringConvertible {
        /// The peer sent A-ABORT (AA-3).
        case peer(source: UInt8, reason: UInt8)
        /// The peer sent a PDU the current state does not allow (AA-8).
        case unexpectedPDU(String, in: State)
        /// The peer sent bytes that are no PDU, or a malformed one (Evt19, AA-8).
        case invalidPDU(String)
        /// Something below the upper layer failed: the framer refused a PDU (unknown type, a
        /// length over the limit), TLS, the socket (Evt19).
        case failure(String)
        /// Our user asked for the abort (Evt15, AA-1), for this reason.
        case local(String)
        /// The connection closed under the association (Evt17, AA-4).
        case connectionClosed

        var description: String {
            switch self {
            case .peer(let source, let reason): "the peer aborted (source \(source), reason \(reason))"
            case .unexpectedPDU(let name, let state): "unexpected \(name) in \(state.explained)"
            case .invalidPDU(let detail): "malformed PDU: \(detail)"
            case .failure(let detail), .local(let detail): detail
            case .connectionClosed: "the connection closed without release"
            }
        }
    }

    /// How an association the user knew of ended (it is reported once, with the action that
    /// ends it).
    enum Ending: Sendable, Equatable {
        /// Released: A-RELEASE-RP received (AR-3) or sent (AR-4).
        case released
        /// A-ASSOCIATE-RJ received (AE-4) or sent (AE-8).
        case rejected(result: UInt8, source: UInt8, reason: UInt8)
        /// Ended without release.
        case aborted(AbortCause)
    }

    /// What the caller must do after an event.
    enum Action: Sendable, Equatable {
        /// Nothing (AA-6: a PDU after the association ended is ignored; events without a row).
        case none
        /// AE-1: open the transport connection.
        case connect
        /// AE-5: the connection is up; start the ARTIM timer.
        case startARTIM
        /// AE-2, AE-7, AR-1, AR-9, AA-7: write this PDU.
        case send(PDU)
        /// DT-1, AR-7: write the P-DATA-TF the user asked to send (the caller builds it:
        /// the requester streams datasets from disk without making `PDU` values of them).
        case sendData
        /// AE-6: stop the ARTIM timer and hand the A-ASSOCIATE-RQ to the user, who answers
        /// with ``accept(_:)`` or ``reject(result:source:reason:)``.
        case deliverAssociateRequest(AssociateRequest)
        /// AE-3: the peer accepted our A-ASSOCIATE-RQ.
        case deliverAssociateAccept(AssociateAccept)
        /// DT-2, AR-6: hand the P-DATA-TF's values to the user.
        case deliverData([PDV])
        /// AR-2, AR-8: the peer asks to release; the user answers with
        /// ``respondToRelease()`` once its pending work is done. `collision`: we had asked
        /// too (AR-8).
        case deliverReleaseRequest(collision: Bool)
        /// AR-10: in a release collision, the peer's A-RELEASE-RP to our request (acceptor).
        case deliverReleaseConfirmation
        /// AE-4, AE-8, AR-3, AR-4, AA-1, AA-2, AA-3, AA-4, AA-5, AA-8, AR-5: stop the ARTIM
        /// timer, write `sending` when there is one, and close the connection (at once, not
        /// after waiting in Sta13: see the type's comment). `ending` says how an association
        /// the user knew of ended; nil when there is nothing to tell it (Sta2, Sta13, and its
        /// own abort while connecting, Sta4).
        case close(sending: PDU?, ending: Ending?)
    }

    let role: Role
    private(set) var state: State = .idle

    init(role: Role) {
        self.role = role
    }

    /// Whether P-DATA-TF from the peer is handed to the user (Sta6; Sta7, AR-6; Sta8, a local
    /// choice, see the type's comment).
    var isTransferringData: Bool {
        state == .established || state == .awaitingReleaseResponse || state == .awaitingLocalReleaseResponse
    }

    // MARK: - Establishment

    /// Evt1, A-ASSOCIATE request (local user). Sta1: AE-1 → Sta4.
    mutating func associateRequested() -> Action {
        guard state == .idle, role == .requestor else { return .none }
        state = .awaitingTransportConnection
        return .connect
    }

    /// Evt2, transport connection confirmed (requestor). Sta4: AE-2, send the
    /// A-ASSOCIATE-RQ → Sta5.
    mutating func transportConnected(request: AssociateRequest) -> Action {
        guard state == .awaitingTransportConnection else { return .none }
        state = .awaitingAssociateResponse
        return .send(.associateRequest(request))
    }

    /// Evt5, transport connection indication (acceptor). Sta1: AE-5, start ARTIM → Sta2.
    mutating func transportAccepted() -> Action {
        guard state == .idle, role == .acceptor else { return .none }
        state = .awaitingAssociateRequest
        return .startARTIM
    }

    /// Evt7, A-ASSOCIATE response primitive (accept). Sta3: AE-7, send A-ASSOCIATE-AC → Sta6.
    mutating func accept(_ accept: AssociateAccept) -> Action {
        guard state == .awaitingLocalAssociateResponse else { return .none }
        state = .established
        return .send(.associateAccept(accept))
    }

    /// Evt8, A-ASSOCIATE response primitive (reject). Sta3: AE-8, send A-ASSOCIATE-RJ →
    /// Sta13 (and close).
    mutating func reject(result: UInt8, source: UInt8, reason: UInt8) -> Action {
        guard state == .awaitingLocalAssociateResponse else { return .none }
        state = .awaitingTransportClose
        return .close(
            sending: .associateReject(result: result, source: source, reason: reason),
            ending: .rejected(result: result, source: source, reason: reason))
    }

    // MARK: - Data transfer and release (local requests)

    /// Evt9, P-DATA request primitive. Sta6: DT-1; Sta8: AR-7 (answers still owed after the
    /// peer asked to release). Elsewhere nothing may be sent.
    mutating func sendData() -> Action {
        state == .established || state == .awaitingLocalReleaseResponse ? .sendData : .none
    }

    /// Evt11, A-RELEASE request primitive. Sta6: AR-1, send A-RELEASE-RQ → Sta7.
    mutating func requestRelease() -> Action {
        guard state == .established else { return .none }
        state = .awaitingReleaseResponse
        return .send(.releaseRequest)
    }

    /// Evt14, A-RELEASE response primitive. Sta8 and Sta12: AR-4, send A-RELEASE-RP → Sta13
    /// (and close); Sta9: AR-9, send A-RELEASE-RP → Sta11.
    mutating func respondToRelease() -> Action {
        switch state {
        case .awaitingLocalReleaseResponse, .collisionAcceptorAwaitingLocalResponse:
            state = .awaitingTransportClose
            return .close(sending: .releaseResponse, ending: .released)
        case .collisionRequestorAwaitingLocalResponse:
            state = .collisionRequestorAwaitingReleaseResponse
            return .send(.releaseResponse)
        default:
            return .none
        }
    }

    /// Evt15, A-ABORT request primitive, with the A-ABORT's source and reason (PS3.8 Table
    /// 9-26) and why, for the user's report. Sta3, Sta5–Sta12: AA-1, send A-ABORT → Sta13
    /// (and close); Sta4: AA-2, close → Sta1.
    mutating func abort(source: UInt8, reason: UInt8, why: String) -> Action {
        switch state {
        case .awaitingTransportConnection:
            state = .idle
            return .close(sending: nil, ending: nil)
        case .idle, .awaitingAssociateRequest, .awaitingTransportClose:
            return .none
        default:
            state = .awaitingTransportClose
            return .close(sending: .abort(source: source, reason: reason), ending: .aborted(.local(why)))
        }
    }

    // MARK: - Transport and timer

    /// Evt17, the transport connection closed. Sta2: AA-5 and Sta13: AR-5 (stop ARTIM) →
    /// Sta1; Sta3–Sta12: AA-4, A-P-ABORT indication → Sta1.
    mutating func transportClosed() -> Action {
        let before = state
        state = .idle
        switch before {
        case .idle: return .none
        case .awaitingAssociateRequest, .awaitingTransportClose: return .close(sending: nil, ending: nil)
        default: return .close(sending: nil, ending: .aborted(.connectionClosed))
        }
    }

    /// Evt18, the ARTIM timer expired. Sta2: A-ABORT (service provider, reason not
    /// specified), then close → Sta13 (the table's AA-2 only closes: see the type's comment);
    /// Sta13: AA-2, close → Sta1.
    mutating func artimExpired() -> Action {
        switch state {
        case .awaitingAssociateRequest:
            state = .awaitingTransportClose
            return .close(sending: .abort(source: 2, reason: 0), ending: nil)
        case .awaitingTransportClose:
            state = .idle
            return .close(sending: nil, ending: nil)
        default:
            return .none
        }
    }

    // MARK: - PDUs from the peer

    /// Evt19, an unrecognized or invalid PDU, answered with A-ABORT (service provider,
    /// `reason`). Sta2: AA-1 → Sta13; Sta13: AA-7 (send A-ABORT); Sta3, Sta5–Sta12: AA-8,
    /// A-P-ABORT indication → Sta13.
    mutating func receivedInvalidPDU(reason: UInt8, detail: String) -> Action {
        abortForPeer(reason: reason, cause: .invalidPDU(detail))
    }

    /// Evt19 as well: an error from below the upper layer (the framer refusing a PDU for
    /// its type or length, TLS, the socket), answered with A-ABORT (service provider,
    /// reason not specified), in the same rows as ``receivedInvalidPDU(reason:detail:)`` —
    /// except Sta13: the connection is closing, and an error of its socket is no PDU to
    /// answer (answering could fail again, and again).
    mutating func failedBelow(_ detail: String) -> Action {
        guard state != .awaitingTransportClose else { return .none }
        return abortForPeer(reason: 0, cause: .failure(detail))
    }

    /// Evt3, Evt4, Evt6, Evt10, Evt12, Evt13, Evt16: a PDU from the peer.
    mutating func received(_ pdu: PDU) -> Action {
        switch pdu {
        case .associateAccept(let accept):
            // Evt3. Sta5: AE-3 → Sta6.
            guard state == .awaitingAssociateResponse else { return unexpected(pdu) }
            state = .established
            return .deliverAssociateAccept(accept)
        case .associateReject(let result, let source, let reason):
            // Evt4. Sta5: AE-4, reject confirmation, close → Sta1.
            guard state == .awaitingAssociateResponse else { return unexpected(pdu) }
            state = .idle
            return .close(sending: nil, ending: .rejected(result: result, source: source, reason: reason))
        case .associateRequest(let request):
            // Evt6. Sta2: AE-6 → Sta3 (every request is acceptable to the provider); Sta13: AA-7.
            switch state {
            case .awaitingAssociateRequest:
                state = .awaitingLocalAssociateResponse
                return .deliverAssociateRequest(request)
            case .awaitingTransportClose:
                return .send(.abort(source: 2, reason: 2))
            default:
                return unexpected(pdu)
            }
        case .data(let pdvs):
            // Evt10. Sta6: DT-2; Sta7: AR-6; Sta8: handed up (a local choice; the table: AA-8).
            guard isTransferringData else { return unexpected(pdu) }
            return .deliverData(pdvs)
        case .releaseRequest:
            // Evt12. Sta6: AR-2 → Sta8; Sta7: AR-8 → Sta9 (requestor) or Sta10 (acceptor);
            // Sta8: ignored (a local choice; the table: AA-8).
            switch state {
            case .established:
                state = .awaitingLocalReleaseResponse
                return .deliverReleaseRequest(collision: false)
            case .awaitingReleaseResponse:
                state = role == .requestor ? .collisionRequestorAwaitingLocalResponse : .collisionAcceptorAwaitingReleaseResponse
                return .deliverReleaseRequest(collision: true)
            case .awaitingLocalReleaseResponse:
                return .none
            default:
                return unexpected(pdu)
            }
        case .releaseResponse:
            // Evt13. Sta7 and Sta11: AR-3, release confirmation, close → Sta1; Sta10: AR-10 → Sta12.
            switch state {
            case .awaitingReleaseResponse, .collisionRequestorAwaitingReleaseResponse:
                state = .idle
                return .close(sending: nil, ending: .released)
            case .collisionAcceptorAwaitingReleaseResponse:
                state = .collisionAcceptorAwaitingLocalResponse
                return .deliverReleaseConfirmation
            default:
                return unexpected(pdu)
            }
        case .abort(let source, let reason):
            // Evt16. Sta2 and Sta13: AA-2, close → Sta1; Sta3, Sta5–Sta12: AA-3, A-ABORT
            // indication, close → Sta1.
            switch state {
            case .idle, .awaitingTransportConnection:
                return .none
            case .awaitingAssociateRequest, .awaitingTransportClose:
                state = .idle
                return .close(sending: nil, ending: nil)
            default:
                state = .idle
                return .close(sending: nil, ending: .aborted(.peer(source: source, reason: reason)))
            }
        }
    }

    /// A PDU the current state does not allow: Sta2: AA-1; Sta13: AA-6 (ignored); Sta3,
    /// Sta5–Sta12: AA-8. (Sta1 and Sta4 have no connection to read from.)
    private mutating func unexpected(_ pdu: PDU) -> Action {
        switch state {
        case .awaitingTransportClose: .none
        default: abortForPeer(reason: 2, cause: .unexpectedPDU(pdu.name, in: state))
        }
    }

    /// AA-1 (Sta2), AA-7 (Sta13), AA-8 (Sta3, Sta5–Sta12): A-ABORT from the service provider.
    private mutating func abortForPeer(reason: UInt8, cause: AbortCause) -> Action {
        switch state {
        case .idle, .awaitingTransportConnection:
            return .none
        case .awaitingTransportClose:
            return .send(.abort(source: 2, reason: reason))
        case .awaitingAssociateRequest:
            state = .awaitingTransportClose
            return .close(sending: .abort(source: 2, reason: reason), ending: nil)
        default:
            state = .awaitingTransportClose
            return .close(sending: .abort(source: 2, reason: reason), ending: .aborted(cause))
        }
    }
}

extension PDU {
    /// The PDU's name in PS3.8, for messages.
    var name: String {
        switch self {
        case .associateRequest: "A-ASSOCIATE-RQ"
        case .associateAccept: "A-ASSOCIATE-AC"
        case .associateReject: "A-ASSOCIATE-RJ"
        case .data: "P-DATA-TF"
        case .releaseRequest: "A-RELEASE-RQ"
        case .releaseResponse: "A-RELEASE-RP"
        case .abort: "A-ABORT"
        }
    }
}
