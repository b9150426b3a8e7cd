import Foundation
import NMBridgeCore
import NMClient
import TestSupport
import Testing

@Suite(.serialized) struct DaemonTests {
    @Test func brokenConfigurationListsEveryProblemWithKeyAndLineAndStartsNothing() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = """
            [daemon]
            state_dir = "\(dir)/state"
            time_zone = "Mars/Olympus"

            [journal]
            sync = "sometimes"
            retention_dayz = 30

            [[device]]
            id = "dosecal hotlab"
            driver = "capintec-crc15"

            [[device]]
            id = "gantry-1"
            driver = "script"
            stale_after_s = "soon"
            """
        let path = dir + "/bad.toml"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try await runProgram(productsDirectory + "/nmbridged", ["--config", path])
        #expect(result.status == 2)
        let expected = [
            "\(path):3: daemon.time_zone:", "\(path):6: journal.sync: \"sometimes\" is not one of",
            "\(path):7: journal.retention_dayz: unknown key (did you mean \"retention_days\"?)",
            "\(path):10: device[dosecal hotlab].id:", "\(path):11: device[dosecal hotlab].driver: unknown driver \"capintec-crc15\"",
            "\(path):16: device[gantry-1].stale_after_s: expected a number, found string",
            "device[gantry-1]: the script driver needs script",
        ]
        for line in expected {
            #expect(result.stderr.contains(line), "missing \(line) in:\n\(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/state"), "nothing was started or created")

        // `nmbridge config check` reports the same, with the same exit code.
        let check = try await runProgram(productsDirectory + "/nmbridge", ["config", "check", path])
        #expect(check.status == 2)
        #expect(check.stderr.contains("\(path):6: journal.sync"))

        // Syntax errors too: all of them, with lines.
        try "[daemon\nnode = \"a\"\n[journal]\nsync = \"full\nretention_days = 3\n".write(toFile: path, atomically: true, encoding: .utf8)
        let syntax = try await runProgram(productsDirectory + "/nmbridged", ["--config", path])
        #expect(syntax.status == 2)
        #expect(syntax.stderr.contains("\(path):1:"), "\(syntax.stderr)")
        #expect(syntax.stderr.contains("\(path):4:"), "\(syntax.stderr)")
    }

    @Test func unusableJournalIsAClearErrorAndNeverReplaced() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "not a journal".write(toFile: dir + "/journal.db", atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(directory: dir, arguments: ["--config", dir + "/nmbridge.toml"])
        _ = daemon  // the config file does not exist yet: exit 2
        #expect(try await daemon.waitForExit() == 2)
        try daemonConfig(dir).write(toFile: dir + "/nmbridge.toml", atomically: true, encoding: .utf8)
        let second = try DaemonProcess(directory: dir, arguments: ["--config", dir + "/nmbridge.toml"])
        #expect(try await second.waitForExit() == 1)
        #expect(second.log.contains("\(dir)/journal.db is not an SQLite database"), "\(second.log)")
        #expect(try String(contentsOfFile: dir + "/journal.db", encoding: .utf8) == "not a journal")
    }

