import Testing
import TestSupport

@testable import NMClient

/// Parses `bytes` split into chunks that end at `cuts` (sorted offsets into `bytes`).
private func parse(
    _ bytes: [UInt8],
    cuttingAt cuts: [Int] = [],
    parser: ServerSentEventParser = ServerSentEventParser()
) throws -> [ServerSentEvent] {
    var parser = parser
    var events: [ServerSentEvent] = []
    var start = 0
    for cut in cuts + [bytes.count] {
        events += try parser.feed(bytes[start..<cut])
        start = cut
    }
    return events
}

private func parse(_ text: String, parser: ServerSentEventParser = ServerSentEventParser()) throws -> [ServerSentEvent] {
    try parse(Array(text.utf8), parser: parser)
}

/// A stream that uses every feature: BOM, comments, all three line endings, retry, id
/// persistence and reset, empty data, field without colon, multi-byte UTF-8, unknown fields
/// and an unterminated event at the end.
private let sampleStream: [UInt8] = [0xEF, 0xBB, 0xBF] + Array(
    ([
        ": connected\r\n",
        "retry: 2500\n",
        "id: 1\r",
        "event: reading\r\n",
        "data: {\"temp\":21.5,\"unit\":\"°C\"}\n",
        "\n",
        "data: line one\r\n",
        "data:line two\r",
        "data:  indented\n",
        "\r\n",
        "id: 3\n",
        "event\n",
        "data\n",
        "\r",
        "id\n",
        "data: 😀 ünïcödé\n",
        "unknown: ignored\n",
        "Data: wrong case is ignored too\n",
        "\n",
        "data: unterminated at end of stream",
    ] as [String]).joined().utf8)

private let sampleStreamEvents: [ServerSentEvent] = [
    ServerSentEvent(id: "1", event: "reading", data: "{\"temp\":21.5,\"unit\":\"°C\"}", retry: 2500),
    ServerSentEvent(id: "1", event: nil, data: "line one\nline two\n indented", retry: nil),
    ServerSentEvent(id: "3", event: nil, data: "", retry: nil),
    ServerSentEvent(id: nil, event: nil, data: "😀 ünïcödé", retry: nil),
]

@Suite("ServerSentEventParser")
struct ServerSentEventParserTests {
    @Test("the sample stream parses as a whole")
    func sampleStreamWhole() throws {
        #expect(try parse(sampleStream) == sampleStreamEvents)
    }

    @Test("splitting the sample stream at any byte position gives the same events")
    func sampleStreamSplitAtEveryPosition() throws {
        for cut in 0...sampleStream.count {
            let events = try parse(sampleStream, cuttingAt: [cut])
            #expect(events == sampleStreamEvents, "split at byte \(cut)")
        }
    }

    @Test("splitting the sample stream at any two byte positions gives the same events")
    func sampleStreamSplitAtEveryPairOfPositions() throws {
        for first in 0...sampleStream.count {
            for second in first...sampleStream.count {
                let events = try parse(sampleStream, cuttingAt: [first, second])
                if events != sampleStreamEvents {
                    Issue.record("split at bytes \(first) and \(second): \(events)")
                    return
                }
            }
        }
    }

    @Test("feeding the sample stream one byte at a time gives the same events")
    func sampleStreamByteByByte() throws {
        var parser = ServerSentEventParser()
        var events: [ServerSentEvent] = []
        for byte in sampleStream {
            events += try parser.feed(CollectionOfOne(byte))
        }
        #expect(events == sampleStreamEvents)
        #expect(parser.lastEventID == "")
        #expect(parser.reconnectionTimeMilliseconds == 2500)
    }

