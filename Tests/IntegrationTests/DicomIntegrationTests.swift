import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// The DICOM receiver inside a real nmbridged.
@Suite struct DicomIntegrationTests {
    @Test func theDICOMPortCanComeFromSystemdSocketActivation() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try freeTCPPort()
        // [dicom] port 1 would need root: the receiver must use the socket systemd passes.
        let config = daemonConfig(dir, extra: "[dicom]\nport = 1\naccept_any_calling_ae = true\n")
        try config.write(toFile: dir + "/nmbridge.toml", atomically: true, encoding: .utf8)
        // systemd-socket-activate execs nmbridged. Foundation's Process takes an exec for an
        // exit and then blocks in waitpid(2), so a shell stays in between as the parent.
        let launch = "/usr/bin/systemd-socket-activate --listen=127.0.0.1:\(port) --fdname=dicom \"$@\"; exit $?"
        let daemon = try DaemonProcess(
            directory: dir, arguments: ["--config", dir + "/nmbridge.toml"], launcher: ["/bin/sh", "-c", launch, "sh"])
        // systemd-socket-activate starts the daemon when the first connection arrives; a
        // connection before it listens is refused (a loaded machine can take seconds).
        for _ in 0..<1200 where !daemon.log.contains("Listening on") { try await Task.sleep(for: .milliseconds(50)) }
        let echo = try await runProgram(
            "/usr/bin/echoscu", ["-to", "60", "-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)"])
        #expect(echo.status == 0, "echoscu: \(echo.stdout)\(echo.stderr)\n\(daemon.log)")
        try await daemon.waitUntilReady()
        let events = try await daemon.waitForEvents { events in events.contains { $0.kind == "dicom.association.released" } }
        #expect(events.contains { $0.kind == "dicom.association.accepted" && $0.device == "dicom-CONSOLE1" })
        #expect(daemon.log.contains("from systemd"), "the receiver used the inherited socket")
        // SIGTERM to nmbridged itself (the shell inherited the test runner's blocked signals).
        _ = try await runProgram("/usr/bin/pkill", ["-TERM", "-f", "^\(productsDirectory)/nmbridged --config \(dir)/"])
        #expect(try await daemon.waitForExit() == 0)
    }

    /// The daemon runs without root and without capabilities (as the systemd unit starts
    /// it). Tests run as root, where a socket option that needs CAP_NET_ADMIN (SO_DEBUG, set
    /// by mistake instead of TCP_NODELAY) succeeded; without it every association was
    /// dropped on accept.
    @Test func anUnprivilegedDaemonAcceptsAssociations() async throws {
        // nobody must reach the folder and the executable: both outside the clone and
        // $TMPDIR, either of which may be a folder only root can enter.
        let dir = "/tmp/nmb-it-unprivileged-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: dir)
        try FileManager.default.copyItem(atPath: productsDirectory + "/nmbridged", toPath: dir + "/nmbridged")
        let port = try freeTCPPort()
        let config = daemonConfig(dir, extra: "[dicom]\nport = \(port)\naccept_any_calling_ae = true\n")
        try config.write(toFile: dir + "/nmbridge.toml", atomically: true, encoding: .utf8)
        // A shell stays the parent, as above; setpriv execs nmbridged as nobody, which drops
        // every capability.
        let launch = "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups \"$@\"; exit $?"
        let daemon = try DaemonProcess(
            directory: dir, arguments: ["--config", dir + "/nmbridge.toml"], launcher: ["/bin/sh", "-c", launch, "sh"],
            daemon: dir + "/nmbridged")
        try await daemon.waitUntilReady(dicom: true)
        let echo = try await runProgram(
            "/usr/bin/echoscu", ["-to", "30", "-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)"])
        #expect(echo.status == 0, "echoscu: \(echo.stdout)\(echo.stderr)\n\(daemon.log)")
        let events = try await daemon.waitForEvents { events in events.contains { $0.kind == "dicom.association.released" } }
        #expect(events.contains { $0.kind == "dicom.association.accepted" && $0.device == "dicom-CONSOLE1" })
        _ = try await runProgram("/usr/bin/pkill", ["-TERM", "-f", "^\(dir)/nmbridged --config \(dir)/"])
        #expect(try await daemon.waitForExit() == 0)
    }
}
