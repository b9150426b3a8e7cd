import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// The receiver's write-ahead spool across `kill -9` (issue 14): DCMTK storescu sends a
/// series, the daemon is killed at a random moment, started again. Every instance storescu
/// heard success for must be stored, with the bytes it sent, and journaled exactly once;
/// nothing is journaled twice; an instance journaled without its sender hearing success
/// must be whole. (bench/dicom/crash runs the same for 20 rounds of 400 instances.)
@Suite struct DicomSpoolCrashTests {
    /// What storescu -v says: the files it sent, and those answered success.
    static func acknowledged(_ output: String) -> (sent: [String], acknowledged: Set<String>) {
        var sent: [String] = []
        var acknowledged: Set<String> = []
        var current: String?
        for line in output.split(separator: "\n") {
            if line.hasPrefix("I: Sending file: ") {
                current = String(line.dropFirst("I: Sending file: ".count))
                sent.append(current!)
            } else if line.hasPrefix("I: Received Store Response (Success)"), let file = current {
                acknowledged.insert(file)
            }
        }
        return (sent, acknowledged)
    }

    @Test func everyAcknowledgedInstanceSurvivesKillNine() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let storage = dir + "/dicom"
        let rounds = 3
        let count = 60
        for round in 1...rounds {
            try FileManager.default.createDirectory(atPath: "\(dir)/round\(round)", withIntermediateDirectories: true)
            let made = try await runProgram(
                testPython, [repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-ct-series", "\(dir)/round\(round)", "--count", "\(count)", "--rows", "256"])
            #expect(made.status == 0, "\(made.stderr)")
        }
        let port = try freeTCPPort()
        let config = daemonConfig(dir, extra: "[dicom]\nport = \(port)\naccept_any_calling_ae = true\nspool_mb = 32\n")
        var acknowledgedTotal = 0
        var killedWithTransfersUnfinished = 0
        for round in 1...rounds {
            let daemon = try await DaemonProcess.start(directory: dir, config: config)
            let files = (1...count).map { String(format: "\(dir)/round\(round)/CT%04d.dcm", $0) }
            // storescu runs while the daemon is killed; its output (in a file, read as it
            // grows) says what it was told. The kill comes after a random number of answers,
            // not after a time: on a loaded machine a time could fall before the first one.
            let log = "\(dir)/storescu-\(round).log"
            let arguments = ["-v", "-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)"] + files
            async let sending = runProgram(
                "/bin/sh", ["-c", "exec /usr/bin/storescu \"$@\" >\"$0\" 2>&1", log] + arguments, environment: ["TCP_NODELAY": "1"])
            let answers = Int.random(in: 1..<count)
            for _ in 0..<12_000 {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                if text.components(separatedBy: "Received Store Response").count - 1 >= answers { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            try await Task.sleep(for: .microseconds(Int.random(in: 0...3000)))
            daemon.signal(SIGKILL)
            _ = try await daemon.waitForExit()
            _ = try await sending
            let told = Self.acknowledged((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
            if told.acknowledged.count < count { killedWithTransfersUnfinished += 1 }
            acknowledgedTotal += told.acknowledged.count

            let restarted = try await DaemonProcess.start(directory: dir, config: config)
            // The API answers first; the receiver listens once the spool is recovered.
            var listening = false
            for _ in 0..<600 where !listening {
                listening = try await runProgram("/usr/bin/echoscu", ["-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)"]).status == 0
                if !listening { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(listening, "the receiver listens after recovery\n\(restarted.log)")
            let events = try await restarted.allEvents()
            let storedEvents = events.filter { $0.kind == "dicom.instance.stored" }
            var byUID: [String: [Event]] = [:]
            for event in storedEvents { byUID[event.data["sop_instance_uid"]?.stringValue ?? "", default: []].append(event) }
            #expect(byUID.values.allSatisfy { $0.count == 1 }, "no instance journaled twice: \(byUID.filter { $0.value.count > 1 }.keys)")
            let checked = try await runProgram(testPython, [repositoryRoot + "/Tests/Peers/dicom_peer.py", "check-stored", storage] + files)
            #expect(checked.status == 0, "\(checked.stderr)")
            for line in checked.stdout.split(separator: "\n") {
                let result = try JSONValue.parse(String(line))
                let file = result["file"]?.stringValue ?? ""
                let uid = result["uid"]?.stringValue ?? ""
                let path = result["path"]?.stringValue ?? ""
                let journaled = byUID[uid] ?? []
                if told.acknowledged.contains(file) {
                    #expect(journaled.count == 1, "round \(round): \(file) was acknowledged and is journaled \(journaled.count) time(s)\n\(restarted.log)")
                }
                // Whatever is journaled (acknowledged or not) is in place, whole, with its SHA-256.
                if let event = journaled.first {
                    #expect(result["exists"] == .bool(true) && result["same"] == .bool(true), "round \(round): \(file) journaled but \(result)")
                    #expect(event.data["path"]?.stringValue == path)
                    let sha = try await runProgram("/usr/bin/sha256sum", [path]).stdout.prefix(64)
                    #expect(event.data["sha256"]?.stringValue == String(sha), "round \(round): \(path) has the bytes its event names")
                }
            }
            #expect(try await restarted.stop() == 0)
        }
        #expect(acknowledgedTotal >= rounds, "storescu was told success for at least one instance a round")
        print("spool crash test: \(rounds) rounds, \(acknowledgedTotal) acknowledged, \(killedWithTransfersUnfinished) killed mid-send")
    }
}
