import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NMBridgeCore
import NMCatalog
import NMClient
import NMJournal
import TestSupport
import Testing

@testable import NMServer

/// Runs the real API router on an ephemeral TCP port around a fresh journal.
func withAPI(
    buffer: Int = 4096, token: String? = nil, stallTimeout: Duration = .seconds(30),
    _ body: @escaping @Sendable (Journal, Int) async throws -> Void
) async throws {
    let dir = FileManager.default.temporaryDirectory.path + "/nmb-api-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let logger = Logger(label: "test")
    let journal = try Journal.open(JournalOptions(path: dir + "/journal.db", node: "test-node", registry: .standard, sync: .normal, subscriberBuffer: buffer), logger: logger)
    let routes = APIRoutes(
        journal: journal, monitor: DeviceMonitor(journal: journal, devices: [], logger: logger), node: "test-node",
        keepAlive: .milliseconds(200), stallTimeout: stallTimeout)
    let app = Application(
        router: routes.router(token: token), configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
        logger: logger)
    try await app.test(.live) { client in
        defer { journal.closeFollowers() }  // open streams end, so the server can stop
        try await body(journal, try #require(client.port))
    }
}

/// curl, the independent HTTP peer: returns (HTTP status, body).
///
/// Waits on a thread of its own: blocking one of the few cooperative threads would starve
/// the in-process server that curl is talking to.
func curl(_ url: String, _ extra: [String] = []) async throws -> (status: Int, body: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    process.arguments = ["-s", "-w", "\n%{http_code}"] + extra + [url]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.runBoundToTest()
    let data = await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            continuation.resume(returning: data)
        }
    }
    var text = String(decoding: data, as: UTF8.self)
    let statusLine = text.split(separator: "\n").last.map(String.init) ?? "0"
    text = String(text.dropLast(statusLine.count + 1))
    return (Int(statusLine) ?? 0, text)
}

/// curl on a stream that never ends by itself: reads until `done` holds for what has
/// arrived, then stops curl. `--max-time` only bounds a hang; how long the server takes on
/// a loaded machine does not matter.
func curlStream(_ url: String, _ extra: [String] = [], until done: @escaping @Sendable (String) -> Bool) async throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    process.arguments = ["-s", "-N", "--max-time", "120"] + extra + [url]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.runBoundToTest()
    return await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            var data = Data()
            while true {
                let chunk = pipe.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                data.append(chunk)
                if done(String(decoding: data, as: UTF8.self)) {
                    stopProcess(process)
                    break
                }
            }
            process.waitUntilExit()
            continuation.resume(returning: String(decoding: data, as: UTF8.self))
        }
    }
}

func appendSample(_ journal: Journal, count: Int, device: String = "dev-a", kind: String = "experimental.sample", time: Date = Date()) async throws {
    for i in 0..<count {
        try await journal.append(EventDraft(time: time, device: device, driver: "script", kind: kind, data: ["i": .int(Int64(i))]))
    }
}

