import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(Foundation)
import Foundation
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

/// Errors raised by ``APIClient``, ``APIEndpoint`` and ``ServerSentEventStream``.
///
/// `description` (and, with Foundation, `localizedDescription`) is a complete sentence-like
/// message for a person, naming the endpoint or URL involved.
public enum APIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// An endpoint URL could not be parsed; `reason` says what is wrong with `url`.
    case invalidEndpointURL(url: String, reason: String)
    /// The request could not be built (bad path or header); nothing was sent.
    case invalidRequest(reason: String)
    /// No connection could be made; `reason` includes the system's message and, where one
    /// applies, a hint such as "is nmbridged running?".
    case cannotConnect(endpoint: APIEndpoint, reason: String)
    /// The connection failed or closed before the response was complete.
    case connectionLost(endpoint: APIEndpoint, reason: String)
    /// The peer sent something that is not valid HTTP/1.1.
    case invalidResponse(endpoint: APIEndpoint, reason: String)
    /// The response body is larger than the client's limit; the connection was closed.
    case responseBodyTooLarge(limit: Int)
    /// ``APIClient/stream(_:headers:)`` got a status other than 200. The response carries the
    /// status, headers and (JSON) error body, e.g. `410` with
    /// `{"error":"cursor_expired","oldest_seq":101}`.
    case httpStatus(APIResponse)
    /// ``APIClient/stream(_:headers:)`` got a 200 response that is not `text/event-stream`.
    case unexpectedContentType(String)
    /// The event loop group given to ``APIClient`` cannot run NIOPosix sockets.
    case unsupportedEventLoopGroup

    /// A message for a person.
    public var description: String {
        switch self {
        case .invalidEndpointURL(let url, let reason):
            return "invalid API URL '\(url)': \(reason)"
        case .invalidRequest(let reason):
            return "invalid API request: \(reason)"
        case .cannotConnect(let endpoint, let reason):
            return "cannot connect to \(endpoint): \(reason)"
        case .connectionLost(let endpoint, let reason):
            return "connection to \(endpoint) lost: \(reason)"
        case .invalidResponse(let endpoint, let reason):
            return "invalid HTTP response from \(endpoint): \(reason)"
        case .responseBodyTooLarge(let limit):
            return "the API response body is larger than the limit of \(limit) bytes"
        case .httpStatus(let response):
            let maxShownBytes = 4096
            var text = String(decoding: response.body.prefix(maxShownBytes), as: UTF8.self)
            if response.body.count > maxShownBytes {
                text += "…"
            }
            let reason = HTTPResponseStatus(statusCode: response.status).reasonPhrase
            let status = reason.isEmpty ? "\(response.status)" : "\(response.status) \(reason)"
            return text.isEmpty ? "HTTP \(status)" : "HTTP \(status): \(text)"
        case .unexpectedContentType(let contentType):
            return "expected an event stream (text/event-stream) but the API answered with '\(contentType)'"
        case .unsupportedEventLoopGroup:
            return "the event loop group given to APIClient does not support POSIX sockets"
        }
    }
}

#if canImport(Foundation)
extension APIError: LocalizedError {
    /// The same text as ``description``, so Foundation-based callers print a useful message.
    public var errorDescription: String? { description }
}
#endif

