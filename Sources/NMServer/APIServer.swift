import Foundation
import HTTPTypes
import Hummingbird
import DicomStore
import Logging
import NIOCore
import NMBridgeCore
import NMForward
import NMJournal
import NMQualityControl
import NMShipper
import Synchronization

/// The HTTP API (docs/api in README): events, live stream (SSE), devices, health, metrics.
///
/// One router serves the unix socket (access by file mode and group) and, optionally,
/// TCP, where every request needs the bearer token.
public struct APIRoutes: Sendable {
    let journal: Journal
    let monitor: DeviceMonitor
    let node: String
    let started: Date
    /// The PostgreSQL shipper's progress, when `[shipper]` is configured.
    let shipper: ShipperStatus?
    /// The QC service's progress, when `[qc]` is configured.
    let qc: QCStatus?
    /// The outbound queue, when destinations or RRDSRs are configured (APIServer+Outbound.swift).
    var outbound: OutboundService?
    /// The DICOM receiver's spool and materializer, when `[dicom]` is configured.
    let dicom: DicomReceiverStatus?
    /// Silence after which the stream sends a keep-alive comment.
    let keepAlive: Duration
    /// How long one write to a live stream may wait for the client before the stream is
    /// cut off: a client that reads nothing blocks the write once the socket buffers fill
    /// (a client that reads gets each write through in far less).
    let stallTimeout: Duration
    /// The name the TCP bearer token signs with (`qc.review.signed`): the token file's base name.
    public var tokenName: String?
    /// The web dashboard's sessions and time zone (APIServer+Dashboard.swift).
    let dashboard: DashboardSettings
    /// The largest page `GET /v1/events` returns.
    static let maxLimit = 10_000
    /// Most `kind` patterns or `device` ids one request may give.
    static let maxFilterValues = 64

    public init(
        journal: Journal, monitor: DeviceMonitor, node: String, started: Date = Date(), keepAlive: Duration = .seconds(15),
        stallTimeout: Duration = .seconds(30), shipper: ShipperStatus? = nil, qc: QCStatus? = nil,
        dashboard: DashboardSettings = DashboardSettings(), dicom: DicomReceiverStatus? = nil
    ) {
        self.dashboard = dashboard
        self.dicom = dicom
        self.shipper = shipper
        self.qc = qc
        self.keepAlive = keepAlive
        self.stallTimeout = stallTimeout
        self.journal = journal
        self.monitor = monitor
        self.node = node
        self.started = started
    }

