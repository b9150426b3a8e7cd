import Foundation
import TestSupport
import Testing

@testable import NMClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - An independent HTTP peer: Python's standard library

/// A stand-in for the daemon's API written with Python's `http.server`, so the client is
/// checked against an HTTP/1.1 implementation other than our own. It listens on a unix socket
/// (path in argv[1]) and on an ephemeral TCP port on 127.0.0.1, prints `READY <port>`, and
/// exits when its standard input closes.
private let pythonAPIServerScript = #"""
    import http.server
    import json
    import os
    import socketserver
    import sys
    import threading
    import time
    import urllib.parse

    TOKEN = "s3cret-token"
    stats_lock = threading.Lock()
    stats = {"streams_closed_by_client": 0, "bulk_bytes_written": 0}


    def count(key, amount=1):
        with stats_lock:
            stats[key] += amount


    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):
            pass

        def send_json(self, status, value, extra_headers=()):
            body = json.dumps(value, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, field_value in extra_headers:
                self.send_header(name, field_value)
            self.end_headers()
            self.wfile.write(body)

        def start_chunked(self, content_type="text/event-stream"):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Received-Last-Event-ID", self.headers.get("Last-Event-ID", "(none)"))
            self.end_headers()
            self.close_connection = True

        def write_chunk(self, data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/v1/health":
                self.send_json(200, {"status": "ok", "transport": self.server.transport_name},
                               [("X-Test-Server", "python")])
            elif url.path == "/echo":
                self.send_json(200, {"target": self.path,
                                     "headers": {k.lower(): v for k, v in self.headers.items()}})
            elif url.path == "/v1/secure":
                if self.headers.get("Authorization") == "Bearer " + TOKEN:
                    self.send_json(200, {"ok": True})
                else:
                    self.send_json(401, {"error": "unauthorized"}, [("WWW-Authenticate", "Bearer")])
            elif url.path == "/v1/events/stream":
                self.stream_events(query)
            elif url.path == "/bulk-stream":
                self.bulk_stream()
            elif url.path == "/big":
                size = int(query.get("size", "0"))
                if query.get("chunked") == "1":
                    self.start_chunked("application/octet-stream")
                    for _ in range(size // 1000):
                        self.write_chunk(b"b" * 1000)
                    self.write_chunk(b"")
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    self.wfile.write(b"b" * size)
            elif url.path == "/garbage":
                self.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
                self.close_connection = True
            elif url.path == "/truncated":
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"only ten b")
                self.close_connection = True
            elif url.path == "/stats":
                with stats_lock:
                    snapshot = dict(stats)
                self.send_json(200, snapshot)
            else:
                self.send_json(404, {"error": "not_found", "path": url.path})

        def stream_events(self, query):
            if query.get("cursor") == "expired":
                self.send_json(410, {"error": "cursor_expired", "oldest_seq": 101})
                return
            last_seq = int(self.headers.get("Last-Event-ID") or "0")
            total = int(query.get("count", "3"))
            delay = float(query.get("delay_ms", "20")) / 1000.0
            self.start_chunked()
            try:
                self.write_chunk(b": connected\n\nretry: 1500\n\n")
                for seq in range(last_seq + 1, last_seq + 1 + total):
                    event = b'id: %d\nevent: reading\ndata: {"seq":%d}\n\n' % (seq, seq)
                    middle = len(event) // 2
                    self.write_chunk(event[:middle])
                    time.sleep(delay)
                    self.write_chunk(event[middle:])
                    time.sleep(delay)
                self.write_chunk(b"")
            except (BrokenPipeError, ConnectionResetError):
                count("streams_closed_by_client")

        def bulk_stream(self):
            self.start_chunked()
            payload = b"data: " + b"x" * 65536 + b"\n\n"
            try:
                for seq in range(1, 1025):  # at most 64 MiB, then stop
                    self.write_chunk(b"id: %d\n" % seq + payload)
                    count("bulk_bytes_written", len(payload))
                self.write_chunk(b"")
            except (BrokenPipeError, ConnectionResetError):
                count("streams_closed_by_client")


    class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True
        transport_name = "unix"


    class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True
        transport_name = "tcp"


    unix_server = UnixServer(sys.argv[1], Handler)
    tcp_server = TCPServer(("127.0.0.1", 0), Handler)
    for server in (unix_server, tcp_server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("READY %d" % tcp_server.server_address[1], flush=True)
    sys.stdin.read()
    os._exit(0)
    """#

/// The running Python peer's addresses.
private struct PythonAPIServer: Sendable {
    static let token = "s3cret-token"

    var socketPath: String
    var tcpPort: Int

    var unixEndpoint: APIEndpoint { .unixSocket(path: socketPath) }
    var tcpEndpoint: APIEndpoint { .tcp(host: "127.0.0.1", port: tcpPort) }

    /// Reads the server's counters.
    func stats() async throws -> (streamsClosedByClient: Int, bulkBytesWritten: Int) {
        struct Stats: Decodable {
            var streams_closed_by_client: Int
            var bulk_bytes_written: Int
        }
        let response = try await APIClient(endpoint: unixEndpoint).get("/stats")
        let stats = try JSONDecoder().decode(Stats.self, from: Data(response.body))
        return (stats.streams_closed_by_client, stats.bulk_bytes_written)
    }

    /// Polls the counters until `condition` holds or `timeout` passes.
    func waitForStats(
        timeout: Duration = .seconds(10),
        until condition: (_ streamsClosedByClient: Int, _ bulkBytesWritten: Int) -> Bool
    ) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let stats = try await stats()
            if condition(stats.streamsClosedByClient, stats.bulkBytesWritten) {
                return true
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}

private struct PythonServerDidNotStart: Error, CustomStringConvertible {
    var output: String
    var description: String { "the Python API server did not start: \(output)" }
}

/// Starts a private Python peer in a fresh temporary directory, runs `body`, and always stops
/// the child and removes the directory.
@discardableResult
private func withPythonAPIServer<Result>(
    _ body: (PythonAPIServer) async throws -> Result
) async throws -> Result {
    let directory = "/tmp/nmclient-test-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: directory) }

    let scriptPath = directory + "/api_server.py"
    let socketPath = directory + "/api.sock"
    let stderrPath = directory + "/stderr.txt"
    try pythonAPIServerScript.write(toFile: scriptPath, atomically: true, encoding: .utf8)
    _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-u", scriptPath, socketPath]
    let standardInput = Pipe()
    let standardOutput = Pipe()
    process.standardInput = standardInput
    process.standardOutput = standardOutput
    process.standardError = FileHandle(forWritingAtPath: stderrPath)
    try process.runBoundToTest()
    defer {
        try? standardInput.fileHandleForWriting.close()
        process.terminate()
        process.waitUntilExit()
    }

    let readyLine = await readLine(fromFileDescriptor: standardOutput.fileHandleForReading.fileDescriptor)
    guard readyLine.hasPrefix("READY "), let port = Int(readyLine.dropFirst("READY ".count)) else {
        let stderr = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        throw PythonServerDidNotStart(output: readyLine + stderr)
    }
    return try await body(PythonAPIServer(socketPath: socketPath, tcpPort: port))
}

/// Reads one line on a thread outside the cooperative pool; returns what was read at EOF.
private func readLine(fromFileDescriptor fileDescriptor: Int32) async -> String {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while read(fileDescriptor, &byte, 1) == 1, byte != UInt8(ascii: "\n") {
                line.append(byte)
            }
            continuation.resume(returning: String(decoding: line, as: UTF8.self))
        }
    }
}

private struct HealthBody: Decodable, Equatable {
    var status: String
    var transport: String
}

private func decode<Value: Decodable>(_ type: Value.Type, from response: APIResponse) throws -> Value {
    try JSONDecoder().decode(type, from: Data(response.body))
}

// MARK: - Tests

@Suite("APIClient against a Python HTTP server", .timeLimit(.minutes(2)))
struct APIClientTests {
    @Test("GET over the unix socket returns status, headers and body")
    func getOverUnixSocket() async throws {
        try await withPythonAPIServer { server in
            let response = try await APIClient(endpoint: server.unixEndpoint).get("/v1/health")
            #expect(response.status == 200)
            #expect(try decode(HealthBody.self, from: response) == HealthBody(status: "ok", transport: "unix"))
            #expect(response.text == #"{"status":"ok","transport":"unix"}"#)
            #expect(response.headerValue("content-type") == "application/json")
            #expect(response.headerValue("X-TEST-SERVER") == "python")
            #expect(response.headers.contains { $0.0 == "X-Test-Server" && $0.1 == "python" })
        }
    }

    @Test("GET over TCP returns status, headers and body")
    func getOverTCP() async throws {
        try await withPythonAPIServer { server in
            let response = try await APIClient(endpoint: server.tcpEndpoint).get("/v1/health")
            #expect(response.status == 200)
            #expect(try decode(HealthBody.self, from: response) == HealthBody(status: "ok", transport: "tcp"))
            #expect(response.headerValue("Content-Length") == "\(response.body.count)")
        }
    }

    @Test("a 404 is returned with its JSON body, not thrown")
    func notFound() async throws {
        try await withPythonAPIServer { server in
            let response = try await APIClient(endpoint: server.unixEndpoint).get("/v1/nothing-here?x=1")
            #expect(response.status == 404)
            #expect(response.text == #"{"error":"not_found","path":"/v1/nothing-here"}"#)
        }
    }

    @Test("the bearer token is sent as an Authorization header")
    func bearerToken() async throws {
        try await withPythonAPIServer { server in
            let authorized = APIClient(endpoint: server.tcpEndpoint, bearerToken: PythonAPIServer.token)
            let accepted = try await authorized.get("/v1/secure")
            #expect(accepted.status == 200)
            #expect(accepted.text == #"{"ok":true}"#)

            let anonymous = try await APIClient(endpoint: server.tcpEndpoint).get("/v1/secure")
            #expect(anonymous.status == 401)
            #expect(anonymous.headerValue("WWW-Authenticate") == "Bearer")

            let wrong = try await APIClient(endpoint: server.tcpEndpoint, bearerToken: "nope").get("/v1/secure")
            #expect(wrong.status == 401)
        }
    }

    @Test("request target and headers arrive as sent; extra headers replace defaults")
    func requestHeaders() async throws {
        struct Echo: Decodable {
            var target: String
            var headers: [String: String]
        }
        try await withPythonAPIServer { server in
            let client = APIClient(endpoint: server.tcpEndpoint, bearerToken: "t0ken")
            let response = try await client.get(
                "/echo?since=5&kind=a%20b",
                headers: [("X-Custom", "value 1"), ("accept", "text/plain")]
            )
            let echo = try decode(Echo.self, from: response)
            #expect(echo.target == "/echo?since=5&kind=a%20b")
            #expect(echo.headers["x-custom"] == "value 1")
            #expect(echo.headers["accept"] == "text/plain")
            #expect(echo.headers["authorization"] == "Bearer t0ken")
            // Connections are kept alive for the next request (AsyncHTTPClient's pool).
            #expect(echo.headers["connection"] != "close")
            #expect(echo.headers["host"] == "127.0.0.1:\(server.tcpPort)")
            #expect(echo.headers["user-agent"] == "nmbridge-client")

            let overUnix = try decode(Echo.self, from: try await APIClient(endpoint: server.unixEndpoint).get("/echo"))
            #expect(overUnix.headers["host"] == "localhost")
            #expect(overUnix.headers["authorization"] == nil)
        }
    }

    @Test("a slow event stream is parsed into events")
    func slowEventStream() async throws {
        try await withPythonAPIServer { server in
            let stream = try await APIClient(endpoint: server.unixEndpoint).stream(
                "/v1/events/stream?count=4&delay_ms=30"
            )
            #expect(stream.status == 200)
            #expect(stream.headerValue("Content-Type") == "text/event-stream")
            #expect(stream.headerValue("X-Received-Last-Event-ID") == "(none)")
            var events: [ServerSentEvent] = []
            for try await event in stream {
                events.append(event)
            }
            #expect(
                events == (1...4).map {
                    ServerSentEvent(id: "\($0)", event: "reading", data: #"{"seq":\#($0)}"#)
                }
            )
        }
    }

    @Test("Last-Event-ID is sent and the stream resumes after it")
    func lastEventID() async throws {
        try await withPythonAPIServer { server in
            let stream = try await APIClient(endpoint: server.tcpEndpoint, bearerToken: PythonAPIServer.token).stream(
                "/v1/events/stream?count=2&delay_ms=1",
                headers: [("Last-Event-ID", "41")]
            )
            #expect(stream.headerValue("X-Received-Last-Event-ID") == "41")
            var iterator = stream.makeAsyncIterator()
            #expect(try await iterator.next()?.id == "42")
            #expect(iterator.lastEventID == "42")
            #expect(try await iterator.next()?.id == "43")
            #expect(try await iterator.next() == nil)
        }
    }

    @Test("more live streams than AsyncHTTPClient's default pool size run at once")
    func manyConcurrentStreams() async throws {
        try await withPythonAPIServer { server in
            let client = APIClient(endpoint: server.unixEndpoint)
            // All are open (each holding its connection, its body unread) before any is read:
            // with the pool's default limit of 8 connections the ninth would wait for a free one.
            var streams: [ServerSentEventStream] = []
            for _ in 0..<12 {
                streams.append(try await client.stream("/v1/events/stream?count=2&delay_ms=1"))
            }
            for stream in streams {
                var ids: [String?] = []
                for try await event in stream {
                    ids.append(event.id)
                }
                #expect(ids == ["1", "2"])
            }
        }
    }

    @Test("a non-200 stream response throws the status and the JSON error body")
    func streamErrorStatus() async throws {
        try await withPythonAPIServer { server in
            do {
                _ = try await APIClient(endpoint: server.unixEndpoint).stream("/v1/events/stream?cursor=expired")
                Issue.record("expected APIError.httpStatus")
            } catch APIError.httpStatus(let response) {
                #expect(response.status == 410)
                #expect(response.text == #"{"error":"cursor_expired","oldest_seq":101}"#)
                #expect(response.headerValue("Content-Type") == "application/json")
                let message = String(describing: APIError.httpStatus(response))
                #expect(message == #"HTTP 410 Gone: {"error":"cursor_expired","oldest_seq":101}"#)
            }
        }
    }

    @Test("a 200 stream response that is not an event stream is rejected")
    func streamWrongContentType() async throws {
        try await withPythonAPIServer { server in
            await #expect(throws: APIError.unexpectedContentType("application/json")) {
                _ = try await APIClient(endpoint: server.unixEndpoint).stream("/v1/health")
            }
        }
    }

    @Test("the stream reads only as fast as it is consumed, and closes when dropped")
    func streamBackpressureAndClose() async throws {
        try await withPythonAPIServer { server in
            do {
                let stream = try await APIClient(endpoint: server.unixEndpoint).stream("/bulk-stream")
                var iterator = stream.makeAsyncIterator()
                #expect(try await iterator.next()?.id == "1")
                // The server would write 64 MiB if the client read without limit.
                try await Task.sleep(for: .milliseconds(700))
                let (_, writtenWhilePaused) = try await server.stats()
                #expect(writtenWhilePaused < 8 << 20, "the server wrote \(writtenWhilePaused) bytes while the consumer paused")
                for expectedID in 2...5 {
                    let event = try await iterator.next()
                    #expect(event?.id == "\(expectedID)")
                    #expect(event?.data.utf8.count == 65536)
                }
            }
            // Iterator and stream are gone: the connection must be closed, which the server
            // notices as a broken pipe while it is still writing.
            let closed = try await server.waitForStats { streamsClosed, _ in streamsClosed == 1 }
            #expect(closed)
            let (_, written) = try await server.stats()
            #expect(written < 8 << 20)
        }
    }

    @Test("cancelling the iterating task closes the connection")
    func streamCancellation() async throws {
        try await withPythonAPIServer { server in
            let stream = try await APIClient(endpoint: server.unixEndpoint).stream(
                "/v1/events/stream?count=1000&delay_ms=20"
            )
            let (firstEvent, firstEventContinuation) = AsyncStream.makeStream(of: Void.self)
            let consumer = Task {
                var count = 0
                for try await _ in stream {
                    count += 1
                    firstEventContinuation.yield()
                }
                return count
            }
            var waitForFirst = firstEvent.makeAsyncIterator()
            await waitForFirst.next()
            consumer.cancel()
            let outcome = await consumer.result
            if case .success(let count) = outcome {
                #expect(count < 1000)
            }
            #expect(try await server.waitForStats { streamsClosed, _ in streamsClosed == 1 })
        }
    }

    @Test("an unread stream closes its connection when dropped")
    func unreadStreamIsClosed() async throws {
        try await withPythonAPIServer { server in
            do {
                let stream = try await APIClient(endpoint: server.unixEndpoint).stream(
                    "/v1/events/stream?count=1000&delay_ms=20"
                )
                #expect(stream.status == 200)
            }
            #expect(try await server.waitForStats { streamsClosed, _ in streamsClosed == 1 })
        }
    }

    @Test("response bodies larger than the limit fail", arguments: [false, true])
    func responseBodyLimit(chunked: Bool) async throws {
        try await withPythonAPIServer { server in
            let client = APIClient(endpoint: server.unixEndpoint, maxResponseBodyBytes: 4000)
            let query = chunked ? "&chunked=1" : ""
            let fitting = try await client.get("/big?size=4000" + query)
            #expect(fitting.body == [UInt8](repeating: UInt8(ascii: "b"), count: 4000))
            await #expect(throws: APIError.responseBodyTooLarge(limit: 4000)) {
                _ = try await client.get("/big?size=5000" + query)
            }
        }
    }

    @Test("a response that is not HTTP, or is cut short, gives an error naming the endpoint")
    func brokenResponses() async throws {
        try await withPythonAPIServer { server in
            let client = APIClient(endpoint: server.unixEndpoint)
            do {
                _ = try await client.get("/garbage")
                Issue.record("expected an error")
            } catch {
                guard case .invalidResponse(let endpoint, _)? = error as? APIError else {
                    Issue.record("unexpected error \(error)")
                    return
                }
                #expect(endpoint == server.unixEndpoint)
                #expect(String(describing: error).hasPrefix("invalid HTTP response from \(server.socketPath): "))
            }
            do {
                _ = try await client.get("/truncated")
                Issue.record("expected an error")
            } catch {
                #expect(
                    error as? APIError
                        == .connectionLost(
                            endpoint: server.unixEndpoint,
                            reason: "the connection closed before the response was complete"
                        )
                )
            }
        }
    }

    @Test("a missing socket gives an error naming the socket path")
    func missingSocket() async throws {
        let path = "/tmp/nmclient-test-\(UUID().uuidString.prefix(8))/api.sock"
        do {
            _ = try await APIClient(endpoint: .unixSocket(path: path)).get("/v1/health")
            Issue.record("expected a connection error")
        } catch let error as APIError {
            guard case .cannotConnect(let endpoint, _) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(endpoint == .unixSocket(path: path))
            let message = String(describing: error)
            #expect(message == "cannot connect to \(path): No such file or directory — is nmbridged running?")
            #expect(error.localizedDescription == message)
        }
    }

    @Test("a refused TCP connection names the address")
    func refusedTCPConnection() async throws {
        // Port 1 on loopback is privileged and unused on build machines.
        let error = await #expect(throws: APIError.self) {
            _ = try await APIClient(endpoint: .tcp(host: "127.0.0.1", port: 1)).get("/v1/health")
        }
        let message = error.map { String(describing: $0) } ?? ""
        #expect(message.hasPrefix("cannot connect to http://127.0.0.1:1: "))
        #expect(message.contains("Connection refused"))
    }

    @Test("invalid request targets and headers are rejected before connecting")
    func invalidRequests() async throws {
        let client = APIClient(endpoint: .unixSocket(path: "/nonexistent/api.sock"))
        for target in ["v1/health", "/v1/events?kind=a b", "/v1\r\nX: y"] {
            await #expect(throws: APIError.self) { _ = try await client.get(target) }
            do {
                _ = try await client.get(target)
            } catch let error as APIError {
                guard case .invalidRequest = error else {
                    Issue.record("\(target): \(error)")
                    continue
                }
            }
        }
        for header in [("X-Bad", "a\r\nInjected: 1"), ("Bad Name", "v"), ("", "v")] {
            do {
                _ = try await client.get("/v1/health", headers: [header])
                Issue.record("expected an error for \(header)")
            } catch let error as APIError {
                guard case .invalidRequest = error else {
                    Issue.record("\(header): \(error)")
                    continue
                }
            }
        }
    }
}

@Suite("APIEndpoint")
struct APIEndpointTests {
    @Test(
        "valid URLs",
        arguments: [
            ("http://127.0.0.1:8080", APIEndpoint.tcp(host: "127.0.0.1", port: 8080)),
            ("http://localhost:9/", .tcp(host: "localhost", port: 9)),
            ("HTTP://example.internal", .tcp(host: "example.internal", port: 80)),
            ("http://[::1]:7070", .tcp(host: "::1", port: 7070)),
            ("http://[::1]", .tcp(host: "::1", port: 80)),
            ("unix:///run/nmbridge/api.sock", .unixSocket(path: "/run/nmbridge/api.sock")),
            ("/tmp/x.sock", .unixSocket(path: "/tmp/x.sock")),
        ]
    )
    func validURL(url: String, expected: APIEndpoint) throws {
        #expect(try APIEndpoint(url: url) == expected)
    }

    @Test(
        "invalid URLs are rejected with a message naming them",
        arguments: [
            "", "localhost:8080", "ftp://host:1", "https://host:443", "http://", "http://:80", "http://host:",
            "http://host:0", "http://host:65536", "http://host:80x", "http://host:8080/v1", "http://host?x",
            "http://user@host:1", "http://::1:80", "http://[::1", "http://[::1]x", "unix://relative/path", "unix://",
        ]
    )
    func invalidURL(url: String) {
        do {
            let endpoint = try APIEndpoint(url: url)
            Issue.record("'\(url)' parsed as \(endpoint)")
        } catch {
            guard case .invalidEndpointURL(let reportedURL, _) = error as? APIError else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(reportedURL == url)
            #expect(String(describing: error).contains("'\(url)'"))
        }
    }

    @Test("descriptions")
    func descriptions() {
        #expect(APIEndpoint.default.description == "/run/nmbridge/api.sock")
        #expect(APIEndpoint.tcp(host: "::1", port: 80).description == "http://[::1]:80")
        #expect(APIEndpoint.tcp(host: "::1", port: 80).hostHeaderValue == "[::1]:80")
        #expect(APIEndpoint.tcp(host: "h", port: 8).description == "http://h:8")
    }
}
