import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NMBridgeCore
import NMJournal
import NMQualityControl

/// What the web dashboard needs beyond the API's own state: its login sessions and the
/// site's time zone (days and times of day on its pages).
public struct DashboardSettings: Sendable {
    public var sessions: DashboardSessions
    public var zone: TimeZone

    public init(sessions: DashboardSessions = DashboardSessions(path: nil), zone: TimeZone = .current) {
        self.sessions = sessions
        self.zone = zone
    }
}

/// The web dashboard under `/ui/` (docs/dashboard.md): static pages and assets embedded in
/// the binary (UIAssets), the login that turns the API token into a session cookie, and
/// the few views the API does not have (the day's QC sheet, the day's studies). Devices
/// and events come from the API itself (`/v1/devices`, `/v1/events`, the SSE stream).
extension APIRoutes {
    /// The policy of every dashboard page: scripts, styles, images and connections from
    /// the daemon itself, nothing inline, no framing.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        + "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    /// How long the dashboard's stream gathers events into one write.
    static let streamCoalescing: Duration = .milliseconds(200)

    /// Most days of QC trend the QC page charts.
    static let dashboardChartDays = 30

    func addDashboard(to router: Router<APIRequestContext>, token: String?) {
        // The router matches `/ui` and `/ui/` alike; the page uses absolute paths only.
        router.get("/ui/") { _, _ in Self.page(UIAssets.page("index.html")) }
        router.get("/ui/login") { request, _ in
            if token == nil || dashboard.hasSession(request) { return Self.redirect(to: "/ui/") }
            return Self.page(UIAssets.page("login.html"))
        }
        router.post("/ui/login") { request, _ in try await login(request, token: token) }
        router.post("/ui/logout") { request, _ in
            if let id = DashboardSessions.sessionID(cookieHeader: request.cookieHeader) { dashboard.sessions.remove(id) }
            var response = Self.redirect(to: token == nil ? "/ui/" : "/ui/login")
            response.headers[.setCookie] = "\(DashboardSessions.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
            return response
        }
        router.get("/ui/assets/:name") { request, context in
            guard let name = context.parameters.get("name"), let asset = UIAssets.hashed[name] else {
                return Response.jsonError(.notFound, code: "not_found", message: "no such dashboard asset")
            }
            return Self.serve(asset, request: request, cache: "public, max-age=31536000, immutable")
        }
        router.get("/ui/data/stream") { request, context in
            try await stream(request, channel: context.channel, logger: context.logger, namedEvents: false, coalesce: Self.streamCoalescing)
        }
        router.get("/ui/data/recent") { request, _ in try await recent(request) }
        router.get("/ui/data/info") { _, _ in
            Response.json(
                JSONValue.object([
                    "node": .string(node), "zone": .string(dashboard.zone.identifier), "version": .string(NMBridgeVersion.current),
                    "journal": .string(journal.id.uuidString.lowercased()), "login": .bool(token != nil),
                    "today": .string(LocalDay(containing: Date(), zone: dashboard.zone).description),
                ]).jsonText)
        }
        router.get("/ui/data/qc") { request, _ in
            let report = try await qcReport(day: try Self.day(request, zone: dashboard.zone))
            return Response.json(report.dashboardJSON.jsonText)
        }
        router.get("/ui/data/qc/chart.svg") { request, _ in
            let device = request.uri.queryParameters["device"].map(String.init) ?? ""
            let report = try await qcReport(day: try Self.day(request, zone: dashboard.zone))
            guard let svg = report.constancyChartDocument(device: device) else {
                return Response.jsonError(.notFound, code: "not_found", message: "no constancy trend for device \"\(device)\"")
            }
            var headers = HTTPFields()
            headers[.contentType] = "image/svg+xml"
            headers[.cacheControl] = "no-store"
            // An image cannot run scripts; its own styles are its business.
            headers[Self.cspField] = "default-src 'none'; style-src 'unsafe-inline'"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: svg)))
        }
        router.get("/ui/data/studies") { request, _ in
            try await studies(day: try Self.day(request, zone: dashboard.zone))
        }
    }

    // MARK: - Access

    /// Paths anyone may fetch: the login form and the static assets (no data in either).
    static func isPublicDashboardPath(_ path: String) -> Bool {
        path == "/ui/login" || path.hasPrefix("/ui/assets/")
    }

    /// Pages a browser navigates to: without a session they redirect to the login form
    /// rather than answering 401 JSON.
    static func isDashboardPage(_ path: String) -> Bool {
        path == "/ui" || path == "/ui/"
    }

    func login(_ request: Request, token: String?) async throws -> Response {
        guard let token else { return Self.redirect(to: "/ui/") }
        let body = try await request.body.collect(upTo: 4096)
        let form = Self.formFields(String(buffer: body))
        guard let presented = form["token"], BearerTokenMiddleware.constantTimeEquals(presented, token) else {
            // Slows guessing down; a token has at least DaemonConfiguration.API.minimumTokenLength characters.
            try await Task.sleep(for: .seconds(1))
            var response = Self.page(UIAssets.page("login.html"), replacing: "<!--error-->", with: "<p class=\"error\" role=\"alert\">That is not the API token of this daemon.</p>")
            response.status = .unauthorized
            return response
        }
        let session = dashboard.sessions.create()
        var response = Self.redirect(to: "/ui/")
        let maxAge = Int(session.expiry.timeIntervalSinceNow.rounded())
        response.headers[.setCookie] = "\(DashboardSessions.cookieName)=\(session.id); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(maxAge)"
        return response
    }

    // MARK: - Views

    /// Largest `data` (JSON bytes) and `raw` (bytes) an event keeps in `/ui/data/recent`.
    static let compactDataLimit = 1024, compactRawLimit = 256

    /// The newest `last` events (default 200) for the events page's first screen, in seq
    /// order, with large values cut (a flood's uniformity map, a long raw reply): the page
    /// fetches the whole event when it is opened. Keeps the first load small.
    func recent(_ request: Request) async throws -> Response {
        let text = request.uri.queryParameters["last"].map(String.init) ?? "200"
        guard let last = Int(text), (1...1000).contains(last) else {
            throw APIRequestError.badRequest("last=\(text) is not an integer in 1…1000")
        }
        let page = try await journal.events(EventQuery(limit: last, newestFirst: true))
        var out = "{\"last_seq\":\(page.lastSeq),\"events\":["
        for (i, event) in page.events.sorted(by: { $0.seq < $1.seq }).enumerated() {
            if i > 0 { out += "," }
            guard event.dataJSON.utf8.count > Self.compactDataLimit || (event.raw?.count ?? 0) > Self.compactRawLimit else {
                out += event.jsonText
                continue
            }
            var compact = event
            var data = event.data
            for (key, value) in data where value.jsonText.utf8.count > 200 {
                data[key] = .string("… \(value.jsonText.utf8.count) bytes (open the event)")
            }
            compact.dataJSON = JSONValue.object(data).jsonText
            if let raw = event.raw, raw.count > Self.compactRawLimit { compact.raw = Array(raw.prefix(Self.compactRawLimit)) }
            var text = compact.jsonText
            text.removeLast()  // the closing brace
            out += text + ",\"truncated\":true}"
        }
        return Response.json(out + "]}")
    }

    /// The QC report of `day` as `nmbridge qc report` makes it, from the journal's qc.* events.
    func qcReport(day: LocalDay) async throws -> QCReport {
        let zone = dashboard.zone
        let since = day.adding(days: -(Self.dashboardChartDays - 1)).start(in: zone).addingTimeInterval(-86_400)
        let until = day.adding(days: 1).start(in: zone).addingTimeInterval(86_400)
        let events = try await allEvents(EventFilter(kinds: ["qc.*"], since: since, until: until))
        return QCReport(events: events, day: day, node: node, generated: Date(), zone: zone, chartDays: Self.dashboardChartDays)
    }

    /// Every event matching `filter`, paged from the journal.
    func allEvents(_ filter: EventFilter) async throws -> [Event] {
        var events: [Event] = []
        var after: Int64 = 0
        while true {
            let page = try await journal.events(EventQuery(after: after, filter: filter, limit: 5000))
            events += page.events
            guard let last = page.events.last, page.events.count == 5000 else { return events }
            after = last.seq
        }
    }

    /// The studies received on `day`: their series with instance counts, and the QC
    /// findings of each series (from the day's QC report).
    func studies(day: LocalDay) async throws -> Response {
        let zone = dashboard.zone
        let stored = try await allEvents(
            EventFilter(kinds: ["dicom.instance.stored", "dicom.study.stable"], since: day.start(in: zone), until: day.adding(days: 1).start(in: zone)))
        let report = try await qcReport(day: day)
        var findingsBySeries: [String: [JSONValue]] = [:]
        for study in report.studies {
            for series in study.series {
                findingsBySeries[series.seriesUID ?? "", default: []] += series.findings.map(report.row)
            }
        }
        struct SeriesSummary {
            var uid: String
            var description = "", modality = ""
            var instances = 0
            var bytes: Int64 = 0
            var last: Date
        }
        struct StudySummary {
            var uid: String
            var patientID = "", patientName = "", accession = "", callingAE = ""
            var first: Date, last: Date
            var stableSeq: Int64?
            var series: [SeriesSummary] = []
        }
        var order: [String] = []
        var studies: [String: StudySummary] = [:]
        for event in stored {
            let data = event.data
            let studyUID = data["study_uid"]?.stringValue ?? ""
            if studies[studyUID] == nil {
                order.append(studyUID)
                studies[studyUID] = StudySummary(uid: studyUID, first: event.time, last: event.time)
            }
            if event.kind == "dicom.study.stable" {
                studies[studyUID]?.stableSeq = event.seq
                continue
            }
            guard data["duplicate"] != .bool(true) else { continue }
            studies[studyUID]?.last = event.time
            func fill(_ key: String, _ path: WritableKeyPath<StudySummary, String>) {
                if studies[studyUID]?[keyPath: path].isEmpty == true, let text = data[key]?.stringValue { studies[studyUID]?[keyPath: path] = text }
            }
            fill("patient_id", \.patientID)
            fill("patient_name", \.patientName)
            fill("accession_number", \.accession)
            fill("calling_ae", \.callingAE)
            let seriesUID = data["series_uid"]?.stringValue ?? ""
            var series = studies[studyUID]!.series
            let index: Int
            if let found = series.firstIndex(where: { $0.uid == seriesUID }) {
                index = found
            } else {
                series.append(SeriesSummary(uid: seriesUID, last: event.time))
                index = series.count - 1
            }
            series[index].instances += 1
            series[index].bytes += data["bytes"]?.intValue ?? 0
            series[index].last = event.time
            if series[index].description.isEmpty { series[index].description = data["series_description"]?.stringValue ?? "" }
            if series[index].modality.isEmpty { series[index].modality = data["modality"]?.stringValue ?? "" }
            studies[studyUID]!.series = series
        }
        let list: [JSONValue] = order.compactMap { studies[$0] }.filter { !$0.series.isEmpty }.map { study in
            [
                "study_uid": .string(study.uid), "patient_id": .string(study.patientID), "patient_name": .string(study.patientName),
                "accession_number": .string(study.accession), "calling_ae": .string(study.callingAE),
                "first": .string(Timestamp.format(study.first)), "last": .string(Timestamp.format(study.last)),
                "stable": .bool(study.stableSeq != nil),
                "series": .array(
                    study.series.map { series in
                        [
                            "series_uid": .string(series.uid), "description": .string(series.description), "modality": .string(series.modality),
                            "instances": .int(Int64(series.instances)), "bytes": .int(series.bytes), "last": .string(Timestamp.format(series.last)),
                            "findings": .array(findingsBySeries[series.uid] ?? []),
                        ]
                    }),
            ]
        }
        return Response.json(JSONValue.object(["day": .string(day.description), "zone": .string(zone.identifier), "studies": .array(list)]).jsonText)
    }

    // MARK: - Responses

    static let cspField = HTTPField.Name("Content-Security-Policy")!

    static func day(_ request: Request, zone: TimeZone) throws -> LocalDay {
        let text = request.uri.queryParameters["date"].map(String.init) ?? "today"
        guard let day = LocalDay(argument: text, now: Date(), zone: zone) else {
            throw APIRequestError.badRequest("date=\(text): expected today, yesterday or a date YYYY-MM-DD")
        }
        return day
    }

    static func redirect(to location: String) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        headers[.cacheControl] = "no-store"
        return Response(status: .seeOther, headers: headers)
    }

    /// An HTML page: never cached (it names the current assets), under the strict policy.
    static func page(_ asset: UIAsset, replacing marker: String? = nil, with text: String = "") -> Response {
        var headers = HTTPFields()
        headers[.contentType] = asset.contentType
        headers[.cacheControl] = "no-store"
        headers[cspField] = contentSecurityPolicy
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        var body = asset.identity
        if let marker { body = ByteBuffer(string: String(buffer: body).replacingOccurrences(of: marker, with: text)) }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: body))
    }

    /// A static asset, gzip-compressed when the client takes it and that is smaller.
    static func serve(_ asset: UIAsset, request: Request, cache: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = asset.contentType
        headers[.cacheControl] = cache
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[.vary] = "Accept-Encoding"
        let acceptsGzip = request.headers[values: .acceptEncoding].contains { $0.lowercased().contains("gzip") }
        if acceptsGzip, let gzip = asset.gzip {
            headers[.contentEncoding] = "gzip"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: gzip))
        }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: asset.identity))
    }

    /// `application/x-www-form-urlencoded` fields.
    static func formFields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            guard let key = parts.first else { continue }
            fields[decode(key)] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return fields
    }
}