    @Test func killDashNineNeverLosesAnAcknowledgedEventNorLeavesAGap() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try fastScript.write(toFile: dir + "/fast.script", atomically: true, encoding: .utf8)
        let config = daemonConfig(
            dir, devices: "[[device]]\nid = \"fast-1\"\ndriver = \"script\"\nscript = \"\(dir)/fast.script\"\n")
        var acknowledged: [Int64: String] = [:]
        var journalID: String?
        for round in 0..<5 {
            let daemon = try await DaemonProcess.start(directory: dir, config: config)
            // Events reach subscribers only after their commit: what a subscriber saw was acknowledged.
            let stream = try await daemon.client.stream("/v1/events/stream?after=\(acknowledged.keys.max() ?? 0)")
            let reader = Task {
                var seen: [(Int64, String)] = []
                do {
                    for try await message in stream {
                        if let id = message.id, let seq = Int64(id) { seen.append((seq, message.data)) }
                    }
                } catch {}
                return seen
            }
            try await Task.sleep(for: .milliseconds(300 + 150 * round))
            daemon.signal(SIGKILL)
            try await daemon.waitForExit()
            for (seq, data) in await reader.value { acknowledged[seq] = data }
            if journalID == nil, let data = acknowledged.values.first { journalID = try Event(json: data).journal.uuidString }
        }
        #expect(acknowledged.count > 50, "the test appended something: \(acknowledged.count)")
        let daemon = try await DaemonProcess.start(directory: dir, config: config)
        let events = try await daemon.allEvents()
        #expect(try await daemon.stop() == 0)
        #expect(events.map(\.seq) == Array(1...Int64(events.count)), "no gaps, no duplicates")
        #expect(Set(events.map(\.journal.uuidString)) == [journalID!], "one journal id across every restart")
        let bySeq = Dictionary(uniqueKeysWithValues: events.map { ($0.seq, $0) })
        for (seq, data) in acknowledged {
            #expect(bySeq[seq]?.jsonText == (try Event(json: data)).jsonText, "acknowledged event \(seq) survived unchanged")
        }
    }

    @Test func supervisorRestartsACrashingDriverAndTheWatchdogReportsStaleness() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            link up "flaky"
            emit experimental.ping {"n": 1}
            wait 1.0
            emit experimental.ping {"n": 2}
            fail "simulated firmware hang"
            """.write(toFile: dir + "/flaky.script", atomically: true, encoding: .utf8)
        try fastScript.write(toFile: dir + "/fast.script", atomically: true, encoding: .utf8)
        let config = daemonConfig(
            dir,
            devices: """
                [[device]]
                id = "flaky-1"
                driver = "script"
                script = "flaky.script"
                stale_after_s = 0.4

                [[device]]
                id = "steady-1"
                driver = "script"
                script = "fast.script"
                """)
        let daemon = try await DaemonProcess.start(directory: dir, config: config)
        let events = try await daemon.waitForEvents { events in
            events.filter { $0.kind == "driver.restarted" && $0.device == "flaky-1" }.count >= 2
        }
        let flaky = events.filter { $0.device == "flaky-1" }.map(\.kind)
        // Connected, first ping, silent for 1 s (> 0.4 s): stale, recovered by the second ping, crash, restart.
        let firstCycle = Array(flaky.prefix(8))
        #expect(
            firstCycle == [
                "device.connected", "experimental.ping", "device.stale", "device.recovered", "experimental.ping",
                "device.disconnected", "driver.crashed", "driver.restarted",
            ], "\(flaky)")
        let crashes = events.filter { $0.kind == "driver.crashed" }
        #expect(crashes.first?.data["error"]?.stringValue?.contains("simulated firmware hang") == true)
        #expect(crashes.first?.data["attempt"] == .int(1))
        #expect(crashes.dropFirst().first?.data["attempt"] == .int(2))
        #expect(crashes.first?.data["restart_in_s"] == .double(0.1))
        #expect(crashes.dropFirst().first?.data["restart_in_s"] == .double(0.2), "back-off doubles")
        // The other device never stopped.
        let steady = events.filter { $0.device == "steady-1" && $0.kind == "experimental.load" }
        #expect(steady.count > 100)
        let devices = try JSONValue.parse(try await daemon.client.get("/v1/devices").text)
        guard case .array(let list)? = devices["devices"] else { Issue.record("no devices"); return }
        let flakyStatus = list.first { $0["id"] == .string("flaky-1") }
        #expect((flakyStatus?["restarts"]?.intValue ?? 0) >= 2)
        #expect(flakyStatus?["last_error"]?.stringValue?.contains("simulated firmware hang") == true)
        #expect(try await daemon.stop() == 0)
    }

    @Test func runsWithNoDevicesAndRetentionOff() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = daemonConfig(dir).replacingOccurrences(of: "sync = \"full\"", with: "sync = \"full\"\nretention_days = 0\nmax_size_mb = 0")
        let daemon = try await DaemonProcess.start(directory: dir, config: config)
        try await Task.sleep(for: .seconds(1))
        #expect(daemon.process.isRunning, "nothing to supervise and nothing to delete is not a reason to exit:\n\(daemon.log)")
        #expect(try await daemon.stop() == 0)
    }

    @Test func gracefulShutdownNotifiesSystemdAndEndsStreams() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let notify = try NotifySocket(path: dir + "/notify.sock")
        try fastScript.write(toFile: dir + "/fast.script", atomically: true, encoding: .utf8)
        let daemon = try await DaemonProcess.start(
            directory: dir,
            config: daemonConfig(dir, devices: "[[device]]\nid = \"fast-1\"\ndriver = \"script\"\nscript = \"fast.script\"\n"),
            environment: ["NOTIFY_SOCKET": dir + "/notify.sock", "WATCHDOG_USEC": "200000"])
        let stream = try await daemon.client.stream("/v1/events/stream")
        let reader = Task {
            var count = 0
            for try await _ in stream { count += 1 }
            return count
        }
        try await Task.sleep(for: .milliseconds(400))
        #expect(try await daemon.stop() == 0)
        #expect(try await reader.value > 0, "the live stream ended when the daemon stopped")
        let messages = notify.receiveAll()
        let ready = messages.firstIndex { $0.hasPrefix("READY=1") }
        #expect(ready != nil && ready! < (messages.firstIndex(of: "STOPPING=1") ?? -1), "\(messages)")
        #expect(messages.filter { $0 == "WATCHDOG=1" }.count >= 2, "pings at half of WATCHDOG_USEC: \(messages)")
        #expect(messages.contains("STOPPING=1"))
        let db = try await runProgram("/usr/bin/sqlite3", ["-readonly", dir + "/journal.db", "SELECT kind FROM events WHERE device IS NULL ORDER BY seq"])
        #expect(db.stdout == "daemon.started\ndaemon.stopping\n")
    }

    @Test func diskFullFailsAppendsKeepsServingReadsAndRecovers() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let disk = try await SmallDisk.mount(under: dir, size: "32m") else { return }
        defer { withExtendedLifetime(disk) {} }  // mounted until the test ends
        let state = disk.path
        // 100 events/s: enough to hit the full disk at once, little enough to read back quickly.
        try fastScript.replacingOccurrences(of: "wait 0.002", with: "wait 0.01").write(toFile: dir + "/fast.script", atomically: true, encoding: .utf8)
        var config = daemonConfig(state, devices: "[[device]]\nid = \"fast-1\"\ndriver = \"script\"\nscript = \"\(dir)/fast.script\"\n")
        config = config.replacingOccurrences(of: "socket = \"\(state)/api.sock\"", with: "socket = \"\(dir)/api.sock\"")
        try config.write(toFile: dir + "/nmbridge.toml", atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(directory: dir, arguments: ["--config", dir + "/nmbridge.toml"])
        try await daemon.waitUntilReady()
        _ = try await waitFor { try await daemon.lastSeq() > 20 ? true : nil }
        // Fill the file system.
        _ = try await runProgram("/bin/dd", ["if=/dev/zero", "of=\(state)/filler", "bs=64k", "count=1000"])
        let degraded = try await waitFor {
            let r = try await daemon.client.get("/v1/health")
            return r.status == 503 ? r : nil
        }
        #expect(degraded.text.contains("\"status\":\"degraded\""))
        #expect(degraded.text.contains("cannot append to journal"), "\(degraded.text)")
        // Reads still work while appends fail.
        let before = try await daemon.allEvents()
        #expect(!before.isEmpty)
        #expect(daemon.process.isRunning)
        // Free the space: appends resume, seq continues without a gap.
        try FileManager.default.removeItem(atPath: state + "/filler")
        _ = try await waitFor {
            let r = try await daemon.client.get("/v1/health")
            return r.status == 200 ? r : nil
        }
        let target = Int64(before.count + 20)
        _ = try await waitFor { try await daemon.lastSeq() > target ? true : nil }
        let after = try await daemon.allEvents()
        #expect(after.map(\.seq) == Array(1...Int64(after.count)))
        #expect(after.contains { $0.kind == "driver.restarted" }, "the driver whose emit failed was restarted")
        #expect(try await daemon.stop() == 0)
    }
    /// A live-stream client that stops reading (its socket buffers full) must not keep
    /// the daemon from stopping: graceful shutdown escalates to cancellation after
    /// `Daemon.gracefulShutdownLimit` (10 s).
    @Test func aClientThatStopsReadingDoesNotBlockShutdown() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try fastScript.write(toFile: dir + "/fast.script", atomically: true, encoding: .utf8)
        let daemon = try await DaemonProcess.start(
            directory: dir, config: daemonConfig(dir, devices: "[[device]]\nid = \"fast-1\"\ndriver = \"script\"\nscript = \"fast.script\"\n"))
        // socat writes the stream to a pipe nobody reads: the pipe, then socat's socket
        // buffer, then the daemon's fill up.
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/socat")
        client.arguments = ["-", "UNIX-CONNECT:\(daemon.socketPath)"]
        let input = Pipe()
        let unread = Pipe()
        client.standardInput = input
        client.standardOutput = unread
        client.standardError = FileHandle.nullDevice
        try client.runBoundToTest()
        defer { stopProcess(client) }
        input.fileHandleForWriting.write(Data("GET /v1/events/stream?after=0 HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        try await Task.sleep(for: .seconds(3))
        daemon.signal(SIGTERM)
        // Generous: this checks that it stops at all, not how fast.
        let status = try await daemon.waitForExit(timeout: .seconds(60))
        #expect(status == 0)
    }
}

/// Polls `body` until it returns a value (20 s at most).
func waitFor<T>(_ body: () async throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + .seconds(20)
    while ContinuousClock.now < deadline {
        if let value = try await body() { return value }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw DaemonFailed(message: "condition not met within 20 s")
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`.
final class NotifySocket {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, b) in path.utf8.enumerated() { buffer[i] = b }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw DaemonFailed(message: "cannot bind \(path)") }
        _ = fcntl(fd, F_SETFL, O_NONBLOCK)
    }

    func receiveAll() -> [String] {
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { return messages }
            messages.append(String(decoding: buffer[0..<n], as: UTF8.self))
        }
    }

    deinit { close(fd) }

}