    /// The router, with bearer-token checking when `token` is set.
    public func router(token: String?) -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())
        if let token { router.add(middleware: BearerTokenMiddleware(token: token, sessions: dashboard.sessions)) }
        router.get("/v1/events") { request, _ in try await events(request) }
        router.get("/v1/events/stream") { request, context in try await stream(request, channel: context.channel, logger: context.logger) }
        router.get("/v1/devices") { _, _ in devices() }
        router.get("/v1/health") { _, _ in try await health() }
        router.get("/metrics") { _, _ in try await metrics() }
        addOutboundRoutes(router)
        registerQualityControlWrites(router, tcp: token != nil)  // APIServer+QC.swift
        addDashboard(to: router, token: token)
        return router
    }

    // MARK: - Parameters

    struct Parameters {
        var after: Int64?
        var last: Int?
        var limit: Int
        var filter: EventFilter
    }

    func parameters(_ request: Request) throws -> Parameters {
        let query = request.uri.queryParameters
        let known: Set<String> = ["after", "since", "until", "device", "kind", "limit", "last"]
        for (key, _) in query where !known.contains(String(key)) {
            throw APIRequestError.badRequest("unknown parameter \"\(key)\" (known: \(known.sorted().joined(separator: ", ")))")
        }
        func integer(_ name: String, _ range: ClosedRange<Int64>) throws -> Int64? {
            guard let text = query[name[...]].map(String.init) else { return nil }
            guard let value = Int64(text), range.contains(value) else {
                throw APIRequestError.badRequest("\(name)=\(text) is not an integer in \(range.lowerBound)…\(range.upperBound)")
            }
            return value
        }
        func time(_ name: String) throws -> Date? {
            guard let text = query[name[...]].map(String.init) else { return nil }
            guard let date = Timestamp.parseTimeSpec(text) else {
                throw APIRequestError.badRequest("\(name)=\(text) is not an RFC 3339 time (2026-11-29T07:00:00Z), a date, or a duration like 15m, 2h, 7d")
            }
            return date
        }
        func list(_ name: String) -> [String] {
            query.getAll(name).flatMap { $0.split(separator: ",").map(String.init) }.filter { !$0.isEmpty }
        }
        let kinds = list("kind")
        let devices = list("device")
        // Each pattern becomes a term of the query; beyond a few dozen they are a mistake
        // or an attack (10 000 of them overflow SQLite's expression tree).
        for (name, values) in [("kind", kinds), ("device", devices)] where values.count > Self.maxFilterValues {
            throw APIRequestError.badRequest("\(name): \(values.count) values; at most \(Self.maxFilterValues) are allowed")
        }
        for pattern in kinds {
            if let problem = EventFilter.invalidKindPattern(pattern) { throw APIRequestError.badRequest("kind=\(pattern): \(problem)") }
        }
        let filter = EventFilter(devices: devices, kinds: kinds, since: try time("since"), until: try time("until"))
        return Parameters(
            after: try integer("after", 0...Int64.max), last: try integer("last", 1...Int64(Self.maxLimit)).map(Int.init),
            limit: Int(try integer("limit", 1...Int64(Self.maxLimit)) ?? 1000), filter: filter)
    }

    /// 410 if the cursor points before retention; 409 if it points past the last event
    /// (a cursor from another journal: resuming there would silently skip events).
    func checkCursor(_ after: Int64, oldest: Int64?, last: Int64) throws {
        if let oldest, after < oldest - 1 {  // not after + 1: after may be Int64.max
            throw APIRequestError.cursorExpired(CursorExpired(cursor: after, oldestSeq: oldest))
        }
        if after > last {
            throw APIRequestError.cursorAhead(cursor: after, lastSeq: last)
        }
    }

    // MARK: - Handlers

    func events(_ request: Request) async throws -> Response {
        let p = try parameters(request)
        let query = EventQuery(after: p.after, filter: p.filter, limit: p.last ?? p.limit, newestFirst: p.last != nil)
        let page = try await journal.events(query)
        // Checked against the same snapshot the page was read from.
        if let after = p.after { try checkCursor(after, oldest: page.oldestSeq, last: page.lastSeq) }
        var out = "{\"journal\":\"\(journal.id.uuidString.lowercased())\",\"node\":"
        JSONValue.writeString(node, to: &out)
        out += ",\"oldest_seq\":" + (page.oldestSeq.map { String($0) } ?? "null")
        out += ",\"last_seq\":\(page.lastSeq),\"events\":["
        for (i, event) in page.events.enumerated() {
            if i > 0 { out += "," }
            out += event.jsonText
        }
        out += "]}"
        return Response.json(out)
    }


    /// `namedEvents`: each frame's `event:` line is the event's kind; the dashboard's stream
    /// (`/ui/data/stream`) leaves it out, so that a browser's `EventSource` delivers every
    /// kind as a `message`. `coalesce`: events that arrive within this long of the first
    /// go out in one write (the dashboard's: a page needs no millisecond latency, and one
    /// write for several events costs the daemon less with many pages open).
    func stream(
        _ request: Request, channel: any Channel, logger: Logger, namedEvents: Bool = true, coalesce: Duration? = nil
    ) async throws -> Response {
        let p = try parameters(request)
        var after = p.after
        if let lastEventID = request.headers[HTTPField.Name("Last-Event-ID")!] {
            guard let value = Int64(lastEventID.trimmingCharacters(in: .whitespaces)), value >= 0 else {
                throw APIRequestError.badRequest("Last-Event-ID \"\(lastEventID)\" is not a seq number")
            }
            after = value
        }
        let bounds = try await journal.bounds()
        let start = after ?? bounds.last
        try checkCursor(start, oldest: bounds.oldest, last: bounds.last)
        // A subscriber whose buffer overflows is counted as lagged and its buffer released
        // at that moment, even while its response is stuck in a write to a client that
        // stopped reading. A client that reads again gets `event: lagged`; one whose write
        // stays blocked for `stallTimeout` is cut off (the connection closed).
        let cutOff = StreamCutOff(channel: channel, journal: journal, logger: logger)
        let follower = journal.follow(after: start, filter: p.filter, onOverflow: .fail) { cutOff.overflowed() }
        let journalID = journal.id.uuidString.lowercased()
        let stallTimeout = stallTimeout
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[HTTPField.Name("X-Journal-Id")!] = journalID
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                let watchdog = cutOff.watch(stallTimeout: stallTimeout)
                defer { watchdog.cancel() }
                // A first comment line tells the client the stream is open (and from where).
                try await cutOff.timed { try await writer.write(ByteBuffer(string: ": nmbridge journal \(journalID) after \(start)\n\n")) }
                var iterator = follower.makeAsyncIterator()
                var lastSentID = start
                do {
                    // A comment after each quiet stretch keeps proxies from closing the
                    // stream and lets the server notice clients that went away.
                    while let step = try await iterator.step(idleTimeout: keepAlive) {
                        guard case .event(let event) = step else {
                            // A filtered stream also moves the client's Last-Event-ID past
                            // events it skipped, so that its cursor does not age into retention.
                            if iterator.cursor > lastSentID {
                                lastSentID = iterator.cursor
                                let id = lastSentID
                                try await cutOff.timed { try await writer.write(ByteBuffer(string: ": keep-alive\nid: \(id)\n\n")) }
                            } else {
                                try await cutOff.timed { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
                            }
                            continue
                        }
                        lastSentID = event.seq
                        func frame(_ event: Event) -> String {
                            var frame = namedEvents ? "id: \(event.seq)\nevent: \(event.kind)\ndata: " : "id: \(event.seq)\ndata: "
                            frame += event.jsonText
                            frame += "\n\n"
                            return frame
                        }
                        var frames = frame(event)
                        var ended = false
                        if let coalesce {
                            let until = ContinuousClock.now + coalesce
                            do {
                                while frames.utf8.count < 64 * 1024 {
                                    let remaining = ContinuousClock.now.duration(to: until)
                                    guard remaining > .zero else { break }
                                    guard let next = try await iterator.step(idleTimeout: remaining) else {
                                        ended = true
                                        break
                                    }
                                    guard case .event(let more) = next else { break }
                                    lastSentID = more.seq
                                    frames += frame(more)
                                }
                            } catch {
                                // What was gathered goes out before the `lagged` or `error` event.
                                let bytes = ByteBuffer(string: frames)
                                try await cutOff.timed { try await writer.write(bytes) }
                                throw error
                            }
                        }
                        let bytes = ByteBuffer(string: frames)
                        try await cutOff.timed { try await writer.write(bytes) }
                        if ended { break }
                    }
                } catch let lagged as Lagged {
                    let data = "{\"error\":\"lagged\",\"last_seq\":\(lagged.lastDeliveredSeq),\"message\":\"\(lagged.description)\"}"
                    try await cutOff.timed { try await writer.write(ByteBuffer(string: "event: lagged\ndata: \(data)\n\n")) }
                } catch let expired as CursorExpired {
                    let data = "{\"error\":\"cursor_expired\",\"oldest_seq\":\(expired.oldestSeq),\"message\":\"\(expired.description)\"}"
                    try await cutOff.timed { try await writer.write(ByteBuffer(string: "event: error\ndata: \(data)\n\n")) }
                }
                try await cutOff.timed { try await writer.finish(nil) }
            })
    }

    func devices() -> Response {
        let list = JSONValue.array(monitor.devices.map(\.json))
        return Response.json(JSONValue.object(["node": .string(node), "devices": list]).jsonText)
    }

    func health() async throws -> Response {
        let stats = journal.statistics
        let bounds = try await journal.bounds()
        let devices = monitor.devices
        let dicom = dicomHealth()
        let degraded = stats.lastAppendErrorTime.map { errorTime in
            // Degraded until an append succeeds again after the failure.
            stats.lastSuccessTime.map { $0 < errorTime } ?? true
        } ?? false || dicom?.degraded == true
        var body: JSONValue = [
            "status": .string(degraded ? "degraded" : "ok"),
            "version": .string(NMBridgeVersion.current),
            "node": .string(node),
            "uptime_s": .double(Date().timeIntervalSince(started).rounded3),
            "journal": [
                "id": .string(journal.id.uuidString.lowercased()), "path": .string(journal.path),
                "oldest_seq": bounds.oldest.map(JSONValue.int) ?? .null, "last_seq": .int(bounds.last),
                "append_failures": .int(stats.appendFailures),
                "last_append_error": stats.lastAppendError.map(JSONValue.string) ?? .null,
                "subscribers": .int(Int64(stats.liveSubscribers)),
            ],
            "devices": [
                "total": .int(Int64(devices.count)),
                "up": .int(Int64(devices.filter { $0.link == "up" }.count)),
                "stale": .int(Int64(devices.filter(\.stale).count)),
                "driver_running": .int(Int64(devices.filter(\.driverRunning).count)),
            ],
        ]
        // An unreachable PostgreSQL does not degrade the daemon: events are journaled and
        // ship later. The lag says how far behind the department table is.
        if let qc = qc?.snapshot, case .object(var fields) = body {
            fields["qc"] = [
                "judged_seq": .int(qc.judgedSeq), "behind_events": .int(max(0, bounds.last - qc.judgedSeq)),
                "findings": .int(qc.findings), "failures": .int(qc.failures),
                "last_error": qc.lastError.map(JSONValue.string) ?? .null,
                "last_error_time": qc.lastErrorTime.map { .string(Timestamp.format($0)) } ?? .null,
            ]
            body = .object(fields)
        }
        if let shipper = shipper?.snapshot, case .object(var fields) = body {
            fields["shipper"] = [
                "server": .string(shipper.server), "connected": .bool(shipper.connected),
                "shipped_seq": shipper.shippedSeq.map(JSONValue.int) ?? .null,
                "lag_events": .int(shipper.lagEvents), "lag_s": .double((shipper.lagSeconds * 1000).rounded() / 1000),
                "lagging": .bool(shipper.lagging), "events_shipped": .int(shipper.eventsShipped),
                "duplicates_ignored": .int(shipper.duplicatesIgnored), "failures": .int(shipper.failures),
                "last_error": shipper.lastError.map(JSONValue.string) ?? .null,
                "last_error_time": shipper.lastErrorTime.map { .string(Timestamp.format($0)) } ?? .null,
            ]
            body = .object(fields)
        }
        if let outbound = outboundHealth(), case .object(var fields) = body {
            fields["outbound"] = outbound
            body = .object(fields)
        }
        if let dicom, case .object(var fields) = body {
            fields["dicom"] = dicom.body
            body = .object(fields)
        }
        return Response.json(body.jsonText, status: degraded ? .serviceUnavailable : .ok)
    }

    func metrics() async throws -> Response {
        let stats = journal.statistics
        let usedBytes = try await journal.usedBytes()
        var text = PrometheusText()
        text.metric("nmbridge_build_info", .gauge, "Build information.", [(["version": NMBridgeVersion.current], 1)])
        text.metric("nmbridge_uptime_seconds", .gauge, "Seconds since the daemon started.", [([:], Date().timeIntervalSince(started))])
        text.metric("nmbridge_journal_events_appended_total", .counter, "Events appended since start.", [([:], Double(stats.appendedEvents))])
        text.metric("nmbridge_journal_commits_total", .counter, "Journal transactions (group commits) since start.", [([:], Double(stats.commits))])
        text.metric("nmbridge_journal_append_failures_total", .counter, "Failed journal commits since start.", [([:], Double(stats.appendFailures))])
        text.metric("nmbridge_journal_last_seq", .gauge, "Last committed seq.", [([:], Double(stats.lastSeq))])
        text.metric("nmbridge_journal_used_bytes", .gauge, "Bytes of the journal file in use.", [([:], Double(usedBytes))])
        text.metric("nmbridge_api_live_subscribers", .gauge, "Followers currently on the live feed.", [([:], Double(stats.liveSubscribers))])
        text.metric("nmbridge_api_lagged_subscribers_total", .counter, "Followers that overflowed their buffer.", [([:], Double(stats.laggedSubscribers))])
        let devices = monitor.devices
        text.metric("nmbridge_device_up", .gauge, "1 when the device's link is up.", devices.map { (["device": $0.id, "driver": $0.driver], $0.link == "up" ? 1 : 0) })
        text.metric("nmbridge_device_stale", .gauge, "1 when the device is stale.", devices.map { (["device": $0.id], $0.stale ? 1 : 0) })
        text.metric("nmbridge_driver_restarts_total", .counter, "Driver restarts after crashes.", devices.map { (["device": $0.id], Double($0.restarts)) })
        dicomMetrics(&text)
        if let qc = qc?.snapshot {
            text.metric("nmbridge_qc_judged_seq", .gauge, "The journal seq through which the QC service has judged every input.", [([:], Double(qc.judgedSeq))])
            text.metric("nmbridge_qc_findings_total", .counter, "qc.* findings journaled since the daemon started.", [([:], Double(qc.findings))])
            text.metric("nmbridge_qc_failures_total", .counter, "Times the QC service failed and started over.", [([:], Double(qc.failures))])
        }
        if let shipper = shipper?.snapshot {
            let server = ["server": shipper.server]
            text.metric("nmbridge_shipper_connected", .gauge, "1 while the shipper is connected to PostgreSQL.", [(server, shipper.connected ? 1 : 0)])
            text.metric("nmbridge_shipper_shipped_seq", .gauge, "Last seq committed to PostgreSQL (0 before the server was reached).", [(server, Double(shipper.shippedSeq ?? 0))])
            text.metric("nmbridge_shipper_lag_events", .gauge, "Events journaled but not yet shipped.", [(server, Double(shipper.lagEvents))])
            text.metric("nmbridge_shipper_lag_seconds", .gauge, "Age of the oldest unshipped event (0 when none waits).", [(server, shipper.lagSeconds)])
            text.metric("nmbridge_shipper_lagging", .gauge, "1 during a shipper.lagging episode.", [(server, shipper.lagging ? 1 : 0)])
            text.metric("nmbridge_shipper_events_total", .counter, "Events inserted into PostgreSQL since start.", [(server, Double(shipper.eventsShipped))])
            text.metric("nmbridge_shipper_duplicates_total", .counter, "Re-sent events the server already had (no effect).", [(server, Double(shipper.duplicatesIgnored))])
            text.metric("nmbridge_shipper_batches_total", .counter, "Batch transactions committed since start.", [(server, Double(shipper.batches))])
            text.metric("nmbridge_shipper_failures_total", .counter, "Failed connections or batches since start.", [(server, Double(shipper.failures))])
        }
        outboundMetrics(&text)
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text.output)))
    }
}