/// A client for the nmbridge daemon's HTTP/1.1 API over a unix socket or TCP.
///
/// Each request uses its own connection (`Connection: close`), so the client keeps no state
/// and is cheap to copy. A request is cancelled, and its connection closed, when the calling
/// task is cancelled.
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
    /// The event loops that run the connections.
    public var eventLoopGroup: any EventLoopGroup
    /// The largest response body ``get(_:headers:)`` accepts, and the largest error body
    /// ``stream(_:headers:)`` reads; larger bodies fail with ``APIError/responseBodyTooLarge(limit:)``.
    public var maxResponseBodyBytes: Int
    /// The longest line accepted in an event stream (see ``ServerSentEventParser``).
    public var maxEventStreamLineBytes: Int
    /// How long to wait for a connection to be established.
    public var connectTimeout: Duration

    /// The default for ``maxResponseBodyBytes``: 64 MiB.
    public static let defaultMaxResponseBodyBytes = 64 << 20

    /// Creates a client.
    ///
    /// - Parameters:
    ///   - endpoint: Where the daemon listens.
    ///   - bearerToken: A token for the `Authorization` header, or `nil` to send none.
    ///   - eventLoopGroup: NIOPosix event loops to run connections on.
    ///   - maxResponseBodyBytes: The response body limit, 64 MiB by default.
    ///   - maxEventStreamLineBytes: The event stream line limit, 1 MiB by default.
    ///   - connectTimeout: The connection timeout, 10 seconds by default.
    public init(
        endpoint: APIEndpoint,
        bearerToken: String? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        maxResponseBodyBytes: Int = APIClient.defaultMaxResponseBodyBytes,
        maxEventStreamLineBytes: Int = 1 << 20,
        connectTimeout: Duration = .seconds(10)
    ) {
        self.endpoint = endpoint
        self.bearerToken = bearerToken
        self.eventLoopGroup = eventLoopGroup
        self.maxResponseBodyBytes = maxResponseBodyBytes
        self.maxEventStreamLineBytes = maxEventStreamLineBytes
        self.connectTimeout = connectTimeout
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
        let exchange = try await openExchange(
            pathAndQuery,
            defaultHeaders: [("Accept", "application/json, */*;q=0.5")],
            extraHeaders: headers
        )
        let body = try await collectBody(of: exchange)
        return APIResponse(status: exchange.status, headers: exchange.headers, body: body)
    }

    /// Sends `POST pathAndQuery` with an empty body (the parameters are in the query) and
    /// returns the complete response, whatever its status. For the API's few writes
    /// (`/v1/qc/sign`, `/v1/qc/linearity/…`).
    public func post(_ pathAndQuery: String, headers: [(String, String)] = []) async throws -> APIResponse {
        let exchange = try await openExchange(
            pathAndQuery, method: .POST, defaultHeaders: [("Accept", "application/json, */*;q=0.5")], extraHeaders: headers)
        let body = try await collectBody(of: exchange)
        return APIResponse(status: exchange.status, headers: exchange.headers, body: body)
    }

    /// Sends `GET pathAndQuery` for a `text/event-stream` and returns the events as they arrive.
    ///
    /// The connection stays open while the returned stream is iterated. The body is read from
    /// the socket only as fast as the events are consumed, and the connection is closed when
    /// the stream ends, when iteration stops (the iterator is dropped), when the iterating task
    /// is cancelled, or when the stream is dropped without being iterated.
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
        let exchange = try await openExchange(
            pathAndQuery,
            defaultHeaders: [("Accept", "text/event-stream"), ("Cache-Control", "no-cache")],
            extraHeaders: headers
        )
        guard exchange.status == 200 else {
            let body = try await collectBody(of: exchange)
            throw APIError.httpStatus(APIResponse(status: exchange.status, headers: exchange.headers, body: body))
        }
        if let contentType = firstHeaderValue("Content-Type", in: exchange.headers),
            !contentType.lowercased().hasPrefix("text/event-stream")
        {
            exchange.channel.close(promise: nil)
            throw APIError.unexpectedContentType(contentType)
        }
        return ServerSentEventStream(
            status: exchange.status,
            headers: exchange.headers,
            endpoint: endpoint,
            body: exchange.body,
            maxLineBytes: maxEventStreamLineBytes
        )
    }

    // MARK: Request and response plumbing

    /// A request that has been sent and whose response head has arrived.
    private struct OpenExchange {
        var channel: any Channel
        var status: Int
        var headers: [(String, String)]
        var contentLength: Int?
        var body: ResponseBodySequence
    }

    private func openExchange(
        _ pathAndQuery: String,
        method: HTTPMethod = .GET,
        defaultHeaders: [(String, String)],
        extraHeaders: [(String, String)]
    ) async throws -> OpenExchange {
        var requestHead = try makeRequestHead(pathAndQuery, defaultHeaders: defaultHeaders, extraHeaders: extraHeaders)
        requestHead.method = method
        if method == .POST { requestHead.headers.replaceOrAdd(name: "Content-Length", value: "0") }
        let connection = try await connect()
        let channel = connection.channel
        let endpoint = self.endpoint
        do {
            let head = try await withTaskCancellationHandler {
                try await Self.sendRequest(requestHead, on: connection)
            } onCancel: {
                channel.close(promise: nil)
            }
            let contentLength = head.headers.first(name: "content-length").flatMap { Int($0) }
            return OpenExchange(
                channel: channel,
                status: Int(head.status.code),
                headers: head.headers.map { ($0.name, $0.value) },
                contentLength: contentLength,
                body: connection.body
            )
        } catch {
            channel.close(promise: nil)
            if Task.isCancelled {
                throw CancellationError()
            }
            throw Self.exchangeError(error, endpoint: endpoint)
        }
    }

    /// Writes the request and waits for the response head.
    private static func sendRequest(
        _ requestHead: HTTPRequestHead,
        on connection: ConnectedResponse
    ) async throws -> HTTPResponseHead {
        let channel = connection.channel
        channel.write(HTTPClientRequestPart.head(requestHead), promise: nil)
        do {
            try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        } catch {
            // The server may have answered and closed before reading the whole request; its
            // response explains more than the write error does. Closing settles the head.
            channel.close(promise: nil)
            if let head = try? await connection.head.get() {
                return head
            }
            throw error
        }
        return try await connection.head.get()
    }

    /// Reads the whole body within ``maxResponseBodyBytes`` and closes the connection.
    private func collectBody(of exchange: OpenExchange) async throws -> [UInt8] {
        defer { exchange.channel.close(promise: nil) }
        let limit = maxResponseBodyBytes
        if let contentLength = exchange.contentLength, contentLength > limit {
            throw APIError.responseBodyTooLarge(limit: limit)
        }
        var body: [UInt8] = []
        body.reserveCapacity(min(exchange.contentLength ?? 0, limit))
        do {
            for try await chunk in exchange.body {
                guard chunk.readableBytes <= limit - body.count else {
                    throw APIError.responseBodyTooLarge(limit: limit)
                }
                body.append(contentsOf: chunk.readableBytesView)
            }
        } catch {
            throw Self.exchangeError(error, endpoint: endpoint)
        }
        return body
    }

    private func makeRequestHead(
        _ pathAndQuery: String,
        defaultHeaders: [(String, String)],
        extraHeaders: [(String, String)]
    ) throws -> HTTPRequestHead {
        guard pathAndQuery.hasPrefix("/") else {
            throw APIError.invalidRequest(reason: "the path must start with '/': '\(pathAndQuery)'")
        }
        if pathAndQuery.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            throw APIError.invalidRequest(
                reason: "the path contains a space or control character (percent-encode it): '\(pathAndQuery)'"
            )
        }
        var baseHeaders: [(String, String)] = [
            ("Host", endpoint.hostHeaderValue),
            ("User-Agent", "nmbridge-client"),
        ]
        baseHeaders += defaultHeaders
        if let bearerToken {
            baseHeaders.append(("Authorization", "Bearer \(bearerToken)"))
        }
        baseHeaders.append(("Connection", "close"))

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
        return HTTPRequestHead(version: .http1_1, method: .GET, uri: pathAndQuery, headers: headers)
    }

    private static func validateHeader(name: String, value: String) throws {
        // RFC 9110 token characters for the name; no CR, LF or NUL in the value.
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
        guard !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }) else {
            throw APIError.invalidRequest(reason: "the value of header '\(name)' contains a line break or NUL")
        }
    }

    // MARK: Connecting

    private func connect() async throws -> ConnectedResponse {
        guard let bootstrap = ClientBootstrap(validatingGroup: eventLoopGroup) else {
            throw APIError.unsupportedEventLoopGroup
        }
        let configured =
            bootstrap
            .connectTimeout(TimeAmount(connectTimeout))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)  // Ignored by NIO on unix sockets.
        let initializer: @Sendable (any Channel) -> EventLoopFuture<ConnectedResponse> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try ConnectedResponse.configure(channel)
            }
        }
        do {
            switch endpoint {
            case .unixSocket(let path):
                return try await configured.connect(unixDomainSocketPath: path, channelInitializer: initializer)
            case .tcp(let host, let port):
                return try await configured.connect(host: host, port: port, channelInitializer: initializer)
            }
        } catch {
            if Task.isCancelled {
                throw CancellationError()
            }
            throw APIError.cannotConnect(endpoint: endpoint, reason: Self.connectFailureReason(error))
        }
    }

    /// Turns a connection failure into a short message with a hint for the common cases.
    private static func connectFailureReason(_ error: any Error) -> String {
        switch error {
        case let error as IOError:
            return describeSystemError(error.errnoCode)
        case let error as NIOConnectionError:
            if let failure = error.connectionErrors.first {
                return connectFailureReason(failure.error)
            }
            if let dnsError = error.dnsAError ?? error.dnsAAAAError {
                return "cannot resolve host '\(error.host)': \(dnsError)"
            }
            return "cannot resolve host '\(error.host)'"
        case ChannelError.connectTimeout(let timeout):
            let milliseconds = timeout.nanoseconds / 1_000_000
            return "timed out after \(milliseconds) ms — is nmbridged running and reachable?"
        case SocketAddressError.unixDomainSocketPathTooLong:
            return "the socket path is too long for a unix socket address"
        default:
            return String(describing: error)
        }
    }

    private static func describeSystemError(_ code: CInt) -> String {
        let message = String(cString: strerror(code))
        switch code {
        case ENOENT, ECONNREFUSED:
            return "\(message) — is nmbridged running?"
        case EACCES, EPERM:
            return "\(message) — check the permissions of the socket and its directory"
        default:
            return message
        }
    }

    /// Maps a failure after the connection was established to an ``APIError``, leaving
    /// ``APIError``, parser errors and cancellation as they are.
    static func exchangeError(_ error: any Error, endpoint: APIEndpoint) -> any Error {
        switch error {
        case is APIError, is ServerSentEventParserError, is CancellationError:
            return error
        case let error as HTTPParserError where error != .invalidEOFState:
            return APIError.invalidResponse(endpoint: endpoint, reason: String(describing: error))
        case is ResponseInterrupted, HTTPParserError.invalidEOFState:
            return APIError.connectionLost(
                endpoint: endpoint,
                reason: "the connection closed before the response was complete"
            )
        case let error as IOError:
            return APIError.connectionLost(endpoint: endpoint, reason: String(cString: strerror(error.errnoCode)))
        default:
            return APIError.connectionLost(endpoint: endpoint, reason: String(describing: error))
        }
    }
}