extension DashboardSettings {
    /// Whether the request carries a live session cookie.
    func hasSession(_ request: Request) -> Bool {
        DashboardSessions.sessionID(cookieHeader: request.cookieHeader).map(sessions.isValid) ?? false
    }
}

extension Request {
    /// Every `Cookie` field, joined as one.
    var cookieHeader: String? {
        let values = headers[values: .cookie]
        return values.isEmpty ? nil : values.joined(separator: "; ")
    }
}

/// One file of `ui/`, as `scripts/embed-ui` embedded it (UIAssets.generated.swift).
struct UIAsset: Sendable {
    /// The name in `ui/`.
    let name: String
    /// The name it is served under: content-hashed for scripts and styles.
    let servedName: String
    let contentType: String
    let identity: ByteBuffer
    /// The gzip-compressed bytes, when smaller.
    let gzip: ByteBuffer?
}

/// The dashboard's files, embedded at build time (no bundle directory to ship or find).
enum UIAssets {
    /// By served name.
    static let all: [String: UIAsset] = {
        var assets: [String: UIAsset] = [:]
        for entry in generated {
            let identity = Data(base64Encoded: entry.identity) ?? Data()
            let gzip = entry.gzip.flatMap { Data(base64Encoded: $0) }
            assets[entry.servedName] = UIAsset(
                name: entry.name, servedName: entry.servedName, contentType: entry.contentType,
                identity: ByteBuffer(bytes: identity), gzip: gzip.map { ByteBuffer(bytes: $0) })
        }
        return assets
    }()

    /// Scripts and styles, served under `/ui/assets/<hashed name>`.
    static let hashed: [String: UIAsset] = all.filter { $0.value.servedName != $0.value.name }

    /// A page (served under a fixed path).
    static func page(_ name: String) -> UIAsset {
        all[name] ?? UIAsset(name: name, servedName: name, contentType: "text/plain", identity: ByteBuffer(string: "missing page \(name)"), gzip: nil)
    }
}
