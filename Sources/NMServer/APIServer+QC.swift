import Foundation
import Hummingbird
import NIOCore
import NMBridgeCore
import NMJournal

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The API's QC writes (docs/qc.md, "Sign-off" and "Linearity"): `POST /v1/qc/sign`,
/// `POST /v1/qc/linearity/start`, `POST /v1/qc/linearity/finish`. Each journals one event
/// naming who asked: on the unix socket the peer's user (SO_PEERCRED, checked by the kernel),
/// over TCP the bearer token's name (one token per daemon: whoever holds it).
extension APIRoutes {
    func registerQualityControlWrites(_ router: Router<APIRequestContext>, tcp: Bool) {
        router.post("/v1/qc/sign") { request, context in try await sign(request, context: context, tcp: tcp) }
        router.post("/v1/qc/linearity/start") { request, context in try await linearity(request, context: context, tcp: tcp, start: true) }
        router.post("/v1/qc/linearity/finish") { request, context in try await linearity(request, context: context, tcp: tcp, start: false) }
    }

    /// Who sent the request, as the server can vouch for it.
    struct Requester {
        var name: String
        var via: String
        var uid: Int64?
    }

    func requester(_ context: APIRequestContext, tcp: Bool) async -> Requester? {
        if tcp { return Requester(name: tokenName ?? "api-token", via: "tcp") }
        guard let provider = context.channel as? any SocketOptionProvider,
            let credentials: PeerCredentials = try? await provider.unsafeGetSocketOption(
                level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET), name: NIOBSDSocket.Option(rawValue: 17 /* SO_PEERCRED, asm-generic/socket.h */)
            ).get()
        else { return nil }
        return Requester(name: Self.userName(uid: credentials.uid), via: "unix", uid: Int64(credentials.uid))
    }

    /// `struct ucred` of <sys/socket.h> (Linux), which Glibc's module map only exports with
    /// _GNU_SOURCE: three 32-bit fields, laid out as C lays them out.
    struct PeerCredentials: Sendable {
        var pid: Int32
        var uid: UInt32
        var gid: UInt32
    }

    /// The account name of `uid` (getpwuid_r), else `uid N`.
    static func userName(uid: uid_t) -> String {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        let status = getpwuid_r(uid, &entry, &buffer, buffer.count, &result)
        guard status == 0, result != nil, let name = entry.pw_name else { return "uid \(uid)" }
        return String(cString: name)
    }

    func sign(_ request: Request, context: APIRequestContext, tcp: Bool) async throws -> Response {
        let query = request.uri.queryParameters
        guard let date = query["date"].map(String.init), Self.isLocalDate(date) else {
            return .jsonError(.badRequest, code: "bad_request", message: "date: expected the reviewed site-local day as YYYY-MM-DD")
        }
        guard let who = await requester(context, tcp: tcp) else {
            return .jsonError(.forbidden, code: "no_identity", message: "cannot tell who is signing: the socket's peer credentials are unavailable")
        }
        var data: [String: JSONValue] = ["local_date": .string(date), "signer": .string(who.name), "via": .string(who.via)]
        if let uid = who.uid { data["uid"] = .int(uid) }
        if let comment = query["comment"].map(String.init), !comment.isEmpty { data["comment"] = .string(String(comment.prefix(1000))) }
        let event = try await journal.append(EventDraft(device: nil, driver: "api", kind: "qc.review.signed", data: data))
        return .json(JSONValue.object(["seq": .int(event.seq), "signer": .string(who.name), "via": .string(who.via), "local_date": .string(date)]).jsonText)
    }

    func linearity(_ request: Request, context: APIRequestContext, tcp: Bool, start: Bool) async throws -> Response {
        let query = request.uri.queryParameters
        guard let device = query["device"].map(String.init), monitor.devices.contains(where: { $0.id == device }) else {
            let known = monitor.devices.map(\.id).joined(separator: ", ")
            return .jsonError(.badRequest, code: "bad_request", message: "device: expected a configured device id (\(known))")
        }
        guard let who = await requester(context, tcp: tcp) else {
            return .jsonError(.forbidden, code: "no_identity", message: "cannot tell who is asking: the socket's peer credentials are unavailable")
        }
        let last = try await journal.events(
            EventQuery(filter: EventFilter(devices: [device], kinds: ["qc.dosecal.linearity_started", "qc.dosecal.linearity_finished"]), limit: 1, newestFirst: true)
        ).events.first
        let open = last?.kind == "qc.dosecal.linearity_started"
        var data: [String: JSONValue] = ["by": .string(who.name)]
        if start {
            if open, let last {
                return .jsonError(.conflict, code: "already_started", message: "a linearity test on \(device) is open since \(Timestamp.format(last.time)) (seq \(last.seq)); finish it first")
            }
            let text = query["nuclide"].map(String.init) ?? "Tc-99m"
            guard let nuclide = Radionuclide.named(text)?.name else {
                return .jsonError(.badRequest, code: "bad_request", message: "nuclide: \"\(text)\" is not a nuclide with a known half-life")
            }
            data["nuclide"] = .string(nuclide)
        } else if !open {
            return .jsonError(.conflict, code: "not_started", message: "no linearity test is open on \(device): start one with nmbridge qc linearity start \(device)")
        }
        let kind = start ? "qc.dosecal.linearity_started" : "qc.dosecal.linearity_finished"
        let event = try await journal.append(EventDraft(device: device, driver: "api", kind: kind, data: data))
        return .json(JSONValue.object(["seq": .int(event.seq), "kind": .string(kind), "device": .string(device), "by": .string(who.name)]).jsonText)
    }

    static func isLocalDate(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2])
        else { return false }
        return (1900...9999).contains(y) && (1...12).contains(m) && (1...31).contains(d)
    }
}