// MARK: - Event stream

/// The events of a `text/event-stream` response, in order, as an `AsyncSequence`.
///
/// It can be iterated once. The socket is read only as the events are consumed
/// (backpressure), and the connection closes when iteration ends or stops, when the iterating
/// task is cancelled, or when the stream is dropped. Iteration throws ``APIError`` if the
/// connection is lost mid-stream and ``ServerSentEventParserError`` if a line exceeds the
/// client's limit; it ends normally when the server ends the response.
public struct ServerSentEventStream: AsyncSequence, Sendable {
    /// Each element is one dispatched event.
    public typealias Element = ServerSentEvent

    /// The HTTP status code (always 200: other statuses are thrown by ``APIClient/stream(_:headers:)``).
    public let status: Int
    /// The response header fields in wire order.
    public let headers: [(String, String)]

    private let endpoint: APIEndpoint
    private let body: ResponseBodySequence
    private let maxLineBytes: Int

    init(
        status: Int,
        headers: [(String, String)],
        endpoint: APIEndpoint,
        body: ResponseBodySequence,
        maxLineBytes: Int
    ) {
        self.status = status
        self.headers = headers
        self.endpoint = endpoint
        self.body = body
        self.maxLineBytes = maxLineBytes
    }

    /// The value of the first response header named `name` (compared case-insensitively).
    public func headerValue(_ name: String) -> String? {
        firstHeaderValue(name, in: headers)
    }

