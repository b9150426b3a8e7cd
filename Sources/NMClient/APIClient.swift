import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(FoundationEssentials)
import struct FoundationEssentials.URL
#elseif canImport(Foundation)
import struct Foundation.URL
#endif

// MARK: - Public types

/// A complete HTTP response from the daemon's API.
public struct APIResponse: Sendable, Equatable {
    /// The HTTP status code, e.g. `200` or `404`.
    public var status: Int
    /// The response header fields in wire order, names as the server spelled them.
    public var headers: [(String, String)]
    /// The response body.
    public var body: [UInt8]

    /// The body decoded as UTF-8 (malformed sequences become U+FFFD).
    public var text: String {
        String(decoding: body, as: UTF8.self)
    }

    /// Creates a response; mostly useful for tests.
    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The value of the first header field named `name` (compared case-insensitively), if any.
    public func headerValue(_ name: String) -> String? {
        firstHeaderValue(name, in: headers)
    }

    /// Compares status, headers (in order, byte for byte) and body.
    public static func == (lhs: APIResponse, rhs: APIResponse) -> Bool {
        lhs.status == rhs.status
            && lhs.body == rhs.body
            && lhs.headers.elementsEqual(rhs.headers, by: { $0.0 == $1.0 && $0.1 == $1.1 })
    }
}

/// A client for the nmbridge daemon's HTTP/1.1 API over a unix socket or TCP, on
/// AsyncHTTPClient.
///
/// The client is a value holding the endpoint, the token and the limits, cheap to copy. The
/// connections belong to one `HTTPClient` per process (``sharedHTTPClient``), which keeps them
/// alive between requests to the same endpoint. A request is cancelled, and its connection
/// closed, when the calling task is cancelled.
///
/// ```swift
/// let client = APIClient(endpoint: try APIEndpoint(url: "unix:///run/nmbridge/api.sock"))
/// let health = try await client.get("/v1/health")
/// for try await event in try await client.stream("/v1/events/stream") {
///     print(event.id ?? "-", event.event ?? "message", event.data)
/// }
/// ```
public struct APIClient: Sendable {
    /// Where requests are sent.
    public var endpoint: APIEndpoint
    /// Sent as `Authorization: Bearer <token>` when set (required by the daemon on TCP).
    public var bearerToken: String?
    /// The largest response body ``get(_:headers:)`` accepts, and the largest error body
    /// ``stream(_:headers:)`` reads; larger bodies fail with ``APIError/responseBodyTooLarge(limit:)``.
    public var maxResponseBodyBytes: Int
    /// The longest line accepted in an event stream (see ``ServerSentEventParser``).
    public var maxEventStreamLineBytes: Int

    /// The default for ``maxResponseBodyBytes``: 64 MiB.
    public static let defaultMaxResponseBodyBytes = 64 << 20

    /// How long a connection may take to be established: 10 seconds.
    public static let connectTimeout: Duration = .seconds(10)