// One test at a time: the stalled-subscriber tests push 12.8 MB through an in-process server,
// which on a loaded machine starves the short stream tests' 8-second windows beside them.
@Suite(.serialized) struct APITests {
    @Test func eventsQueryFiltersAndReturnsEnvelopes() async throws {
        try await withAPI { journal, port in
            try await appendSample(journal, count: 5, device: "gantry-1", kind: "experimental.a")
            try await appendSample(journal, count: 5, device: "dosecal-1", kind: "experimental.b")
            let r = try await curl("http://127.0.0.1:\(port)/v1/events?device=dosecal-1&kind=experimental.*&after=6&limit=2")
            #expect(r.status == 200)
            let body = try JSONValue.parse(r.body)
            #expect(body["journal"] == .string(journal.id.uuidString.lowercased()))
            #expect(body["last_seq"] == .int(10))
            guard case .array(let events)? = body["events"] else { Issue.record("no events array: \(r.body)"); return }
            #expect(events.map { $0["seq"] } == [.int(7), .int(8)])
            #expect(events.first?["device"] == .string("dosecal-1"))
            let last = try await curl("http://127.0.0.1:\(port)/v1/events?last=3&device=gantry-1")
            #expect(try JSONValue.parse(last.body)["events"].map { v -> [JSONValue?] in
                guard case .array(let a) = v else { return [] }
                return a.map { $0["seq"] }
            } == [.int(3), .int(4), .int(5)])
        }
    }

    @Test func badRequestsGetFourHundredsWithJSONBodies() async throws {
        try await withAPI { _, port in
            let base = "http://127.0.0.1:\(port)"
            for (path, status, code) in [
                ("/v1/events?limit=0", 400, "bad_request"), ("/v1/events?since=yesterday", 400, "bad_request"),
                ("/v1/events?kind=%5Bab%5D", 400, "bad_request"), ("/v1/events?colour=red", 400, "bad_request"),
                ("/v1/events?after=-4", 400, "bad_request"), ("/v1/nothing", 404, "not_found"), ("/", 404, "not_found"),
            ] {
                let r = try await curl(base + path)
                #expect(r.status == status, "\(path): \(r.status) \(r.body)")
                let body = try? JSONValue.parse(r.body)
                #expect(body?["error"] == .string(code), "\(path): \(r.body)")
                #expect(body?["message"]?.stringValue?.isEmpty == false)
            }
            let stream = try await curl(base + "/v1/events/stream", ["-H", "Last-Event-ID: banana"])
            #expect(stream.status == 400)
            // A cursor past the end belongs to another history: 409, never a silent skip (nor a crash).
            let ahead = try await curl(base + "/v1/events?after=9223372036854775807")
            #expect(ahead.status == 409)
            #expect(try JSONValue.parse(ahead.body)["error"] == .string("cursor_ahead"))
            let far = try await curl(base + "/v1/events/stream", ["-H", "Last-Event-ID: 9223372036854775807", "--max-time", "30"])
            #expect(far.status == 409)
        }
    }

    /// 10 000 kind patterns once gave a 500 carrying SQLite's "Expression tree is too
    /// large" and the SQL text; now the count is capped with a 400 that says so.
    @Test func longFilterListsAreRefusedWithoutLeakingInternals() async throws {
        try await withAPI { journal, port in
            try await appendSample(journal, count: 3)
            let base = "http://127.0.0.1:\(port)"
            for query in [
                "kind=" + Array(repeating: "*", count: 10_000).joined(separator: ","),
                "device=" + (0..<65).map { "d\($0)" }.joined(separator: ","),
                (0..<65).map { "kind=k\($0).*" }.joined(separator: "&"),
            ] {
                for path in ["/v1/events?", "/v1/events/stream?"] {
                    let r = try await curl(base + path + query, ["--max-time", "30"])
                    #expect(r.status == 400, "\(path)\(query.prefix(40))…: \(r.status) \(r.body.prefix(300))")
                    let body = try? JSONValue.parse(r.body)
                    #expect(body?["error"] == .string("bad_request"))
                    #expect(body?["message"]?.stringValue?.contains("at most 64") == true, "\(r.body.prefix(300))")
                    #expect(!r.body.localizedCaseInsensitiveContains("select"), "no SQL text reaches the client")
                }
            }
            let most = try await curl(base + "/v1/events?kind=" + (0..<64).map { "k\($0).*" }.joined(separator: ",") + ",experimental.*")
            #expect(most.status == 400, "65 patterns counting the last one")
            let allowed = try await curl(base + "/v1/events?kind=" + (0..<63).map { "k\($0).*" }.joined(separator: ",") + ",experimental.*")
            #expect(allowed.status == 200, "\(allowed.body.prefix(300))")
            #expect((try? JSONValue.parse(allowed.body))?["last_seq"] == .int(3))
        }
    }

    /// A client that stops reading once blocked its stream in a socket write forever: its
    /// overflow was noticed only when the stream asked for the next event, which it never
    /// did (50 such clients held 391 MB and were never counted). Now the overflow is
    /// counted and its buffer released when it happens, and the blocked write is cut off
    /// after the stall timeout.
    @Test func aStalledSubscriberIsCountedReleasedAndCutOff() async throws {
        try await withAPI(buffer: 64, stallTimeout: .seconds(2)) { journal, port in
            let client = try StalledClient(port: port, path: "/v1/events/stream")
            defer { client.stop() }
            try await client.waitUntilStalling()
            #expect(await waitFor { journal.statistics.liveSubscribers == 1 })
            // Batches of 50 into a buffer of 64: the second batch overflows it unless the stream
            // has written the first out already, and the client reads nothing; 12.8 MB also
            // fill the socket buffers (4 MB on loopback) whatever the stream manages.
            let filler = String(repeating: "x", count: 32_768)
            for _ in 0..<8 {
                try await journal.append((0..<50).map { _ in EventDraft(device: "dev-a", kind: "experimental.fill", data: ["text": .string(filler)]) })
            }
            #expect(await waitFor { journal.statistics.laggedSubscribers == 1 }, "counted when it overflowed, while the client still reads nothing")
            #expect(await waitFor { journal.statistics.liveSubscribers == 0 }, "its subscription and buffer are gone")
            #expect(client.isRunning, "the client has not read anything yet")
            client.resume()
            let result = try await client.result()
            // Either its blocked write was cut off, or (when the overflow came before the socket
            // buffers were full) the stream ended with `event: lagged`: it holds nothing either way.
            #expect(result["closed"] == .bool(true) || result["lagged_event"] == .bool(true), "\(result.jsonText)")
            #expect(journal.statistics.laggedSubscribers == 1, "counted once")
        }
    }

    /// A client that stops reading on a quiet journal never overflows; its blocked write
    /// ends the stream after the stall timeout.
    @Test func aStalledSubscriberIsCutOffWhenAWriteWaitsTooLong() async throws {
        try await withAPI(stallTimeout: .seconds(1)) { journal, port in
            let client = try StalledClient(port: port, path: "/v1/events/stream")
            defer { client.stop() }
            try await client.waitUntilStalling()
            #expect(await waitFor { journal.statistics.liveSubscribers == 1 })
            // 400 events of 32 KB: far more than the socket buffers (4 MB on loopback) hold,
            // fewer than the subscriber buffer (4096), so only the blocked write can end the stream.
            let filler = String(repeating: "y", count: 32_768)
            for _ in 0..<8 {
                try await journal.append((0..<50).map { _ in EventDraft(device: "dev-a", kind: "experimental.fill", data: ["text": .string(filler)]) })
            }
            #expect(await waitFor { journal.statistics.laggedSubscribers == 1 }, "cut off after a write waited 1 s")
            #expect(await waitFor { journal.statistics.liveSubscribers == 0 })
            client.resume()
            let result = try await client.result()
            #expect(result["closed"] == .bool(true), "\(result)")
        }
    }

    @Test func streamServesSSEFromACursorWithFilters() async throws {
        try await withAPI { journal, port in
            try await appendSample(journal, count: 6, device: "gantry-1")
            try await appendSample(journal, count: 2, device: "dosecal-1")
            // Read until the first keep-alive after the backlog: the server had nothing more to send.
            let body = try await curlStream("http://127.0.0.1:\(port)/v1/events/stream?device=gantry-1", ["-H", "Last-Event-ID: 3"]) {
                text in text.range(of: "id: 6\n").map { text[$0.upperBound...].contains(": keep-alive") } ?? false
            }
            let frames = body.components(separatedBy: "\n\n").filter { $0.contains("data: ") }
            #expect(frames.count == 3, "\(body)")
            let ids = frames.compactMap { frame in frame.split(separator: "\n").first { $0.hasPrefix("id: ") }.map { String($0.dropFirst(4)) } }
            #expect(ids == ["4", "5", "6"])
            #expect(frames.allSatisfy { $0.contains("event: experimental.sample\n") })
            let data = try #require(frames.first?.split(separator: "\n").first { $0.hasPrefix("data: ") })
            let event = try Event(json: String(data.dropFirst(6)))
            #expect(event.seq == 4)
            #expect(event.device == "gantry-1")
        }
    }

    @Test func filteredStreamsMoveTheClientCursorPastSkippedEvents() async throws {
        try await withAPI { journal, port in
            try await appendSample(journal, count: 2, device: "rare-1")
            let url = "http://127.0.0.1:\(port)/v1/events/stream?device=rare-1"
            let stream = Task { try await curlStream(url, ["-H", "Last-Event-ID: 0"]) { $0.contains("id: 12\n") } }
            try await Task.sleep(for: .milliseconds(600))
            try await appendSample(journal, count: 10, device: "busy-1")
            let body = try await stream.value
            let ids = body.split(separator: "\n").filter { $0.hasPrefix("id: ") }.map { String($0.dropFirst(4)) }
            #expect(ids.prefix(2) == ["1", "2"], "\(body)")
            #expect(ids.last == "12", "after the busy device's events, an id-only keep-alive moves the cursor: \(body)")
            #expect(!body.contains("busy-1"), "the skipped events themselves are not sent")
        }
    }

    @Test func expiredCursorsGetGoneWithTheOldestSeq() async throws {
        try await withAPI { journal, port in
            try await appendSample(journal, count: 10, time: Date().addingTimeInterval(-30 * 86_400))
            try await appendSample(journal, count: 2)
            try await journal.applyRetention(RetentionPolicy(maxAge: 86_400))
            for (path, headers) in [("/v1/events?after=3", [String]()), ("/v1/events/stream", ["-H", "Last-Event-ID: 3"]), ("/v1/events/stream?after=0", [])] {
                let r = try await curl("http://127.0.0.1:\(port)\(path)", headers + ["--max-time", "30"])  // a 410 comes at once; 30 s only bounds a hang
                #expect(r.status == 410, "\(path) → \(r.status) \(r.body)")
                let body = try JSONValue.parse(r.body)
                #expect(body["error"] == .string("cursor_expired"))
                #expect(body["oldest_seq"] == .int(11))
            }
            let ok = try await curl("http://127.0.0.1:\(port)/v1/events?after=10")
            #expect(ok.status == 200)
        }
    }

    @Test func aSlowSubscriberIsCutOffAsLaggedWhileAFastOneGetsEverything() async throws {
        // The slow one's write may wait as long as producing takes on a loaded machine.
        try await withAPI(buffer: 64, stallTimeout: .seconds(600)) { journal, port in
            let client = APIClient(endpoint: .tcp(host: "127.0.0.1", port: port))
            let total = 3000
            let fastProgress = Shared<Int64>(0)
            let fast = Task {
                var seqs: [Int64] = []
                for try await message in try await client.stream("/v1/events/stream?after=0") {
                    if let id = message.id, let seq = Int64(id) {
                        seqs.append(seq)
                        fastProgress.withLock { $0 = seq }
                    }
                    if seqs.count == total || message.event == "lagged" { break }
                }
                return seqs
            }
            let slowStream = try await client.stream("/v1/events/stream?after=0")
            var slow = slowStream.makeAsyncIterator()
            try await appendSample(journal, count: 1)
            #expect(try await slow.next()?.id == "1")
            // The slow subscriber stops reading while the producer goes on; appends never wait for it.
            // Events carry 4 KB each so that socket buffers (several MB on loopback) fill up.
            let padding = JSONValue.string(String(repeating: "p", count: 4096))
            for i in 1..<total {
                try await journal.append(EventDraft(device: "dev-a", kind: "experimental.sample", data: ["i": .int(Int64(i)), "pad": padding]))
                // The producer never waits for the slow one; it only lets the fast one keep within
                // its buffer (64) — on a loaded machine a reader that is merely scheduled late
                // would otherwise be cut off too.
                while Int64(i + 1) - fastProgress.current > 32 {
                    try await Task.sleep(for: .milliseconds(2))
                }
            }
            #expect(journal.lastSeq == Int64(total))
            #expect(try await fast.value == Array(1...Int64(total)))
            var seqs: [Int64] = [1]
            var lagged: JSONValue?
            while let message = try await slow.next() {
                if message.event == "lagged" {
                    lagged = try JSONValue.parse(message.data)
                    break
                }
                if let id = message.id, let seq = Int64(id) { seqs.append(seq) }
                if seqs.last == Int64(total) { break }  // it kept up after all: the expectation below fails
            }
            let notice = try #require(lagged, "the slow subscriber was cut off")
            #expect(notice["error"] == .string("lagged"))
            #expect(seqs == (0..<seqs.count).map { Int64($0) + 1 }, "what it did get has no gaps")
            #expect(notice["last_seq"]?.intValue == seqs.last, "it can resume exactly after the last event it got")
            #expect(seqs.count < total)
        }
    }

    @Test func tcpNeedsTheBearerToken() async throws {
        let token = "s3cret-token-0123456789"
        try await withAPI(token: token) { _, port in
            let url = "http://127.0.0.1:\(port)/v1/health"
            let none = try await curl(url, ["-D", "-"])
            #expect(none.status == 401)
            #expect(none.body.lowercased().contains("www-authenticate: bearer"))
            #expect(none.body.contains("\"error\":\"unauthorized\""))
            #expect(try await curl(url, ["-H", "Authorization: Bearer wrong-token-0123456789"]).status == 401)
            #expect(try await curl(url, ["-H", "Authorization: Bearer \(token)"]).status == 200)
            #expect(try await curl("http://127.0.0.1:\(port)/metrics", ["-H", "Authorization: Bearer \(token)"]).status == 200)
        }
    }

    @Test func metricsAreValidPrometheusText() async throws {
        try await withAPI { journal, port in
            try await appendSample(journal, count: 7)
            let r = try await curl("http://127.0.0.1:\(port)/metrics")
            #expect(r.status == 200)
            #expect(r.body.contains("\nnmbridge_journal_last_seq 7\n"))
            #expect(r.body.contains("# TYPE nmbridge_journal_events_appended_total counter"))
            let sample = try Regex(#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$"#)
            for line in r.body.split(separator: "\n") where !line.hasPrefix("#") {
                #expect(line.wholeMatch(of: sample) != nil, "not a Prometheus sample: \(line)")
            }
            let health = try JSONValue.parse(try await curl("http://127.0.0.1:\(port)/v1/health").body)
            #expect(health["status"] == .string("ok"))
            #expect(health["journal"]?["last_seq"] == .int(7))
        }
    }
}