    /// Creates the iterator. Create only one per stream: the body can be read only once.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(
            body: body.makeAsyncIterator(),
            parser: ServerSentEventParser(maxLineBytes: maxLineBytes),
            endpoint: endpoint
        )
    }

    /// Parses body chunks into events as the consumer asks for them.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private var body: ResponseBodySequence.AsyncIterator
        private var parser: ServerSentEventParser
        private let endpoint: APIEndpoint
        private var parsedEvents: [ServerSentEvent] = []
        private var nextParsedEventIndex = 0

        init(body: ResponseBodySequence.AsyncIterator, parser: ServerSentEventParser, endpoint: APIEndpoint) {
            self.body = body
            self.parser = parser
            self.endpoint = endpoint
        }

        /// The stream's last event ID so far (empty if none); send it as `Last-Event-ID` to resume.
        public var lastEventID: String {
            parser.lastEventID
        }

        /// Returns the next event, or `nil` when the response has ended.
        public mutating func next() async throws -> ServerSentEvent? {
            while nextParsedEventIndex == parsedEvents.count {
                parsedEvents.removeAll(keepingCapacity: true)
                nextParsedEventIndex = 0
                let chunk: ByteBuffer?
                do {
                    chunk = try await body.next()
                } catch {
                    throw APIClient.exchangeError(error, endpoint: endpoint)
                }
                guard let chunk else {
                    return nil
                }
                parsedEvents = try parser.feed(chunk.readableBytesView)
            }
            defer { nextParsedEventIndex += 1 }
            return parsedEvents[nextParsedEventIndex]
        }
    }
}

