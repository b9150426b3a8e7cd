import Foundation
import TestSupport
import Testing

/// `nmbridged --demo`: its fixed port (DICOM 11112) can be chosen, and 0 picks a free one.
@Suite struct DemoTests {
    /// Two demos side by side with `--dicom-port 0`: each prints the port it got, the two
    /// differ, and DCMTK's echoscu verifies each (the other fixed-port candidate, the gantry
    /// simulator's Modbus TCP port, is always chosen by the system).
    @Test func twoDemosWithDicomPortZeroRunSideBySide() async throws {
        var demos: [(DaemonProcess, String)] = []
        defer {
            for (_, directory) in demos { try? FileManager.default.removeItem(atPath: directory) }
        }
        for name in ["a", "b"] {
            let directory = try temporaryDirectory("demo-\(name)")
            demos.append((try DaemonProcess(directory: directory, arguments: ["--demo", "--state-dir", directory, "--dicom-port", "0"]), directory))
        }
        var ports: [Int] = []
        for (demo, _) in demos {
            try await demo.waitUntilReady()
            let port = try await Self.announcedDicomPort(demo)
            #expect(port != 11112 && port > 0, "\(demo.log)")
            let echo = try await runProgram("/usr/bin/echoscu", ["-to", "30", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)"])
            #expect(echo.status == 0, "echoscu to the demo's port \(port): \(echo.stdout)\(echo.stderr)\n\(demo.log)")
            ports.append(port)
        }
        #expect(Set(ports).count == 2, "both demos announced the same DICOM port: \(ports)")
        for (demo, _) in demos { #expect(try await demo.stop() == 0, "\(demo.log)") }
    }

    /// A taken port is named, with the way out.
    @Test func aTakenDicomPortIsNamed() async throws {
        let first = try temporaryDirectory("demo-first")
        let second = try temporaryDirectory("demo-second")
        defer {
            try? FileManager.default.removeItem(atPath: first)
            try? FileManager.default.removeItem(atPath: second)
        }
        let demo = try DaemonProcess(directory: first, arguments: ["--demo", "--state-dir", first, "--dicom-port", "0"])
        try await demo.waitUntilReady()
        let port = try await Self.announcedDicomPort(demo)
        let clash = try await runProgram(
            productsDirectory + "/nmbridged", ["--demo", "--state-dir", second, "--dicom-port", "\(port)"])
        #expect(clash.status == 1)
        #expect(clash.stderr.contains("the demo's DICOM port \(port) is taken"), "\(clash.stderr)")
        #expect(clash.stderr.contains("--dicom-port 0"), "\(clash.stderr)")
        #expect(try await demo.stop() == 0, "\(demo.log)")
    }

    @Test func dicomPortIsForTheDemoAndInRange() async throws {
        let withConfig = try await runProgram(productsDirectory + "/nmbridged", ["--config", "/nonexistent.toml", "--dicom-port", "104"])
        #expect(withConfig.status == 64)
        #expect(withConfig.stderr.contains("--dicom-port goes with --demo"), "\(withConfig.stderr)")
        let outOfRange = try await runProgram(productsDirectory + "/nmbridged", ["--demo", "--dicom-port", "65536"])
        #expect(outOfRange.status == 64)
        #expect(outOfRange.stderr.contains("--dicom-port must be 0…65535"), "\(outOfRange.stderr)")
    }

    /// The port in the demo's banner ("DICOM: AE NMBRIDGE on port N, …"), printed once the
    /// receiver listens (right after the API answers).
    static func announcedDicomPort(_ demo: DaemonProcess) async throws -> Int {
        for _ in 0..<600 {
            if let range = demo.log.range(of: #"DICOM: AE NMBRIDGE on port [0-9]+"#, options: .regularExpression),
                let port = Int(demo.log[range].split(separator: " ").last ?? "")
            {
                return port
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DaemonFailed(message: "the demo printed no DICOM port:\n\(demo.log)")
    }
}
