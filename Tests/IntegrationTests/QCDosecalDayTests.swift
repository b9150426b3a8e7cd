import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// A hot-lab day through separate processes (docs/qc.md, "Dose calibrator QA"): calibrator
/// simulators on ptys speaking the CRC-35R wire protocol, the daemon with the QC service,
/// and the CLI. Constancy with Cs-137 on the Tc-99m setting, a generator elution with its
/// Mo-99 assay, a patient dose, a linearity series on a second calibrator (compressed to
/// seconds: the decay fit itself is checked by hand-computed cases in QCDosecalRulesTests),
/// and the reviewer's signature. The findings are exactly the expected ones.
@Suite struct QCDosecalDayTests {
    @Test func aHotLabDayInARealDaemon() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Cs-137 reads 6.31 MBq today; on the Tc-99m setting 1.10 × that = 6.941 MBq.
        try """
            empty for 2s
            show Tc-99m 6.94 MBq for 4s
            empty for 3s
            show Mo-99 0.500 MBq for 4s
            empty for 3s
            show Tc-99m 20.0 GBq for 4s
            empty for 3s
            show Tc-99m 740 MBq for 4s
            empty for 3600s
            """.write(toFile: dir + "/hotlab.sim", atomically: true, encoding: .utf8)
        try """
            empty for 2s
            show Tc-99m 30.0 GBq for 4s
            empty for 2s
            show Tc-99m 29.9 GBq for 4s
            empty for 2s
            show Tc-99m 29.8 GBq for 4s
            empty for 3600s
            """.write(toFile: dir + "/vial.sim", atomically: true, encoding: .utf8)
        let hotlab = try SimulatorProcess(model: "crc35r", link: dir + "/hotlab.tty", script: dir + "/hotlab.sim")
        defer { hotlab.stop() }
        try await hotlab.waitForLink(dir + "/hotlab.tty")
        let todayBq = 6.31e6
        let config = daemonConfig(
            dir,
            devices: """
                [[device]]
                id = "dosecal-hotlab"
                driver = "capintec-crc35r"
                path = "hotlab.tty"
                poll_ms = 250
                instrument_model = "CRC-35R"
                instrument_serial = "35R-0815"

                [[device]]
                id = "dosecal-2"
                driver = "capintec-crc35r"
                path = "vial.tty"
                poll_ms = 250
                """,
            extra: """
                \(qcWithCheckSource(device: "dosecal-hotlab", readsTodayBq: todayBq, certifiedDaysAgo: 400))
                [[qc.check_source.reading]]
                setting = "Tc-99m"
                factor = 1.10
                [qc.dosecal]
                linearity_min_readings = 3
                """)
        let daemon = try await DaemonProcess.start(directory: dir, config: config)
        defer { daemon.signal(SIGKILL) }
        let cli = productsDirectory + "/nmbridge"
        let socket = ["--socket", daemon.socketPath]

        // The linearity test on the second calibrator starts before its vial is in the chamber.
        let started = try await runProgram(cli, socket + ["qc", "linearity", "start", "dosecal-2"])
        #expect(started.status == 0, "\(started.stderr)")
        let vial = try SimulatorProcess(model: "crc35r", link: dir + "/vial.tty", script: dir + "/vial.sim")
        defer { vial.stop() }

        _ = try await daemon.waitForEvents(timeout: .seconds(120)) { events in
            events.filter { $0.kind == "dosecal.measurement" && $0.device == "dosecal-2" }.count >= 3
                && events.contains { $0.kind == "dosecal.measurement" && $0.data["activity_bq"]?.doubleValue == 740e6 }
        }
        let finished = try await runProgram(cli, socket + ["qc", "linearity", "finish", "dosecal-2"])
        #expect(finished.status == 0, "\(finished.stderr)")
        let signed = try await runProgram(cli, socket + ["qc", "sign", "--comment", "all in order"])
        #expect(signed.status == 0 && signed.stdout.contains("as \(NSUserName())"), "\(signed.stdout) \(signed.stderr)")
        let events = try await daemon.waitForEvents(timeout: .seconds(60)) { events in
            events.contains { $0.kind == "qc.dosecal.linearity" }
        }
        let measurements = events.filter { $0.kind == "dosecal.measurement" }
        let qc = events.filter { $0.kind.hasPrefix("qc.") && $0.driver == "qc" }
        #expect(qc.map(\.kind) == [
            "qc.dosecal.test_due", "qc.dosecal.test_due", "qc.dosecal.constancy", "qc.generator.mo99", "qc.dosecal.linearity",
        ], "\(qc.map { "\($0.kind) \($0.dataJSON)" })\n\(measurements.map(\.dataJSON))")

        // The records name the instrument.
        let hotlabReadings = measurements.filter { $0.device == "dosecal-hotlab" }
        #expect(hotlabReadings.count == 4 && hotlabReadings.allSatisfy { $0.data["instrument_serial"] == .string("35R-0815") })
        let constancy = try #require(qc.first { $0.kind == "qc.dosecal.constancy" })
        #expect(constancy.data["setting"] == .string("Tc-99m") && constancy.data["source_nuclide"] == .string("Cs-137"))
        #expect(constancy.data["result"] == .string("pass") && constancy.data["instrument_model"] == .string("CRC-35R"))
        let mo99 = try #require(qc.first { $0.kind == "qc.generator.mo99" })
        // 0.5 MBq Mo-99 / 20 GBq Tc-99m = 0.025 kBq/MBq, × 3.52 by the 12 h expiry: pass.
        #expect(mo99.data["result"] == .string("pass"), "\(mo99.dataJSON)")
        #expect(abs((mo99.data["ratio_kbq_per_mbq"]?.doubleValue ?? 0) - 0.025) < 0.0002)
        let linearity = try #require(qc.first { $0.kind == "qc.dosecal.linearity" })
        #expect(linearity.device == "dosecal-2" && linearity.data["result"] == .string("pass"), "\(linearity.dataJSON)")
        // Three vials; a loaded machine may settle one of them twice (a late reply resets settling).
        if case .array(let readings)? = linearity.data["readings"] { #expect((3...4).contains(readings.count)) } else { Issue.record("no readings") }
        let signature = try #require(events.first { $0.kind == "qc.review.signed" })
        #expect(signature.data["signer"] == .string(NSUserName()) && signature.data["via"] == .string("unix"))
        #expect(signature.data["uid"]?.intValue == Int64(getuid()))

        // The day's sheet shows the sections and the signature.
        let report = try await runProgram(cli, socket + ["qc", "report", "--format", "text"])
        #expect(report.status == 0)
        for section in ["Due calibrator tests", "Linearity dosecal-2: PASS", "Mo-99 breakthrough", "signed by \(NSUserName()) (unix)"] {
            #expect(report.stdout.contains(section), "\(section)\n\(report.stdout)")
        }
    }
}