/// Waits (generously; never a performance limit) until `condition` holds.
func waitFor(seconds: Double = 60, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return condition()
}

/// Tests/Peers/sse_stall.py: a live-stream client that reads nothing until `resume()` (or until
/// the test process ends and its stdin closes).
final class StalledClient {
    let process: Process
    let output: Pipe
    let input = Pipe()

    init(port: Int, path: String) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot + "/Tests/Peers/sse_stall.py", "127.0.0.1", "\(port)", path]
        output = Pipe()
        process.standardOutput = output
        process.standardInput = input
        try process.runBoundToTest()
    }

    /// Ends the stall: the client reads what the server still sends, to the end.
    func resume() { try? input.fileHandleForWriting.close() }

    var isRunning: Bool { process.isRunning }

    /// Until the request is sent (the script says "stalling").
    func waitUntilStalling() async throws {
        let handle = output.fileHandleForReading
        let line = await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: handle.availableData) }
        }
        #expect(String(decoding: line, as: UTF8.self).hasPrefix("stalling"))
    }

    /// What the script printed once it read to the end: {"closed", "bytes", "lagged_event"}.
    func result() async throws -> JSONValue {
        let handle = output.fileHandleForReading
        let data = await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: handle.readDataToEndOfFile()) }
        }
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
        return try JSONValue.parse(line)
    }

    func stop() {
        resume()
        stopProcess(process)
    }
}
