import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// What an outside probe found (issue 20), each against a real nmbridged.
@Suite struct HardeningIntegrationTests {
    /// A missing token file or a short token passed `config check`; the daemon then
    /// created journal.db and exited 1. Both now stop at the configuration (exit 2),
    /// before anything touches the state directory.
    @Test(arguments: ["missing", "short"])
    func unusableTokensAreConfigurationErrorsBeforeTheStateDirectoryIsTouched(problem: String) async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = dir + "/state"
        let token = dir + "/api.token"
        if problem == "short" { try "short-token\n".write(toFile: token, atomically: true, encoding: .utf8) }
        let port = try freeTCPPort()
        let config = daemonConfig(state).replacingOccurrences(
            of: "[supervisor]", with: "tcp = \"127.0.0.1:\(port)\"\ntoken_file = \"\(token)\"\n\n[supervisor]")
        let path = dir + "/nmbridge.toml"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let check = try await runProgram(productsDirectory + "/nmbridge", ["config", "check", path])
        #expect(check.status == 2, "\(check.stdout)\(check.stderr)")
        let expected = problem == "missing" ? "api.token_file: cannot read \(token)" : "api.token_file: the token in \(token) has 11 characters"
        #expect((check.stdout + check.stderr).contains(expected), "\(check.stdout)\(check.stderr)")
        let daemon = try await runProgram(productsDirectory + "/nmbridged", ["--config", path])
        #expect(daemon.status == 2, "\(daemon.stderr)")
        #expect(daemon.stderr.contains(expected), "\(daemon.stderr)")
        #expect(!FileManager.default.fileExists(atPath: state + "/journal.db"), "nothing created")
    }

    /// Started with umask 022 (outside systemd), the journal and its WAL were 0644 and
    /// readable by every user; they hold patient names.
    @Test func stateFilesAreNotReadableByOthersWhateverTheUmask() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/nmbridge.toml"
        try daemonConfig(dir, extra: "[dicom]\nport = \(try freeTCPPort())\naccept_any_calling_ae = true\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(
            directory: dir, arguments: ["--config", path], launcher: ["/bin/sh", "-c", "umask 022; \"$@\"; exit $?", "sh"])
        try await daemon.waitUntilReady()
        _ = try await daemon.waitForEvents { !$0.isEmpty }
        for file in ["journal.db", "journal.db-wal", "journal.db-shm", "journal.db.lock"] {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: dir + "/" + file)[.posixPermissions] as? Int)
            #expect(mode & 0o007 == 0, "\(file) is \(String(mode, radix: 8))")
        }
        let journal = try #require(try FileManager.default.attributesOfItem(atPath: dir + "/journal.db")[.posixPermissions] as? Int)
        #expect(journal == 0o640)
        _ = try await runProgram("/usr/bin/pkill", ["-TERM", "-f", "^\(productsDirectory)/nmbridged --config \(dir)/"])
        #expect(try await daemon.waitForExit() == 0)
    }

    /// A calling AE title `ESC]0;pwned BEL` was journaled raw and printed raw by
    /// `nmbridge tail`, retitling (or, with `ESC[2J`, clearing) the engineer's terminal.
    /// The title is refused and journaled escaped; tail's terminal format escapes whatever
    /// a device or peer says. Run through script(1), so that tail sees a terminal.
    @Test func tailOnATerminalShowsWhatPeersSendWithoutObeyingIt() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try freeTCPPort()
        let daemon = try await DaemonProcess.start(
            directory: dir, config: daemonConfig(dir, extra: "[dicom]\nport = \(port)\naccept_any_calling_ae = true\n"))
        let answer = try await runProgram(
            testPython, [repositoryRoot + "/Tests/Peers/dicom_raw.py", "associate", "127.0.0.1", "\(port)", "NMBRIDGE", "1b5d303b70776e6564071b5b324a"])
        #expect(answer.stdout.contains("\"reject\""), "\(answer.stdout)\(answer.stderr)")
        _ = try await daemon.waitForEvents { $0.contains { $0.kind == "dicom.association.rejected" } }
        let tail = "\(productsDirectory)/nmbridge --socket \(daemon.socketPath) tail -n 20"
        let shown = try await runProgram(
            "/usr/bin/script", ["-qec", tail, "/dev/null"], environment: ["NO_COLOR": "1", "TERM": "dumb", "PATH": "/usr/bin:/bin"])
        #expect(shown.status == 0, "\(shown.stdout)\(shown.stderr)")
        #expect(shown.stdout.contains("dicom.association.rejected"), "\(shown.stdout)")
        #expect(shown.stdout.contains("\\x1B]0;pwned\\x07\\x1B[2J"), "the title, escaped: \(shown.stdout)")
        let controls = shown.stdout.unicodeScalars.filter { $0.value < 0x20 && $0 != "\n" && $0 != "\r" }
        #expect(controls.isEmpty, "no control character reaches the terminal: \(controls.map(\.value))")
        #expect(try await daemon.stop() == 0)
    }

    /// After a crash, an instance put in place whose event was never journaled, a partial
    /// transfer and a half-written pending-studies file were left; nothing looked at them.
    /// At start the instance is journaled (recovered = true; its sender never heard
    /// success), the rest removed, and a second start changes nothing.
    @Test func leftoversOfACrashAreReconciledAtStart() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let storage = dir + "/dicom"
        let incoming = storage + "/.incoming"
        try FileManager.default.createDirectory(atPath: incoming, withIntermediateDirectories: true)
        let study = "1.2.826.0.1.3680043.9.7433.5.1"
        let series = "1.2.826.0.1.3680043.9.7433.5.2"
        let instance = "1.2.826.0.1.3680043.9.7433.5.3"
        let made = try await runProgram(
            testPython, [repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-nm", dir + "/nm.dcm", "--study-uid", study, "--instance-uid", instance,
                         "--series-uid", series])
        #expect(made.status == 0, "\(made.stderr)")
        // The state a crash between putting the file in place and journaling it leaves.
        let target = "\(storage)/\(study)/\(series)/\(instance).dcm"
        try FileManager.default.createDirectory(atPath: "\(storage)/\(study)/\(series)", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: dir + "/nm.dcm", toPath: target)
        #expect(link(target, incoming + "/0001.part") == 0)
        try Data(repeating: 0x55, count: 1000).write(to: URL(fileURLWithPath: incoming + "/0002.part"))
        try Data("{\"half".utf8).write(to: URL(fileURLWithPath: storage + "/.studies.json.tmp"))
        let sha = try await runProgram("/usr/bin/sha256sum", [target]).stdout.prefix(64)

        let config = daemonConfig(dir, extra: "[dicom]\nport = \(try freeTCPPort())\naccept_any_calling_ae = true\n")
        var daemon = try await DaemonProcess.start(directory: dir, config: config)
        let events = try await daemon.waitForEvents { $0.contains { $0.kind == "dicom.storage.recovered" } }
        let recovered = try #require(events.first { $0.kind == "dicom.storage.recovered" })
        #expect(recovered.data["recovered_instances"] == .int(1))
        #expect(recovered.data["removed_partial"] == .int(1))
        #expect(recovered.data["removed_bytes"] == .int(1000))
        let stored = events.filter { $0.kind == "dicom.instance.stored" }
        #expect(stored.count == 1)
        #expect(stored.first?.data["recovered"] == .bool(true))
        #expect(stored.first?.data["path"] == .string(target))
        #expect(stored.first?.data["sha256"] == .string(String(sha)))
        #expect(stored.first?.data["sop_instance_uid"] == .string(instance))
        #expect(try FileManager.default.contentsOfDirectory(atPath: incoming).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: storage + "/.studies.json.tmp"))
        #expect(try await daemon.stop() == 0)

        // A crash between the event and dropping the .incoming name: nothing is journaled twice.
        #expect(link(target, incoming + "/0003.part") == 0)
        daemon = try await DaemonProcess.start(directory: dir, config: config)
        let again = try await daemon.waitForEvents { $0.filter { $0.kind == "dicom.storage.recovered" }.count == 2 }
        #expect(again.last { $0.kind == "dicom.storage.recovered" }?.data["already_journaled"] == .int(1))
        #expect(again.filter { $0.kind == "dicom.instance.stored" }.count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: incoming).isEmpty)
        #expect(try await daemon.stop() == 0)
    }

    /// On a full disk, stores failed with 0xA700 but left empty `.part` files for good,
    /// and neither the failed stores nor their associations reached the journal once
    /// space returned. Now nothing stays behind and the events arrive late, in order.
    @Test func aFullDiskLosesNoRecordOfWhatFailed() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let disk = try await SmallDisk.mount(under: dir, size: "16m") else { return }
        defer { withExtendedLifetime(disk) {} }  // mounted until the test ends
        let state = disk.path
        let port = try freeTCPPort()
        var config = daemonConfig(state, extra: "[dicom]\nport = \(port)\naccept_any_calling_ae = true\n")
        config = config.replacingOccurrences(of: "socket = \"\(state)/api.sock\"", with: "socket = \"\(dir)/api.sock\"")
        try config.write(toFile: dir + "/nmbridge.toml", atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(directory: dir, arguments: ["--config", dir + "/nmbridge.toml"])
        try await daemon.waitUntilReady(dicom: true)
        let image = dir + "/nm.dcm"
        #expect(try await runProgram(testPython, [repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-nm", image]).status == 0)
        _ = try await runProgram("/bin/dd", ["if=/dev/zero", "of=\(state)/filler", "bs=64k", "count=1000"])
        let sent = try await runProgram(
            "/usr/bin/storescu", ["-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)", image], environment: ["TCP_NODELAY": "1"])
        #expect(sent.status != 0 || sent.stderr.contains("OutOfResources") || sent.stdout.contains("OutOfResources"), "\(sent.stdout)\(sent.stderr)")
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: state + "/dicom/.incoming")) ?? []).filter { !$0.hasSuffix(".ready") }
        #expect(leftovers.isEmpty, "no partial file stays: \(leftovers)")
        try FileManager.default.removeItem(atPath: state + "/filler")
        let events = try await daemon.waitForEvents(timeout: .seconds(60)) { events in
            events.contains { $0.kind == "dicom.instance.failed" } && events.contains { $0.kind == "dicom.association.released" }
        }
        let failed = try #require(events.first { $0.kind == "dicom.instance.failed" })
        #expect(failed.data["status"] == .string("0xA700"))
        #expect(events.contains { $0.kind == "dicom.association.accepted" })
        #expect(events.map(\.seq) == Array(1...Int64(events.count)), "no gap")
        #expect(try await daemon.stop() == 0)
    }
}
