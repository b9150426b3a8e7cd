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
        // systemd-socket-activate starts the daemon when the first connection arrives.
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
}