// MARK: - Channel plumbing

/// The body chunks of one response, delivered with backpressure.
typealias ResponseBodySequence = NIOThrowingAsyncSequenceProducer<
    ByteBuffer,
    any Error,
    NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark,
    ResponseBodyProducerDelegate
>

/// The connection was closed before the response head or `.end` arrived.
struct ResponseInterrupted: Error {}

/// What the channel initializer hands back: the channel, the future response head and the
/// body chunks.
struct ConnectedResponse: Sendable {
    var channel: any Channel
    var head: EventLoopFuture<HTTPResponseHead>
    var body: ResponseBodySequence

    /// Buffered body chunks at which reading pauses, and below which it resumes. A chunk is
    /// at most one socket read (NIO reads up to 64 KiB by default).
    static let backPressure = NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark(
        lowWatermark: 2,
        highWatermark: 8
    )

    /// Installs the HTTP/1.1 codec and the response handler. Runs on the channel's event loop.
    static func configure(_ channel: any Channel) throws -> ConnectedResponse {
        try channel.pipeline.syncOperations.addHTTPClientHandlers()
        let headPromise = channel.eventLoop.makePromise(of: HTTPResponseHead.self)
        let handler = HTTPResponseStreamHandler(headPromise: headPromise)
        let newSequence = ResponseBodySequence.makeSequence(
            elementType: ByteBuffer.self,
            failureType: (any Error).self,
            backPressureStrategy: backPressure,
            finishOnDeinit: true,
            delegate: ResponseBodyProducerDelegate(handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
        )
        handler.bodySource = newSequence.source
        try channel.pipeline.syncOperations.addHandler(handler)
        return ConnectedResponse(channel: channel, head: headPromise.futureResult, body: newSequence.sequence)
    }
}

/// Tells the handler when the consumer wants more body, and when it has gone away.
struct ResponseBodyProducerDelegate: NIOAsyncSequenceProducerDelegate {
    let handler: NIOLoopBound<HTTPResponseStreamHandler>

