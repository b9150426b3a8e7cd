/// One event dispatched from a `text/event-stream` body.
///
/// Field semantics follow the WHATWG HTML "server-sent events" interpretation rules. For
/// nmbridge's `/v1/events/stream`, `id` is the journal sequence number, `event` is the event
/// kind and `data` is one JSON document.
public struct ServerSentEvent: Sendable, Equatable {
    /// The stream's last event ID at the moment this event was dispatched.
    ///
    /// As the specification requires, an ID persists: an event without an `id:` field carries the
    /// ID of the most recent `id:` field seen before it. `nil` means no ID has been set yet, or the
    /// stream reset it with an empty `id:` field (after which a reconnecting client sends no
    /// `Last-Event-ID`).
    public var id: String?

    /// The event type from the `event:` field of this event's block; `nil` when the block had no
    /// (or an empty) `event:` field, which the specification treats as the type `message`.
    public var event: String?

    /// The `data:` lines of this event's block joined with `"\n"` (without a trailing newline).
    public var data: String

    /// The reconnection time in milliseconds from a valid `retry:` field in this event's block,
    /// if any. ``ServerSentEventParser/reconnectionTimeMilliseconds`` keeps the latest value
    /// across blocks, including blocks that carried no data and so dispatched no event.
    public var retry: Int?

    /// Creates an event; mostly useful for tests and for servers that render events.
    public init(id: String? = nil, event: String? = nil, data: String, retry: Int? = nil) {
        self.id = id
        self.event = event
        self.data = data
        self.retry = retry
    }
}

/// An error raised by ``ServerSentEventParser`` when the stream exceeds its memory limits.
///
/// Once a parser has thrown, it stays failed: every later ``ServerSentEventParser/feed(_:)``
/// throws the same error, because the position in the stream is no longer trustworthy.
public enum ServerSentEventParserError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A single line (without its terminator) is longer than `limit` bytes.
    case lineTooLong(limit: Int)
    /// The `data:` lines of one event add up to more than `limit` bytes.
    case eventDataTooLarge(limit: Int)

    /// A message suitable for showing to a person.
    public var description: String {
        switch self {
        case .lineTooLong(let limit):
            return "event stream line is longer than the limit of \(limit) bytes"
        case .eventDataTooLarge(let limit):
            return "event stream event data is larger than the limit of \(limit) bytes"
        }
    }
}

/// An incremental, total parser for `text/event-stream` bodies.
///
/// Feed it the body bytes in chunks of any size, split anywhere (including inside a CRLF pair,
/// inside a multi-byte UTF-8 character or inside the leading byte order mark); it returns the
/// events completed by each chunk. Every byte sequence is accepted: malformed UTF-8 is decoded
/// with replacement characters and unknown fields are ignored, as the WHATWG rules require.
/// Memory is bounded by `maxLineBytes` and `maxEventDataBytes`; exceeding either throws a
/// ``ServerSentEventParserError``.
///
/// An event that is still incomplete when the stream ends (no blank line after it) is
/// discarded, as the specification requires; there is nothing to flush.
public struct ServerSentEventParser: Sendable {
    private static let lineFeed: UInt8 = 0x0A
    private static let carriageReturn: UInt8 = 0x0D
    private static let colon: UInt8 = 0x3A
    private static let space: UInt8 = 0x20
    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// The longest line, in bytes without its terminator, that the parser buffers.
    public let maxLineBytes: Int

    /// The largest total size, in bytes, of the `data:` lines of one event.
    public let maxEventDataBytes: Int

    /// The stream's last event ID (the "last event ID string" of the specification); empty when
    /// none has been set. A reconnecting client sends it as `Last-Event-ID` when non-empty.
    public private(set) var lastEventID: String = ""

    /// The most recent valid `retry:` value in milliseconds, or `nil` if none was seen.
    public private(set) var reconnectionTimeMilliseconds: Int?

    /// Bytes seen so far at the very start of the stream while deciding whether they are a BOM;
    /// `nil` once that decision has been made.
    private var pendingStreamStart: [UInt8]? = []
    /// The current, not yet terminated line.
    private var lineBuffer: [UInt8] = []
    /// The previous chunk ended in CR, so an LF starting the next chunk belongs to that CRLF.
    private var skipLineFeedAtChunkStart = false
    private var dataBuffer: [UInt8] = []
    private var eventTypeBuffer: [UInt8] = []
    private var retryInCurrentBlock: Int?
    private var failure: ServerSentEventParserError?

    /// Creates a parser.
    ///
    /// - Parameters:
    ///   - maxLineBytes: The longest accepted line in bytes, not counting its terminator.
    ///     Defaults to 1 MiB.
    ///   - maxEventDataBytes: The largest accepted total of one event's `data:` lines in bytes,
    ///     counting the newlines that join them. Defaults to 16 MiB.
    public init(maxLineBytes: Int = 1 << 20, maxEventDataBytes: Int = 16 << 20) {
        self.maxLineBytes = max(0, maxLineBytes)
        self.maxEventDataBytes = max(0, maxEventDataBytes)
    }