    /// How ``sharedHTTPClient`` is configured.
    ///
    /// - Connections are made within ``connectTimeout``, and a failed connection fails the
    ///   request at once (no retries with back-off): the daemon is on this machine or near it,
    ///   and "is nmbridged running?" should be said at once, not after the timeout.
    /// - No read timeout: an event stream may be quiet for as long as the daemon's keep-alive
    ///   interval, and the daemon bounds its own writes.
    /// - Up to 4096 connections per endpoint: each live event stream holds one (the
    ///   benchmarks open many), where AsyncHTTPClient's default of 8 would queue the ninth
    ///   stream until it timed out. Idle connections close after 30 seconds.
    /// - Redirects are not followed (the API never redirects, and following one could hand
    ///   the bearer token to another server); HTTP/1.1 only; no decompression.
    static var httpClientConfiguration: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(connectTimeout), read: nil),
            connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 4096),
            decompression: .disabled
        )
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.httpVersion = .http1Only
        return configuration
    }

    /// The process's `HTTPClient` for the API, configured by ``httpClientConfiguration`` and
    /// running on NIO's shared event loops. It lives as long as the process and is never shut
    /// down, like AsyncHTTPClient's own `HTTPClient.shared`.
    static let sharedHTTPClient = HTTPClient(
        eventLoopGroup: HTTPClient.defaultEventLoopGroup,
        configuration: httpClientConfiguration
    )

    /// Creates a client.
    ///
    /// - Parameters:
    ///   - endpoint: Where the daemon listens.
    ///   - bearerToken: A token for the `Authorization` header, or `nil` to send none.
    ///   - maxResponseBodyBytes: The response body limit, 64 MiB by default.
    ///   - maxEventStreamLineBytes: The event stream line limit, 1 MiB by default.
    public init(
        endpoint: APIEndpoint,
        bearerToken: String? = nil,
        maxResponseBodyBytes: Int = APIClient.defaultMaxResponseBodyBytes,
        maxEventStreamLineBytes: Int = 1 << 20
    ) {
        self.endpoint = endpoint
        self.bearerToken = bearerToken
        self.maxResponseBodyBytes = maxResponseBodyBytes
        self.maxEventStreamLineBytes = maxEventStreamLineBytes
    }

    /// Sends `GET pathAndQuery` and returns the complete response, whatever its status.
    ///
    /// - Parameters:
    ///   - pathAndQuery: The request target, starting with `/`, e.g. `/v1/events?after=10`.
    ///     It is sent as given, so query values must already be percent-encoded.
    ///   - headers: Extra request headers; a name given here replaces the client's default
    ///     header of that name (`Accept`, `User-Agent`, …).
    /// - Throws: ``APIError`` (connection, protocol or size problems) or `CancellationError`.
    public func get(_ pathAndQuery: String, headers: [(String, String)] = []) async throws -> APIResponse {
        let response = try await execute(
            .GET,
            pathAndQuery,
            defaultHeaders: [("Accept", "application/json, */*;q=0.5")],
            extraHeaders: headers
        )
        return APIResponse(status: Int(response.status.code), headers: Self.fields(response.headers), body: try await collectBody(of: response))
    }

    /// Sends `POST pathAndQuery` without a body (an action such as
    /// `/v1/outbound/jobs/42/retry`) and collects the response.
    public func post(_ pathAndQuery: String, headers: [(String, String)] = []) async throws -> APIResponse {
        // AsyncHTTPClient sends `Content-Length: 0` for a POST without a body.
        let response = try await execute(
            .POST,
            pathAndQuery,
            defaultHeaders: [("Accept", "application/json, */*;q=0.5")],
            extraHeaders: headers
        )
        return APIResponse(status: Int(response.status.code), headers: Self.fields(response.headers), body: try await collectBody(of: response))
    }

    /// Sends `GET pathAndQuery` for a `text/event-stream` and returns the events as they arrive.
    ///
    /// The connection stays open while the returned stream is iterated. The body is read from
    /// the socket only as fast as the events are consumed (AsyncHTTPClient's response body
    /// asks the connection for more only when the previous chunk has been taken), and the
    /// connection is closed when the stream ends, when iteration stops (the iterator is
    /// dropped), when the iterating task is cancelled, or when the stream is dropped without
    /// being iterated.
    ///
    /// - Parameters:
    ///   - pathAndQuery: The request target, e.g. `/v1/events/stream?kind=reading`.
    ///   - headers: Extra request headers, e.g. `[("Last-Event-ID", "41")]` to resume.
    /// - Throws: ``APIError/httpStatus(_:)`` with the status, headers and error body when the
    ///   status is not 200; ``APIError/unexpectedContentType(_:)``; other ``APIError``s for
    ///   connection problems; `CancellationError`.
    public func stream(
        _ pathAndQuery: String,
        headers: [(String, String)] = []
    ) async throws -> ServerSentEventStream {
        let response = try await execute(
            .GET,
            pathAndQuery,
            defaultHeaders: [("Accept", "text/event-stream"), ("Cache-Control", "no-cache")],
            extraHeaders: headers
        )
        let fields = Self.fields(response.headers)
        guard response.status == .ok else {
            let body = try await collectBody(of: response)
            throw APIError.httpStatus(APIResponse(status: Int(response.status.code), headers: fields, body: body))
        }
        if let contentType = response.headers.first(name: "Content-Type"),
            !contentType.lowercased().hasPrefix("text/event-stream")
        {
            // Dropping the unread body cancels the request and closes its connection.
            throw APIError.unexpectedContentType(contentType)
        }
        return ServerSentEventStream(
            status: Int(response.status.code),
            headers: fields,
            body: response.body,
            maxLineBytes: maxEventStreamLineBytes,
            mapError: { [endpoint] error in
                APIError.from(error, endpoint: endpoint, phase: .responseBody)
            }
        )
    }

    // MARK: Request and response plumbing

    /// Sends the request and waits for the response head; the body is still to be read.
    private func execute(
        _ method: HTTPMethod,
        _ pathAndQuery: String,
        defaultHeaders: [(String, String)],
        extraHeaders: [(String, String)]
    ) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: try url(for: pathAndQuery))
        request.method = method
        request.headers = try makeHeaders(defaultHeaders: defaultHeaders, extraHeaders: extraHeaders)
        do {
            // No deadline: AsyncHTTPClient's deadline covers only the wait for the response
            // head, and an event stream's head comes when the daemon has caught up. The
            // connect timeout is the client's (``httpClientConfiguration``).
            return try await Self.sharedHTTPClient.execute(request, deadline: .distantFuture)
        } catch {
            if Task.isCancelled {
                throw CancellationError()
            }
            throw APIError.from(error, endpoint: endpoint, phase: .request)
        }
    }

    /// Reads the whole body within ``maxResponseBodyBytes``. Leaving early drops the body,
    /// which makes AsyncHTTPClient close the connection instead of reusing it.
    private func collectBody(of response: HTTPClientResponse) async throws -> [UInt8] {
        let limit = maxResponseBodyBytes
        let contentLength = response.headers.first(name: "Content-Length").flatMap { Int($0) }
        if let contentLength, contentLength > limit {
            throw APIError.responseBodyTooLarge(limit: limit)
        }
        var body: [UInt8] = []
        body.reserveCapacity(min(contentLength ?? 0, limit))
        do {
            for try await chunk in response.body {
                guard chunk.readableBytes <= limit - body.count else {
                    throw APIError.responseBodyTooLarge(limit: limit)
                }
                body.append(contentsOf: chunk.readableBytesView)
            }
        } catch {
            if Task.isCancelled {
                throw CancellationError()
            }
            throw APIError.from(error, endpoint: endpoint, phase: .responseBody)
        }
        return body
    }

    /// The URL AsyncHTTPClient connects to: `http+unix://<socket path, percent-encoded>/…`
    /// for a unix socket, `http://host:port/…` for TCP.
    private func url(for pathAndQuery: String) throws -> String {
        guard pathAndQuery.hasPrefix("/") else {
            throw APIError.invalidRequest(reason: "the path must start with '/': '\(pathAndQuery)'")
        }
        if pathAndQuery.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            throw APIError.invalidRequest(
                reason: "the path contains a space or control character (percent-encode it): '\(pathAndQuery)'"
            )
        }
        let url: URL?
        switch endpoint {
        case .unixSocket(let path):
            url = URL(httpURLWithSocketPath: path, uri: pathAndQuery)
        case .tcp:
            url = URL(string: "http://\(endpoint.hostHeaderValue)\(pathAndQuery)")
        }
        guard let url else {
            throw APIError.invalidRequest(reason: "'\(pathAndQuery)' does not make a valid URL for \(endpoint)")
        }
        return url.absoluteString
    }

    private func makeHeaders(
        defaultHeaders: [(String, String)],
        extraHeaders: [(String, String)]
    ) throws -> HTTPHeaders {
        var baseHeaders: [(String, String)] = [
            // AsyncHTTPClient sends no Host for a unix socket; HTTP/1.1 requires one.
            ("Host", endpoint.hostHeaderValue),
            ("User-Agent", "nmbridge-client"),
        ]
        baseHeaders += defaultHeaders
        if let bearerToken {
            baseHeaders.append(("Authorization", "Bearer \(bearerToken)"))
        }

        let overridden = Set(extraHeaders.map { $0.0.lowercased() })
        var headers = HTTPHeaders()
        for (name, value) in baseHeaders where !overridden.contains(name.lowercased()) {
            try Self.validateHeader(name: name, value: value)
            headers.add(name: name, value: value)
        }
        for (name, value) in extraHeaders {
            try Self.validateHeader(name: name, value: value)
            headers.add(name: name, value: value)
        }
        return headers
    }

    /// Checks a header here, so that the error names it (AsyncHTTPClient would refuse it too).
    private static func validateHeader(name: String, value: String) throws {
        // RFC 9110 token characters for the name; no control character but HTAB in the value.
        let tokenSymbols = Set("!#$%&'*+-.^_`|~".utf8)
        let validName =
            !name.isEmpty
            && name.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || tokenSymbols.contains(byte)
            }
        guard validName else {
            throw APIError.invalidRequest(reason: "invalid header name '\(name)'")
        }
        guard !value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) else {
            throw APIError.invalidRequest(reason: "the value of header '\(name)' contains a line break or another control character")
        }
    }

    /// Header fields in wire order, names as the server spelled them.
    private static func fields(_ headers: HTTPHeaders) -> [(String, String)] {
        headers.map { ($0.name, $0.value) }
    }
}

// MARK: - Helpers

func firstHeaderValue(_ name: String, in headers: [(String, String)]) -> String? {
    let lowercasedName = name.lowercased()
    return headers.first { $0.0.lowercased() == lowercasedName }?.1
}