/// Prometheus text exposition format, for the handful of values the daemon exports.
struct PrometheusText {
    enum MetricType: String { case counter, gauge }
    var output = ""

    mutating func metric(_ name: String, _ type: MetricType, _ help: String, _ samples: [([String: String], Double)]) {
        output += "# HELP \(name) \(help)\n# TYPE \(name) \(type.rawValue)\n"
        for (labels, value) in samples {
            output += name
            if !labels.isEmpty {
                output += "{" + labels.keys.sorted().map { key in
                    let escaped = labels[key]!.replacingOccurrences(of: "\\", with: "\\\\")
                        .replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
                    return "\(key)=\"\(escaped)\""
                }.joined(separator: ",") + "}"
            }
            output += " " + (value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)") + "\n"
        }
    }
}

/// An API error with a stable code, turned into a JSON body by `JSONErrorMiddleware`.
enum APIRequestError: Error {
    case badRequest(String)
    case cursorExpired(CursorExpired)
    case cursorAhead(cursor: Int64, lastSeq: Int64)
}

extension Response {
    static func json(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    static func jsonError(_ status: HTTPResponse.Status, code: String, message: String, extra: [String: JSONValue] = [:]) -> Response {
        var body = extra
        body["error"] = .string(code)
        body["message"] = .string(message)
        return json(JSONValue.object(body).jsonText, status: status)
    }
}

/// Every error leaves as JSON: `{"error": "<code>", "message": "…"}` (4xx for the
/// caller's mistakes, 410 for an expired cursor, 5xx for ours).
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIRequestError {
            switch error {
            case .badRequest(let message):
                return .jsonError(.badRequest, code: "bad_request", message: message)
            case .cursorExpired(let expired):
                return .jsonError(.gone, code: "cursor_expired", message: expired.description, extra: ["oldest_seq": .int(expired.oldestSeq)])
            case .cursorAhead(let cursor, let last):
                return .jsonError(
                    .conflict, code: "cursor_ahead",
                    message: "cursor \(cursor) is past the last event (seq \(last)) of this journal: it belongs to another journal history; start again from 0",
                    extra: ["last_seq": .int(last)])
            }
        } catch let error as HTTPError {
            if error.status == .notFound {
                return .jsonError(.notFound, code: "not_found", message: "no such endpoint: \(request.method) \(request.uri.path); see GET /v1/events, /v1/events/stream, /v1/devices, /v1/health, /metrics")
            }
            return .jsonError(error.status, code: "http_\(error.status.code)", message: error.body ?? error.status.reasonPhrase)
        } catch {
            // The error's text (an SQL statement, a path) stays in the daemon's log.
            context.logger.error("API request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return .jsonError(
                .internalServerError, code: "internal_error",
                message: "the daemon could not answer this request; its log (journalctl -u nmbridged) says why")
        }
    }
}

