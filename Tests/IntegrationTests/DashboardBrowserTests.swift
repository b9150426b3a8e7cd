import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// The web dashboard in a real browser: Playwright for Python drives Debian's Chromium
/// (Tests/Peers/dashboard_browser.py) against a daemon on TCP with a token, a CRC-35R
/// simulator on a pty and a script device whose event text is hostile. The peer asks this
/// test to silence the simulator, make the QC CSV and restart the daemon, one JSON line
/// at a time; it checks what the page shows and fails with what it saw.
@Suite struct DashboardBrowserTests {
    static let peer = repositoryRoot + "/Tests/Peers/dashboard_browser.py"
    /// Screenshots of each page (docs/dashboard.md shows one).
    static let artifacts = ProcessInfo.processInfo.environment["NMBRIDGE_TEST_ARTIFACTS"].map { $0 + "/dashboard" }
        ?? repositoryRoot + "/.build/test-artifacts/dashboard"

    @Test func dashboardInChromium() async throws {
        let chromium = "/usr/bin/chromium"
        guard FileManager.default.isExecutableFile(atPath: chromium),
            (try? await runProgram(testPython, ["-c", "import playwright.sync_api"]))?.status == 0
        else {
            print("⚠️ SKIPPED: needs \(chromium) (apt-get install chromium) and playwright in \(testPython) (scripts/test installs both)")
            return
        }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = "dashboard-test-token-\(UUID().uuidString.prefix(8))"
        try token.write(toFile: dir + "/api.token", atomically: true, encoding: .utf8)
        // A constancy check (Cs-137 on the check source: a qc finding today), then patient
        // doses, over and over: a measurement every few seconds.
        try """
            show Cs-137 7 MBq for 12 requests
            empty for 4 requests
            show Tc-99m 740 MBq for 12 requests
            empty for 4 requests
            show Tc-99m 555 MBq for 12 requests
            empty for 4 requests
            loop
            """.write(toFile: dir + "/session.sim", atomically: true, encoding: .utf8)
        // A script device whose event text would run if the page rendered it as HTML.
        try #"""
            link up "hostile text"
            wait 0.5
            emit device.protocol_error {"error": "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">"}
            wait 1
            heartbeat
            wait 2
            loop
            """#.write(toFile: dir + "/hostile.script", atomically: true, encoding: .utf8)
        let simulator = try SimulatorProcess(model: "crc35r", link: dir + "/dosecal.tty", script: dir + "/session.sim")
        defer { simulator.stop() }
        try await simulator.waitForLink(dir + "/dosecal.tty")
        let port = try freeTCPPort()
        let staleAfter = 2.0
        let config = """
            [daemon]
            node = "test-node"
            state_dir = "\(dir)"

            [journal]
            sync = "normal"

            [api]
            socket = "\(dir)/api.sock"
            tcp = "127.0.0.1:\(port)"
            token_file = "\(dir)/api.token"

            [supervisor]
            initial_backoff_s = 0.1
            max_backoff_s = 0.4

            \(qcWithCheckSource(device: "dosecal-hotlab", readsTodayBq: 7e6, certifiedDaysAgo: 100))

            [[device]]
            id = "dosecal-hotlab"
            driver = "capintec-crc35r"
            path = "dosecal.tty"
            poll_ms = 100
            stale_after_s = \(staleAfter)

            [[device]]
            id = "hostile-text"
            driver = "script"
            script = "hostile.script"
            """
        var daemon = try await DaemonProcess.start(directory: dir, config: config)
        defer { daemon.signal(SIGKILL) }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: testPython)
        process.arguments = [
            Self.peer, "--base", "http://127.0.0.1:\(port)", "--token-file", dir + "/api.token", "--device", "dosecal-hotlab",
            "--stale-after", "\(staleAfter)", "--artifacts", Self.artifacts, "--chromium", chromium,
        ]
        let toPeer = Pipe()
        let fromPeer = Pipe()
        let peerLog = dir + "/peer.log"
        FileManager.default.createFile(atPath: peerLog, contents: nil)
        process.standardInput = toPeer
        process.standardOutput = fromPeer
        process.standardError = FileHandle(forWritingAtPath: peerLog)
        try process.runBoundToTest()
        defer { stopProcess(process) }
        let lines = LineReader(fromPeer.fileHandleForReading)
        var result: JSONValue?
        func reply(_ value: JSONValue) { toPeer.fileHandleForWriting.write(Data((value.jsonText + "\n").utf8)) }
        while let line = await lines.next() {
            guard let message = try? JSONValue.parse(line) else { continue }
            if message["result"] != nil {
                result = message
                break
            }
            switch message["ask"]?.stringValue {
            case "stop-simulator":
                kill(simulator.process.processIdentifier, SIGSTOP)
                reply(["ok": true])
            case "continue-simulator":
                kill(simulator.process.processIdentifier, SIGCONT)
                reply(["ok": true])
            case "qc-csv":
                // No new measurements while the report is compared; the QC service judges
                // everything journaled so far first.
                kill(simulator.process.processIdentifier, SIGSTOP)
                try await waitUntilQCCaughtUp(daemon)
                let csv = dir + "/qc.csv"
                let made = try await runProgram(
                    productsDirectory + "/nmbridge", ["qc", "report", "--socket", daemon.socketPath, "--format", "csv", "--output", csv])
                #expect(made.status == 0, "nmbridge qc report: \(made.stderr)")
                reply(["path": .string(csv)])
            case "stop-daemon":
                #expect(try await daemon.stop() == 0, "\(daemon.log)")
                reply(["ok": true])
            case "start-daemon":
                daemon = try await DaemonProcess.start(directory: dir, config: config)
                let started = try await daemon.allEvents(filter: "&kind=daemon.started").last?.seq ?? 0
                reply(["started_seq": .int(started)])
            default:
                Issue.record("the peer asked for something unknown: \(line)")
                reply(["error": "unknown"])
            }
        }
        process.waitUntilExit()
        let log = (try? String(contentsOfFile: peerLog, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 0, "dashboard_browser.py failed:\n\(log)\ndaemon:\n\(daemon.log.suffix(4000))")
        #expect(result?["result"] == .string("pass"), "\(log)")
        print("dashboard browser figures: \(result?["figures"]?.jsonText ?? "none")")
    }

    func waitUntilQCCaughtUp(_ daemon: DaemonProcess) async throws {
        for _ in 0..<600 {
            let health = try JSONValue.parse(try await daemon.client.get("/v1/health").text)
            if health["qc"]?["behind_events"]?.intValue == 0 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DaemonFailed(message: "the QC service did not catch up\n\(daemon.log)")
    }
}

/// Lines from a pipe, read on a thread of their own (a blocking read would hold one of
/// the cooperative pool's two threads).
final class LineReader: @unchecked Sendable {
    // `buffer`, `ended` and `waiters` are guarded by `lock`.
    private let lock = NSLock()
    private var buffer: [String] = []
    private var ended = false
    private var waiters: [CheckedContinuation<String?, Never>] = []

    init(_ handle: FileHandle) {
        Thread { [self] in
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending += chunk
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending = Data(pending[(newline + 1)...])
                    deliver(line)
                }
            }
            lock.lock()
            ended = true
            let waiting = waiters
            waiters = []
            lock.unlock()
            for waiter in waiting { waiter.resume(returning: nil) }
        }.start()
    }

    private func deliver(_ line: String) {
        lock.lock()
        if !waiters.isEmpty {
            let waiter = waiters.removeFirst()
            lock.unlock()
            waiter.resume(returning: line)
            return
        }
        buffer.append(line)
        lock.unlock()
    }

    /// The next line; nil once the pipe is closed and every line was read.
    func next() async -> String? {
        await withCheckedContinuation { continuation in
            lock.lock()
            if !buffer.isEmpty {
                let line = buffer.removeFirst()
                lock.unlock()
                continuation.resume(returning: line)
            } else if ended {
                lock.unlock()
                continuation.resume(returning: nil)
            } else {
                waiters.append(continuation)
                lock.unlock()
            }
        }
    }
}