    /// Parses the next chunk of the stream.
    ///
    /// - Parameter bytes: The next bytes of the body, in order.
    /// - Returns: The events completed by this chunk, in stream order.
    /// - Throws: ``ServerSentEventParserError`` when a limit is exceeded. Events completed
    ///   earlier in the same chunk are not returned, and the parser stays failed.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws -> [ServerSentEvent] {
        if let failure {
            throw failure
        }
        var events: [ServerSentEvent] = []
        do {
            let fedContiguousBytes: Void? = try bytes.withContiguousStorageIfAvailable { buffer in
                try self.feedStreamStart(buffer, into: &events)
            }
            if fedContiguousBytes == nil {
                try feedStreamStart(Array(bytes), into: &events)
            }
        } catch let error as ServerSentEventParserError {
            failure = error
            throw error
        }
        return events
    }

    /// Strips one leading UTF-8 byte order mark, which may arrive split over several chunks.
    private mutating func feedStreamStart<Bytes: Collection<UInt8>>(
        _ bytes: Bytes,
        into events: inout [ServerSentEvent]
    ) throws {
        guard var prefix = pendingStreamStart else {
            try feedLines(bytes, into: &events)
            return
        }
        var index = bytes.startIndex
        while prefix.count < Self.byteOrderMark.count, index != bytes.endIndex {
            prefix.append(bytes[index])
            bytes.formIndex(after: &index)
        }
        if prefix == Self.byteOrderMark {
            pendingStreamStart = nil
        } else if Self.byteOrderMark.starts(with: prefix) {
            // Still a possible BOM, but the chunk ended before all three bytes arrived.
            pendingStreamStart = prefix
            return
        } else {
            pendingStreamStart = nil
            try feedLines(prefix, into: &events)
        }
        try feedLines(bytes[index...], into: &events)
    }

    /// Splits the bytes into lines on CRLF, LF or CR, carrying partial lines across chunks.
    private mutating func feedLines<Bytes: Collection<UInt8>>(
        _ bytes: Bytes,
        into events: inout [ServerSentEvent]
    ) throws {
        var index = bytes.startIndex
        if skipLineFeedAtChunkStart, index != bytes.endIndex {
            skipLineFeedAtChunkStart = false
            if bytes[index] == Self.lineFeed {
                bytes.formIndex(after: &index)
            }
        }
        while index != bytes.endIndex {
            let rest = bytes[index...]
            guard
                let terminator = rest.firstIndex(where: {
                    $0 == Self.lineFeed || $0 == Self.carriageReturn
                })
            else {
                try appendToLine(rest)
                return
            }
            try appendToLine(bytes[index..<terminator])
            try processLine(into: &events)
            lineBuffer.removeAll(keepingCapacity: lineBuffer.capacity <= 64 * 1024)

            index = bytes.index(after: terminator)
            if bytes[terminator] == Self.carriageReturn {
                if index == bytes.endIndex {
                    skipLineFeedAtChunkStart = true
                } else if bytes[index] == Self.lineFeed {
                    bytes.formIndex(after: &index)
                }
            }
        }
    }

    private mutating func appendToLine(_ bytes: some Collection<UInt8>) throws {
        guard lineBuffer.count + bytes.count <= maxLineBytes else {
            throw ServerSentEventParserError.lineTooLong(limit: maxLineBytes)
        }
        lineBuffer.append(contentsOf: bytes)
    }

    /// Interprets the complete line in `lineBuffer`.
    private mutating func processLine(into events: inout [ServerSentEvent]) throws {
        let line = lineBuffer[...]
        guard let first = line.first else {
            dispatchEvent(into: &events)
            return
        }
        if first == Self.colon {
            return  // A comment, typically a keep-alive.
        }
        let field: ArraySlice<UInt8>
        var value: ArraySlice<UInt8>
        if let colonIndex = line.firstIndex(of: Self.colon) {
            field = line[..<colonIndex]
            value = line[line.index(after: colonIndex)...]
            if value.first == Self.space {
                value = value.dropFirst()
            }
        } else {
            field = line
            value = []
        }

        if field.elementsEqual("data".utf8) {
            // The buffer holds each earlier line plus its joining LF; the event will carry
            // exactly `dataBuffer.count + value.count` bytes once this line is added.
            guard dataBuffer.count + value.count <= maxEventDataBytes else {
                throw ServerSentEventParserError.eventDataTooLarge(limit: maxEventDataBytes)
            }
            dataBuffer.append(contentsOf: value)
            dataBuffer.append(Self.lineFeed)
        } else if field.elementsEqual("event".utf8) {
            eventTypeBuffer = Array(value)
        } else if field.elementsEqual("id".utf8) {
            if !value.contains(0) {
                lastEventID = String(decoding: value, as: UTF8.self)
            }
        } else if field.elementsEqual("retry".utf8) {
            if !value.isEmpty, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let milliseconds = Int(String(decoding: value, as: UTF8.self))
            {
                reconnectionTimeMilliseconds = milliseconds
                retryInCurrentBlock = milliseconds
            }
        }
        // Any other field is ignored.
    }

    /// Handles a blank line: dispatches the event being built, if it has data, and resets the
    /// per-event buffers. The last event ID deliberately persists.
    private mutating func dispatchEvent(into events: inout [ServerSentEvent]) {
        defer {
            dataBuffer.removeAll(keepingCapacity: dataBuffer.capacity <= 64 * 1024)
            eventTypeBuffer.removeAll()
            retryInCurrentBlock = nil
        }
        guard !dataBuffer.isEmpty else {
            return
        }
        if dataBuffer.last == Self.lineFeed {
            dataBuffer.removeLast()
        }
        events.append(
            ServerSentEvent(
                id: lastEventID.isEmpty ? nil : lastEventID,
                event: eventTypeBuffer.isEmpty ? nil : String(decoding: eventTypeBuffer, as: UTF8.self),
                data: String(decoding: dataBuffer, as: UTF8.self),
                retry: retryInCurrentBlock
            )
        )
    }
}