/// Requires `Authorization: Bearer <token>` (constant-time comparison), or the web
/// dashboard's session cookie (APIServer+Dashboard.swift).
struct BearerTokenMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let token: String
    var sessions: DashboardSessions?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let sessions {
            let path = request.uri.path
            if APIRoutes.isPublicDashboardPath(path) { return try await next(request, context) }
            if let id = DashboardSessions.sessionID(cookieHeader: request.cookieHeader), sessions.isValid(id) {
                return try await next(request, context)
            }
            if APIRoutes.isDashboardPage(path), request.headers[.authorization] == nil { return APIRoutes.redirect(to: "/ui/login") }
        }
        let presented = request.headers[.authorization].flatMap { value -> String? in
            guard value.lowercased().hasPrefix("bearer ") else { return nil }
            return String(value.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        }
        guard let presented, Self.constantTimeEquals(presented, token) else {
            var response = Response.jsonError(.unauthorized, code: "unauthorized", message: "this endpoint needs Authorization: Bearer <token> (see [api] token_file)")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        return try await next(request, context)
    }

    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) {
            difference |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return difference == 0
    }
}

/// The API's request context: Hummingbird's, plus the connection, so that a live stream
/// whose client stopped reading can be closed from outside its blocked write.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
        channel = source.channel
    }
}

