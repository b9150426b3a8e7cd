import Foundation
import NMBridgeCore
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

    /// The demo's simulated camera sends 21 days of two-head floods and today's COR to the
    /// receiver it runs beside (at the port `--dicom-port 0` gave it); the QC service judges
    /// each head of each flood and of the COR, and head 2's drift shows as rising UFOV integral
    /// uniformity. Restarted on the same state directory, the camera sends identical bytes:
    /// the receiver journals them as duplicates and nothing is judged twice.
    @Test func theDemoCamerasFloodsAreJudgedOnceEach() async throws {
        let directory = try temporaryDirectory("demo-camera")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The camera's days end on the day the state directory was first used (here as if
        // that were 2025-11-20), not on the day of each start: a restart after midnight
        // sends the same bytes.
        try "2025-11-20\n".write(toFile: directory + "/demo-camera-day", atomically: true, encoding: .utf8)
        let arguments = ["--demo", "--state-dir", directory, "--dicom-port", "0"]
        let demo = try DaemonProcess(directory: directory, arguments: arguments)
        try await demo.waitUntilReady()
        let events = try await demo.waitForEvents(timeout: .seconds(180)) { events in
            events.filter { $0.kind == "qc.camera.uniformity" }.count >= 42 && events.filter { $0.kind == "qc.camera.cor" }.count >= 2
        }
        let floods = events.filter { $0.kind == "qc.camera.uniformity" }
        let cors = events.filter { $0.kind == "qc.camera.cor" }
        #expect(floods.count == 42, "\(floods.count) uniformity findings for 21 two-head floods")
        #expect(cors.count == 2, "\(cors.count) COR findings for one two-head acquisition")
        #expect(Set(floods.compactMap { $0.data["head"]?.intValue }) == [1, 2])
        #expect(Set((floods + cors).map(\.device)) == ["demo-camera"])
        #expect(floods.allSatisfy { $0.data["result"]?.stringValue != "not_judged" }, "\(floods.map { $0.data["finding"]?.stringValue ?? "" })")
        // Head 2's cold region deepens day by day: its last flood is less uniform than its first.
        let head2 = floods.filter { $0.data["head"]?.intValue == 2 }.compactMap { $0.data["ufov"]?["integral_pct"]?.doubleValue }
        let first = try #require(head2.first), last = try #require(head2.last)
        #expect(head2.count == 21 && last > first, "head 2 UFOV IU over the days: \(head2)")
        let stored = events.filter { $0.kind == "dicom.instance.stored" && $0.device == "dicom-DEMOCAM" }.count
        #expect(stored == 22, "21 floods and one COR acquisition stored, not \(stored)")
        let dates = Set(events.filter { $0.kind == "dicom.instance.stored" && $0.device == "dicom-DEMOCAM" }.compactMap { $0.data["study_date"]?.stringValue })
        #expect(dates.max() == "20251120" && dates.min() == "20251031", "the floods' days: \(dates.sorted())")
        #expect(try await demo.stop() == 0, "\(demo.log)")

        let again = try DaemonProcess(directory: directory, arguments: arguments)
        try await again.waitUntilReady()
        let second = try await again.waitForEvents(timeout: .seconds(180)) { events in
            events.filter { $0.kind == "dicom.instance.stored" && $0.device == "dicom-DEMOCAM" && $0.data["duplicate"] != nil }.count >= stored
        }
        // Once the QC service has judged through the last duplicate, anything it would judge
        // again would be journaled.
        let lastDuplicate = try #require(second.last { $0.kind == "dicom.instance.stored" && $0.data["duplicate"] != nil }?.seq)
        var judged: Int64 = 0
        for _ in 0..<1800 where judged < lastDuplicate {
            let health = try JSONValue.parse(try await again.client.get("/v1/health").text)
            judged = health["qc"]?["judged_seq"]?.intValue ?? 0
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(judged >= lastDuplicate, "the QC service did not reach seq \(lastDuplicate)\n\(again.log)")
        let after = try await again.allEvents()
        #expect(after.filter { $0.kind == "qc.camera.uniformity" }.count == 42, "floods judged again after a restart")
        #expect(after.filter { $0.kind == "qc.camera.cor" }.count == 2)
        #expect(try await again.stop() == 0, "\(again.log)")
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
