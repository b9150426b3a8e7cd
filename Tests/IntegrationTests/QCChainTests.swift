import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// The whole chain through separate processes: a dose calibrator simulator on a pty, the
/// daemon with the QC service, pydicom writing an NM image and DCMTK's storescu sending
/// it. Constancy → patient dose → injection → NM study → reconciliation, with a kill -9
/// in the middle.
@Suite struct QCChainTests {
    static func dicomDateTime(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMddHHmmss"
        return formatter.string(from: date)
    }

    @Test func constancyDoseInjectionStudyReconciliationAcrossAKill() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            empty for 2s
            show Cs-137 6.60 MBq for 4s
            empty for 3s
            show Tc-99m 740 MBq for 4s
            empty for 3600s
            """.write(toFile: dir + "/session.sim", atomically: true, encoding: .utf8)
        let simulator = try SimulatorProcess(model: "crc35r", link: dir + "/dosecal.tty", script: dir + "/session.sim")
        defer { simulator.stop() }
        try await simulator.waitForLink(dir + "/dosecal.tty")
        let port = try freeTCPPort()
        let config = daemonConfig(
            dir,
            devices: """
                [[device]]
                id = "dosecal-hotlab"
                driver = "capintec-crc35r"
                path = "dosecal.tty"
                poll_ms = 250
                """,
            extra: """
                [dicom]
                port = \(port)
                accept_any_calling_ae = true
                stable_after_s = 1

                \(qcWithCheckSource(device: "dosecal-hotlab", readsTodayBq: 6.60e6, certifiedDaysAgo: 400))
                """)
        var daemon = try await DaemonProcess.start(directory: dir, config: config)
        defer { daemon.signal(SIGKILL) }
        let events = try await daemon.waitForEvents(timeout: .seconds(90)) { events in
            events.contains { $0.kind == "dosecal.measurement" && $0.data["nuclide"] == .string("Tc-99m") }
        }
        let check = try #require(events.first { $0.kind == "dosecal.measurement" && $0.data["nuclide"] == .string("Cs-137") })
        let syringe = try #require(events.first { $0.kind == "dosecal.measurement" && $0.data["nuclide"] == .string("Tc-99m") })

        // kill -9 right after the patient dose: the QC cursor file may lag the findings.
        daemon.signal(SIGKILL)
        try await daemon.waitForExit()
        daemon = try await DaemonProcess.start(directory: dir, config: config)

        // Injected 2 min after the measurement; the header holds what was left by then.
        let injection = syringe.time.addingTimeInterval(120)
        let headerMBq = 740 * Radionuclide.named("Tc-99m")!.decay(1, over: 120)
        let file = dir + "/nm.dcm"
        let made = try await runProgram(
            testPython,
            [
                repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-nm", file, "--dose", String(format: "%.2f", headerMBq),
                "--start-datetime", Self.dicomDateTime(injection) + "+0000", "--acquisition",
                Self.dicomDateTime(injection.addingTimeInterval(3 * 3600)), "--timezone-offset", "+0000",
            ])
        #expect(made.status == 0, "\(made.stderr)")
        let sent = try await runProgram("/usr/bin/storescu", ["-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)", file])
        #expect(sent.status == 0, "storescu: \(sent.stdout)\(sent.stderr)\n\(daemon.log)")

        let all = try await daemon.waitForEvents(timeout: .seconds(90)) { events in
            events.contains { $0.kind == "qc.protocol.energy_window" }
        }
        let qc = all.filter { $0.kind.hasPrefix("qc.") }
        let stored = try #require(all.first { $0.kind == "dicom.instance.stored" })
        // The study is judged when the receiver reports it stable (docs/qc.md, "Studies").
        let stable = try #require(all.first { $0.kind == "dicom.study.stable" })
        #expect(qc.map(\.kind) == ["qc.dosecal.constancy", "qc.administration.reconciled", "qc.protocol.uptake_delay", "qc.protocol.energy_window"])
        #expect(qc.map { $0.data["source_seq"]?.intValue } == [check.seq, stable.seq, stable.seq, stable.seq])
        #expect(qc.dropFirst().allSatisfy { $0.data["instance_seq"]?.intValue == stored.seq && $0.data["role"] == .string("primary") })
        let constancy = try #require(qc.first)
        #expect(constancy.data["result"] == .string("pass"), "\(constancy.dataJSON)")
        let reconciled = try #require(qc.first { $0.kind == "qc.administration.reconciled" })
        #expect(reconciled.data["result"] == .string("pass"), "\(reconciled.dataJSON)")
        // The daemon may read the syringe again after its restart (still in the chamber):
        // the latest measurement before the injection is the one matched.
        let syringes = all.filter { $0.kind == "dosecal.measurement" && $0.data["nuclide"] == .string("Tc-99m") }
        #expect(reconciled.data["measurement_seq"]?.intValue == syringes.last?.seq)
        #expect(reconciled.data["candidates"]?.intValue == Int64(syringes.count))
        #expect(abs(reconciled.data["deviation_pct"]?.doubleValue ?? 99) < 0.1, "\(reconciled.dataJSON)")
        #expect(reconciled.data["patient_id"] == .string("NMB-0001"))
        #expect(reconciled.device == "dosecal-hotlab")
        #expect(qc.first { $0.kind == "qc.protocol.uptake_delay" }?.data["delay_min"]?.doubleValue == 180)
        #expect(qc.first { $0.kind == "qc.protocol.energy_window" }?.data["result"] == .string("pass"))

        // Its progress, as `nmbridge status` and Prometheus see it.
        let health = try JSONValue.parse(try await daemon.client.get("/v1/health").text)
        #expect(health["qc"]?["findings"]?.intValue ?? 0 >= 3, "\(health)")
        #expect(health["qc"]?["judged_seq"]?.intValue ?? 0 >= stable.seq, "\(health)")
        let metrics = try await daemon.client.get("/metrics").text
        #expect(metrics.contains("nmbridge_qc_findings_total "), "\(metrics)")
        let status = try await runProgram(productsDirectory + "/nmbridge", ["--socket", daemon.socketPath, "status"])
        #expect(status.stdout.contains("qc:       judged through seq"), "\(status.stdout)")

        // A graceful restart judges nothing again.
        #expect(try await daemon.stop() == 0)
        daemon = try await DaemonProcess.start(directory: dir, config: config)
        let last = try await daemon.lastSeq()
        for _ in 0..<900 {  // until the service has saved a cursor past everything (a hang guard, 90 s)
            let text = (try? String(contentsOfFile: dir + "/qc-cursor.json", encoding: .utf8)) ?? ""
            if let seq = try? JSONValue.parse(text)["seq"]?.intValue, seq >= stable.seq, try await daemon.lastSeq() >= last { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let again = try await daemon.allEvents().filter { $0.kind.hasPrefix("qc.") }
        #expect(again.map(\.seq) == qc.map(\.seq))
    }
}