    @Test("every line ending terminates lines", arguments: ["\n", "\r", "\r\n"])
    func lineEndings(lineEnding: String) throws {
        let stream = "id: 7\(lineEnding)data: a\(lineEnding)data: b\(lineEnding)\(lineEnding)data: c\(lineEnding)\(lineEnding)"
        #expect(
            try parse(stream) == [
                ServerSentEvent(id: "7", data: "a\nb"),
                ServerSentEvent(id: "7", data: "c"),
            ]
        )
    }

    @Test("mixed line endings in one stream")
    func mixedLineEndings() throws {
        let stream = "data: a\rdata: b\r\ndata: c\n\r\n" + "data: d\n\r" + "data: e\r\r"
        #expect(
            try parse(stream) == [
                ServerSentEvent(data: "a\nb\nc"),
                ServerSentEvent(data: "d"),
                ServerSentEvent(data: "e"),
            ]
        )
    }

    @Test("a CR at the end of a chunk pairs with an LF at the start of the next, even after empty chunks")
    func carriageReturnAtChunkBoundary() throws {
        var parser = ServerSentEventParser()
        #expect(try parser.feed(Array("data: a\r".utf8)).isEmpty)
        #expect(try parser.feed([UInt8]()).isEmpty)
        // The LF completes the CRLF; only the following LF is the blank line.
        #expect(try parser.feed(Array("\n".utf8)).isEmpty)
        #expect(try parser.feed(Array("data: b\n\n".utf8)) == [ServerSentEvent(data: "a\nb")])

        var crThenCR = ServerSentEventParser()
        #expect(try crThenCR.feed(Array("data: a\r".utf8)).isEmpty)
        #expect(try crThenCR.feed(Array("\r".utf8)) == [ServerSentEvent(data: "a")])
    }

    @Test("multi-line data is joined with LF and the value's single leading space is removed")
    func multiLineData() throws {
        let stream = "data: first\ndata:second\ndata:  third\ndata\ndata:\ndata: last\n\n"
        #expect(try parse(stream) == [ServerSentEvent(data: "first\nsecond\n third\n\n\nlast")])
    }

    @Test("a data field with an empty value dispatches an event with empty data")
    func emptyData() throws {
        #expect(try parse("data\n\n") == [ServerSentEvent(data: "")])
        #expect(try parse("data:\n\n") == [ServerSentEvent(data: "")])
        #expect(try parse("data:\ndata:\n\n") == [ServerSentEvent(data: "\n")])
    }

    @Test("a block without data dispatches nothing and does not leak its event type")
    func blockWithoutData() throws {
        #expect(try parse("event: a\nretry: 5\n\n").isEmpty)
        #expect(try parse("event: a\n\ndata: x\n\n") == [ServerSentEvent(data: "x")])
        #expect(try parse("retry: 5\n\ndata: x\n\n") == [ServerSentEvent(data: "x")])
    }

    @Test("the event type applies to one event only")
    func eventTypeResets() throws {
        let stream = "event: reading\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n"
        #expect(
            try parse(stream) == [
                ServerSentEvent(event: "reading", data: "1"),
                ServerSentEvent(data: "2"),
                ServerSentEvent(data: "3"),
            ]
        )
    }

    @Test("the last event ID persists, survives data-less blocks, resets when empty and ignores NUL")
    func idPersistence() throws {
        var parser = ServerSentEventParser()
        #expect(try parser.feed(Array("id: 10\ndata: a\n\n".utf8)) == [ServerSentEvent(id: "10", data: "a")])
        #expect(try parser.feed(Array("data: b\n\n".utf8)) == [ServerSentEvent(id: "10", data: "b")])
        // An id in a block without data still sets the last event ID.
        #expect(try parser.feed(Array("id: 11\n\n".utf8)).isEmpty)
        #expect(parser.lastEventID == "11")
        #expect(try parser.feed(Array("data: c\n\n".utf8)) == [ServerSentEvent(id: "11", data: "c")])
        // An id containing NUL is ignored.
        #expect(try parser.feed(Array("id: 1\u{0}2\ndata: d\n\n".utf8)) == [ServerSentEvent(id: "11", data: "d")])
        // Only one leading space is stripped.
        #expect(try parser.feed(Array("id:  12\ndata: e\n\n".utf8)) == [ServerSentEvent(id: " 12", data: "e")])
        // An empty id resets it.
        #expect(try parser.feed(Array("id\ndata: f\n\n".utf8)) == [ServerSentEvent(id: nil, data: "f")])
        #expect(parser.lastEventID == "")
        #expect(try parser.feed(Array("id: 13\n\nid:\ndata: g\n\n".utf8)) == [ServerSentEvent(id: nil, data: "g")])
    }

    @Test("retry accepts only ASCII digits")
    func retryField() throws {
        var parser = ServerSentEventParser()
        #expect(try parser.feed(Array("retry: 1500\ndata: a\n\n".utf8)) == [ServerSentEvent(data: "a", retry: 1500)])
        #expect(parser.reconnectionTimeMilliseconds == 1500)
        for invalid in ["retry: 15x", "retry:", "retry: -5", "retry: +5", "retry: 1 5", "retry: 99999999999999999999999"] {
            #expect(try parser.feed(Array("\(invalid)\ndata: b\n\n".utf8)) == [ServerSentEvent(data: "b")], "\(invalid)")
        }
        #expect(parser.reconnectionTimeMilliseconds == 1500)
        // A retry-only block dispatches nothing but updates the reconnection time.
        #expect(try parser.feed(Array("retry: 0\n\n".utf8)).isEmpty)
        #expect(parser.reconnectionTimeMilliseconds == 0)
    }

    @Test("unknown fields, wrong case, spaces before the colon and comments are ignored")
    func ignoredLines() throws {
        let stream = ": comment\n:\nfoo: bar\nData: x\ndata : y\nDATA\nid : 9\nevent : e\n\n" + "data: kept\n: trailing comment\n\n"
        #expect(try parse(stream) == [ServerSentEvent(data: "kept")])
    }

    @Test("one leading BOM is stripped, even when split across chunks; others are not")
    func byteOrderMark() throws {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let body = Array("data: x\n\n".utf8)
        for cuts in [[1], [2], [1, 2], [3], [1, 3]] {
            #expect(try parse(bom + body, cuttingAt: cuts) == [ServerSentEvent(data: "x")], "\(cuts)")
        }
        // A second BOM is part of the first field name, which is then unknown.
        #expect(try parse(bom + bom + body).isEmpty)
        // A BOM later in the stream is not stripped either.
        #expect(try parse(body + bom + body) == [ServerSentEvent(data: "x")])
        // A partial BOM is ordinary (malformed) content.
        #expect(try parse([0xEF, 0xBB] + body).isEmpty)
        #expect(try parse([0xEF, 0xBB, 0x0A] + body) == [ServerSentEvent(data: "x")])
        // Streams shorter than a BOM.
        #expect(try parse([UInt8]()).isEmpty)
        #expect(try parse([0xEF]).isEmpty)
    }

    @Test("malformed UTF-8 is decoded with replacement characters")
    func malformedUTF8() throws {
        let stream: [UInt8] = Array("data: a".utf8) + [0xFF, 0xC3] + Array("\nid: ".utf8) + [0x80] + Array("\n\n".utf8)
        #expect(try parse(stream) == [ServerSentEvent(id: "\u{FFFD}", data: "a\u{FFFD}\u{FFFD}")])
    }

    @Test("a multi-byte character split across chunks is reassembled")
    func splitMultiByteCharacter() throws {
        let stream = Array("data: 😀\n\n".utf8)
        for cut in 6...9 {
            #expect(try parse(stream, cuttingAt: [cut]) == [ServerSentEvent(data: "😀")])
        }
    }

    @Test("an unterminated event at the end of the stream is not dispatched")
    func unterminatedEvent() throws {
        #expect(try parse("data: a\n").isEmpty)
        #expect(try parse("data: a").isEmpty)
    }

    @Test("a line longer than the limit throws, also when it arrives in pieces, and the parser stays failed")
    func lineLimit() throws {
        let limited = ServerSentEventParser(maxLineBytes: 8)
        // Exactly at the limit (terminators do not count).
        #expect(try parse("data: 12\r\n\r\n", parser: limited) == [ServerSentEvent(data: "12")])
        #expect(throws: ServerSentEventParserError.lineTooLong(limit: 8)) {
            try parse("data: 123\n\n", parser: limited)
        }
        var parser = limited
        #expect(try parser.feed(Array("data:".utf8)).isEmpty)
        #expect(throws: ServerSentEventParserError.lineTooLong(limit: 8)) {
            try parser.feed(Array("1234".utf8))
        }
        #expect(throws: ServerSentEventParserError.lineTooLong(limit: 8)) {
            try parser.feed(Array("\n\n".utf8))
        }
        // Comments count too: nothing unbounded is buffered.
        #expect(throws: ServerSentEventParserError.lineTooLong(limit: 8)) {
            try parse(":" + String(repeating: "k", count: 100), parser: limited)
        }
    }

    @Test("the default line limit is 1 MiB")
    func defaultLineLimit() throws {
        let atLimit = "data:" + String(repeating: "x", count: (1 << 20) - 5) + "\n\n"
        #expect(try parse(atLimit).first?.data.utf8.count == (1 << 20) - 5)
        #expect(throws: ServerSentEventParserError.lineTooLong(limit: 1 << 20)) {
            try parse("data:" + String(repeating: "x", count: 1 << 20) + "\n\n")
        }
    }

    @Test("event data larger than the limit throws")
    func eventDataLimit() throws {
        let limited = ServerSentEventParser(maxEventDataBytes: 5)
        #expect(try parse("data: 12\ndata: 34\n\n", parser: limited) == [ServerSentEvent(data: "12\n34")])
        #expect(throws: ServerSentEventParserError.eventDataTooLarge(limit: 5)) {
            try parse("data: 12\ndata: 345\n\n", parser: limited)
        }
        // The limit is per event.
        #expect(try parse("data: 12345\n\ndata: 12345\n\n", parser: limited).count == 2)
    }

    @Test("errors describe the limit")
    func errorDescriptions() {
        #expect(ServerSentEventParserError.lineTooLong(limit: 8).description.contains("8 bytes"))
        #expect(ServerSentEventParserError.eventDataTooLarge(limit: 5).description.contains("5 bytes"))
    }

    @Test("random bytes never crash, and chunking never changes the result")
    func randomBytesRobustness() throws {
        var random = SeededGenerator(state: 0x5EED_CAFE)
        let tokens: [[UInt8]] = [
            "data", "data:", "data: ", "id:", "id: ", "event:", "retry:", "retry: ", ":", " ", "\r", "\n", "\r\n",
            "\n\n", "0", "7", "42", "x", "é", "😀", "\u{0}", "\u{FEFF}",
        ].map { Array($0.utf8) }
        for iteration in 0..<300 {
            var stream: [UInt8] = []
            let length = Int(random.next() % 400)
            while stream.count < length {
                if random.next() % 5 == 0 {
                    stream.append(UInt8(truncatingIfNeeded: random.next()))
                } else {
                    stream += tokens[Int(random.next() % UInt64(tokens.count))]
                }
            }
            let parser = ServerSentEventParser(
                maxLineBytes: iteration % 3 == 0 ? 16 : 1 << 20,
                maxEventDataBytes: iteration % 4 == 0 ? 24 : 16 << 20
            )
            var cuts: [Int] = []
            if !stream.isEmpty {
                cuts = (0..<Int(random.next() % 8)).map { _ in Int(random.next() % UInt64(stream.count + 1)) }.sorted()
            }
            let whole = Result { try parse(stream, parser: parser) }
            let chunked = Result { try parse(stream, cuttingAt: cuts, parser: parser) }
            switch (whole, chunked) {
            case (.success(let wholeEvents), .success(let chunkedEvents)):
                #expect(wholeEvents == chunkedEvents, "iteration \(iteration), cuts \(cuts)")
            case (.failure(let wholeError), .failure(let chunkedError)):
                #expect(
                    wholeError as? ServerSentEventParserError == chunkedError as? ServerSentEventParserError,
                    "iteration \(iteration)"
                )
            default:
                Issue.record("iteration \(iteration), cuts \(cuts): whole \(whole) but chunked \(chunked)")
            }
        }
    }
}

