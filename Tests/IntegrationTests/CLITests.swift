import Foundation
import NMBridgeCore
import TestSupport
import Testing

@Suite(.serialized) struct CLITests {
    let cli = productsDirectory + "/nmbridge"

    @Test func tailFollowSurvivesADaemonRestartAndResumesFromItsCursorFile() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try fastScript.replacingOccurrences(of: "wait 0.002", with: "wait 0.02").write(toFile: dir + "/fast.script", atomically: true, encoding: .utf8)
        let config = daemonConfig(dir, devices: "[[device]]\nid = \"fast-1\"\ndriver = \"script\"\nscript = \"fast.script\"\n")
        var daemon = try await DaemonProcess.start(directory: dir, config: config)

        let outputPath = dir + "/tail.out"
        FileManager.default.createFile(atPath: outputPath, contents: nil)
        FileManager.default.createFile(atPath: dir + "/tail.err", contents: nil)
        let tail = Process()
        tail.executableURL = URL(fileURLWithPath: cli)
        tail.arguments = ["--socket", daemon.socketPath, "tail", "-f", "-n", "5", "--cursor-file", dir + "/cursor"]
        tail.standardOutput = FileHandle(forWritingAtPath: outputPath)
        tail.standardError = FileHandle(forWritingAtPath: dir + "/tail.err")
        try tail.runBoundToTest()
        defer { if tail.isRunning { tail.terminate() } }

        // Until tail has connected (it writes the cursor file then): on a loaded machine its
        // start can take longer than any fixed pause, and its first request is not retried.
        for _ in 0..<1200 where !FileManager.default.fileExists(atPath: dir + "/cursor") {
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(800))
        #expect(try await daemon.stop() == 0)
        try await Task.sleep(for: .milliseconds(500))
        daemon = try await DaemonProcess.start(directory: dir, config: config)
        // Until tail has reconnected and printed the new daemon's first events.
        for _ in 0..<400 {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            if text.contains("\"kind\":\"daemon.started\"") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(tail.isRunning, "tail -f keeps running across the restart")
        tail.terminate()
        tail.waitUntilExit()
        // Piped output is JSON Lines: one envelope per line, in seq order, no gap, no repeat.
        let lines = try String(contentsOfFile: outputPath, encoding: .utf8).split(separator: "\n")
        let printed = try lines.map { try Event(json: String($0)) }
        let seqs = printed.map(\.seq)
        #expect(seqs.count > 20, "\(seqs)")
        #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $1 == $0 + 1 }, "contiguous across the restart: \(seqs)")
        let all = try await daemon.allEvents()
        let kinds = all.filter { seqs.contains($0.seq) }.map(\.kind)
        #expect(kinds.contains("daemon.stopping") && kinds.contains("daemon.started"), "it saw the restart itself")
        let stderr = try String(contentsOfFile: dir + "/tail.err", encoding: .utf8)
        #expect(stderr.contains("reconnect"), "\(stderr)")

        // The cursor file holds the last printed seq; a new tail resumes right after it.
        let cursor = try String(contentsOfFile: dir + "/cursor", encoding: .utf8)
        let last = try #require(printed.last, "tail printed nothing")
        #expect(cursor == "\(last.journal.uuidString.lowercased()) \(last.seq)\n")
        let resumed = try await runProgram(cli, ["--socket", daemon.socketPath, "tail", "--cursor-file", dir + "/cursor", "--kind", "experimental.*"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let next = try resumed.stdout.split(separator: "\n").map { try Event(json: String($0)) }
        #expect(next.first.map { $0.seq > last.seq } ?? false)
        #expect(try await daemon.stop() == 0)
    }

    @Test func queryDevicesStatusAndErrors() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try fastScript.write(toFile: dir + "/fast.script", atomically: true, encoding: .utf8)
        let daemon = try await DaemonProcess.start(
            directory: dir, config: daemonConfig(dir, devices: "[[device]]\nid = \"fast-1\"\ndriver = \"script\"\nscript = \"fast.script\"\n"))
        _ = try await daemon.waitForEvents { $0.count > 30 }
        let socket = ["--socket", daemon.socketPath]

        let csv = try await runProgram(cli, socket + ["query", "--format", "csv", "--limit", "12", "--device", "fast-1"])
        #expect(csv.status == 0)
        let rows = csv.stdout.split(separator: "\n")
        #expect(rows.first == "seq,time,node,device,driver,kind,severity,data,raw")
        #expect(rows.count == 13)
        #expect(rows.dropFirst().allSatisfy { $0.contains(",fast-1,script,") })

        let jsonl = try await runProgram(cli, socket + ["query", "--after", "5", "--limit", "3"])
        #expect(try jsonl.stdout.split(separator: "\n").map { try Event(json: String($0)).seq } == [6, 7, 8])

        let devices = try await runProgram(cli, socket + ["devices"])
        #expect(devices.stdout.contains("fast-1") && devices.stdout.contains("up"))
        let status = try await runProgram(cli, ["status"] + socket)
        #expect(status.stdout.contains("status:   ok"), "\(status.stdout)")

        let missing = try await runProgram(cli, ["--socket", dir + "/nope.sock", "status"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains(dir + "/nope.sock"), "\(missing.stderr)")
        let bad = try await runProgram(cli, socket + ["tail", "--since", "whenever"])
        #expect(bad.status != 0 && bad.stderr.contains("--since whenever"))
        #expect(try await daemon.stop() == 0)
    }
}