    func produceMore() {
        let handler = self.handler
        if handler.eventLoop.inEventLoop {
            handler.value.resumeReading()
        } else {
            handler.eventLoop.execute { handler.value.resumeReading() }
        }
    }

    func didTerminate() {
        let handler = self.handler
        if handler.eventLoop.inEventLoop {
            handler.value.consumerTerminated()
        } else {
            handler.eventLoop.execute { handler.value.consumerTerminated() }
        }
    }
}

/// The last handler of a client connection: completes the head promise, forwards body chunks
/// into a bounded async sequence, withholds socket reads while that sequence is full, and
/// closes the connection once the response is complete or the consumer is gone.
///
/// Lives on its channel's event loop; the producer delegate reaches it via `NIOLoopBound`.
final class HTTPResponseStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private enum ReadState {
        /// Reads pass through.
        case reading
        /// The consumer is behind; the next read request is held back.
        case paused
        /// The consumer is behind and a read request is being held back.
        case pausedWithHeldRead
    }

    var bodySource: ResponseBodySequence.Source?
    private var headPromise: EventLoopPromise<HTTPResponseHead>?
    private var pendingBodyChunks: [ByteBuffer] = []
    private var readState = ReadState.reading
    private var context: ChannelHandlerContext?

    init(headPromise: EventLoopPromise<HTTPResponseHead>) {
        self.headPromise = headPromise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(with: ResponseInterrupted())
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if let headPromise {
                self.headPromise = nil
                headPromise.succeed(head)
            }
        case .body(let chunk):
            if bodySource != nil {
                pendingBodyChunks.append(chunk)
            }
        case .end:
            deliverPendingBodyChunks()
            bodySource?.finish()
            bodySource = nil
            // One request per connection: the response is complete.
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        deliverPendingBodyChunks()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(with: ResponseInterrupted())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(with: error)
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        switch readState {
        case .reading:
            context.read()
        case .paused:
            readState = .pausedWithHeldRead
        case .pausedWithHeldRead:
            break
        }
    }

    /// Called (on the event loop) when the consumer has drained below the low watermark.
    func resumeReading() {
        switch readState {
        case .reading:
            break
        case .paused:
            readState = .reading
        case .pausedWithHeldRead:
            readState = .reading
            context?.read()
        }
    }

    /// Called (on the event loop) when the consumer stopped iterating, was cancelled, dropped
    /// the sequence, or consumed everything: nobody will read the rest, so close.
    func consumerTerminated() {
        bodySource = nil
        pendingBodyChunks.removeAll()
        readState = .pausedWithHeldRead  // Never read again.
        context?.close(promise: nil)
    }

    private func deliverPendingBodyChunks() {
        guard !pendingBodyChunks.isEmpty else {
            return
        }
        defer { pendingBodyChunks.removeAll(keepingCapacity: true) }
        guard let bodySource else {
            return
        }
        switch bodySource.yield(contentsOf: pendingBodyChunks) {
        case .produceMore, .dropped:
            break
        case .stopProducing:
            if readState == .reading {
                readState = .paused
            }
        }
    }

    private func finish(with error: any Error) {
        if let headPromise {
            self.headPromise = nil
            headPromise.fail(error)
        }
        deliverPendingBodyChunks()
        if let bodySource {
            self.bodySource = nil
            bodySource.finish(error)
        }
    }
}

// MARK: - Helpers

private func firstHeaderValue(_ name: String, in headers: [(String, String)]) -> String? {
    let lowercasedName = name.lowercased()
    return headers.first { $0.0.lowercased() == lowercasedName }?.1
}
