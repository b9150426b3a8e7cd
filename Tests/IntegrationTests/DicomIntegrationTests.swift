import Foundation
import NMBridgeCore
import Testing

/// The DICOM receiver inside a real nmbridged.
@Suite struct DicomIntegrationTests {
    /// A TCP port nobody listens on right now.
    func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length)
                return getsockname(fd, pointer, &length)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test func theDICOMPortCanComeFromSystemdSocketActivation() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = freePort()
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
