import AsyncHTTPClient
import NIOCore

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

    private let body: HTTPClientResponse.Body
    private let maxLineBytes: Int
    private let mapError: @Sendable (any Error) -> any Error

    init(
        status: Int,
        headers: [(String, String)],
        body: HTTPClientResponse.Body,
        maxLineBytes: Int,
        mapError: @escaping @Sendable (any Error) -> any Error
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.maxLineBytes = maxLineBytes
        self.mapError = mapError
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
            mapError: mapError
        )
    }

    /// Parses body chunks into events as the consumer asks for them.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private var body: HTTPClientResponse.Body.AsyncIterator
        private var parser: ServerSentEventParser
        private let mapError: @Sendable (any Error) -> any Error
        private var parsedEvents: [ServerSentEvent] = []
        private var nextParsedEventIndex = 0

        init(
            body: HTTPClientResponse.Body.AsyncIterator,
            parser: ServerSentEventParser,
            mapError: @escaping @Sendable (any Error) -> any Error
        ) {
            self.body = body
            self.parser = parser
            self.mapError = mapError
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
                    if Task.isCancelled {
                        throw CancellationError()
                    }
                    throw mapError(error)
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