/// Cuts a live stream off when one write has waited longer than the stall timeout: the
/// client stopped reading. Closing the connection ends the blocked write, which nothing
/// else would (the stream only learns of an overflow when it asks for the next event).
final class StreamCutOff: Sendable {
    let channel: any Channel
    let journal: Journal
    let logger: Logger
    /// When the pending write started (`DispatchTime` nanoseconds), 0 when none is pending.
    private let pendingSince = Atomic<UInt64>(0)
    private let closed = Atomic<Bool>(false)
    /// Set by the journal when the subscription overflowed (it counted it as lagged then).
    private let hasOverflowed = Atomic<Bool>(false)

    func overflowed() { hasOverflowed.store(true, ordering: .relaxed) }

    init(channel: any Channel, journal: Journal, logger: Logger) {
        self.channel = channel
        self.journal = journal
        self.logger = logger
    }

    func close(reason: String) {
        guard closed.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        logger.notice(
            "live stream cut off", metadata: ["reason": "\(reason)", "peer": "\(channel.remoteAddress?.description ?? "unix socket")"])
        channel.close(promise: nil)
    }

    /// Runs one write, visible to the watchdog while it waits.
    func timed(_ write: () async throws -> Void) async throws {
        pendingSince.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
        defer { pendingSince.store(0, ordering: .relaxed) }
        try await write()
    }

    /// Looks at the pending write every second (or a quarter of the timeout).
    func watch(stallTimeout: Duration) -> Task<Void, Never> {
        let limit = UInt64(stallTimeout.components.seconds) * 1_000_000_000 + UInt64(stallTimeout.components.attoseconds / 1_000_000_000)
        return Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: min(stallTimeout / 4, .seconds(1)))
                let since = pendingSince.load(ordering: .relaxed)
                guard since != 0, DispatchTime.now().uptimeNanoseconds - since > limit else { continue }
                if !hasOverflowed.load(ordering: .relaxed) { journal.countLaggedSubscriber() }
                close(reason: "a write waited more than \(stallTimeout) for the client to read")
                return
            }
        }
    }
}
