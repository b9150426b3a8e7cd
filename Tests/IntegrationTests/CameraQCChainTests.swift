import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// Camera QC through separate processes: pydicom writes a two-head multi-frame NM flood,
/// a COR acquisition and patient studies; DCMTK's storescu sends them to the daemon; the QC
/// service reads the stored files and journals qc.camera.* events, checked against the
/// NumPy peer (Tests/Peers/nema_uniformity.py) on the same files.
@Suite struct CameraQCChainTests {
    static let peer = repositoryRoot + "/Tests/Peers/nema_uniformity.py"

    @Test func floodsCORAndMissingQCThroughStorescu() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/storescu"),
            (try? await runProgram(testPython, ["-c", "import numpy, pydicom"]))?.status == 0
        else {
            print("⚠️ SKIPPED: needs DCMTK /usr/bin/storescu and \(testPython) with numpy and pydicom")
            return
        }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try freeTCPPort()
        let config = daemonConfig(
            dir,
            extra: """
                [dicom]
                port = \(port)
                accept_any_calling_ae = true
                stable_after_s = 1

                [qc]
                [[qc.camera]]
                id = "spect-a"
                station_name = "SPECTCT1"
                heads = 2
                """)
        let daemon = try await DaemonProcess.start(directory: dir, config: config)
        defer { daemon.signal(SIGKILL) }

        func make(_ arguments: [String]) async throws {
            let made = try await runProgram(testPython, arguments)
            #expect(made.status == 0, "\(arguments): \(made.stderr)")
        }
        func send(_ file: String) async throws {
            let sent = try await runProgram(
                "/usr/bin/storescu", ["-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)", file], environment: ["TCP_NODELAY": "1"])
            #expect(sent.status == 0, "storescu \(file): \(sent.stdout)\(sent.stderr)\n\(daemon.log.suffix(2000))")
        }
        let dicomPeer = repositoryRoot + "/Tests/Peers/dicom_peer.py"
        // Acquired today: the report fetches findings around the day it is asked for.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone.current
        formatter.dateFormat = "yyyyMMdd"
        let today = formatter.string(from: Date())
        let reportDate = "\(today.prefix(4))-\(today.dropFirst(4).prefix(2))-\(today.suffix(2))"
        let study = ["--acquisition", today + "131500"]
        // A patient study, then a flood whose head 2 has a 10 % cold spot, a second study, a
        // good flood, a third study, and a COR acquisition.
        try await make([dicomPeer, "make-nm", dir + "/study1.dcm"] + study)
        try await make([Self.peer, "make-flood", dir + "/flood-bad.dcm", "--cold", "0.85", "--seed", "3", "--date", today])
        try await make([dicomPeer, "make-nm", dir + "/study2.dcm"] + study)
        try await make([Self.peer, "make-flood", dir + "/flood-good.dcm", "--cold", "1.0", "--seed", "4", "--time", "073000", "--date", today])
        try await make([dicomPeer, "make-nm", dir + "/study3.dcm"] + study)
        try await make([Self.peer, "make-cor", dir + "/cor.dcm", "--rows", "64", "--spacing", "6.8", "--offset", "0.2,-0.7", "--date", today])
        for name in ["study1", "flood-bad", "study2", "flood-good", "study3", "cor"] { try await send(dir + "/\(name).dcm") }

        // Patient studies are judged when stable: wait for the three reconciliations too.
        let events = try await daemon.waitForEvents(timeout: .seconds(120)) { events in
            events.filter { $0.kind == "qc.camera.cor" }.count == 2
                && events.filter { $0.kind == "qc.administration.reconciled" }.count >= 3
                && events.filter { $0.kind == "dicom.study.stable" }.count == 6
        }
        let stored = events.filter { $0.kind == "dicom.instance.stored" }
        #expect(stored.count == 6)
        let floods = events.filter { $0.kind == "qc.camera.uniformity" }
        let missing = events.filter { $0.kind == "qc.camera.qc_missing" }
        #expect(floods.count == 4)
        #expect(floods.map { $0.data["head"]?.intValue } == [1, 2, 1, 2])
        #expect(floods.map { $0.data["result"]?.stringValue } == ["pass", "fail", "pass", "pass"], "\(floods.map(\.dataJSON))")
        // Missing QC for study 1 (no flood yet) and study 2 (head 2 failed); study 3 is covered.
        #expect(missing.map { $0.data["source_seq"]?.intValue } == [stored[0].seq, stored[2].seq])
        #expect(missing.map { $0.data["heads_missing"] } == [.array([.int(1), .int(2)]), .array([.int(2)])])
        #expect(missing.allSatisfy { $0.device == "spect-a" && $0.data["patient_id"] == .string("NMB-0001") })
        // QC acquisitions are not patient studies: reconciliation only for the three studies,
        // and no patient finding at all for the floods' and the COR's stable studies.
        let patientStudies = [stored[0], stored[2], stored[4]].map { $0.data["study_uid"]?.stringValue }
        #expect(events.filter { $0.kind == "qc.administration.reconciled" }.map { $0.data["study_uid"]?.stringValue } == patientStudies)
        let qcStudies = Set([stored[1], stored[3], stored[5]].compactMap { $0.data["study_uid"]?.stringValue })
        let patientFindings = events.filter { $0.kind.hasPrefix("qc.protocol.") || $0.kind.hasPrefix("qc.administration.") }
        #expect(!patientFindings.contains { qcStudies.contains($0.data["study_uid"]?.stringValue ?? "") }, "\(patientFindings.map(\.dataJSON))")

        // The same files through the NumPy peer: the same uniformity (events carry 2 decimals).
        for (file, seq) in [("flood-bad", stored[1].seq), ("flood-good", stored[3].seq)] {
            let run = try await runProgram(testPython, [Self.peer, "dicom", dir + "/\(file).dcm"])
            #expect(run.status == 0, "\(run.stderr)")
            let lines = run.stdout.split(separator: "\n").map { try? JSONValue.parse(String($0)) }
            for line in lines {
                let head = line?["detector"]?.intValue
                let ours = try #require(floods.first { $0.data["source_seq"]?.intValue == seq && $0.data["head"]?.intValue == head })
                for field in ["ufov", "cfov"] {
                    for key in ["integral_pct", "differential_pct"] {
                        let a = ours.data[field]?[key]?.doubleValue ?? -1, b = line?[field]?[key]?.doubleValue ?? -2
                        #expect(abs(a - b) <= 0.005 + 1e-9, "\(file) head \(head ?? 0) \(field).\(key): daemon \(a), NumPy \(b)")
                    }
                }
            }
        }
        let cors = events.filter { $0.kind == "qc.camera.cor" }
        #expect(abs((cors.first { $0.data["head"]?.intValue == 1 }?.data["offset_px"]?.doubleValue ?? 9) - 0.2) < 0.05, "\(cors.map(\.dataJSON))")
        #expect(abs((cors.first { $0.data["head"]?.intValue == 2 }?.data["offset_px"]?.doubleValue ?? 9) + 0.7) < 0.05, "\(cors.map(\.dataJSON))")
        #expect(cors.map { $0.data["result"]?.stringValue } == ["pass", "investigate"])

        // The report: camera section in text, csv and HTML.
        let cli = productsDirectory + "/nmbridge"
        let socket = ["--socket", daemon.socketPath]
        let text = try await runProgram(cli, socket + ["qc", "report", "--date", reportDate, "--format", "text"])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("\nCameras\n  spect-a\n    head 1: uniformity "), "\(text.stdout)")
        #expect(text.stdout.contains("COR offset"), "\(text.stdout)")
        let csv = try await runProgram(cli, socket + ["qc", "report", "--date", reportDate, "--format", "csv"])
        let rows = csv.stdout.split(separator: "\r\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let csvFloods = rows.filter { $0.count > 6 && $0[2] == "qc.camera.uniformity" }
        #expect(csvFloods.map { Double($0[5]) } == floods.map { $0.data["ufov"]?["integral_pct"]?.doubleValue }, "\(csv.stdout)")
        #expect(csvFloods.allSatisfy { $0[6] == "%" && $0[3] == "spect-a" }, "\(csv.stdout)")
        let html = try await runProgram(cli, socket + ["qc", "report", "--date", reportDate, "--format", "html", "--output", dir + "/r.html"])
        #expect(html.status == 0, "\(html.stderr)")
        let page = try String(contentsOfFile: dir + "/r.html", encoding: .utf8)
        #expect(page.contains("class=\"flood-map\"") && page.contains("data:image/png;base64,") && !page.contains("<script"))
        #expect(page.contains("<h2>Cameras</h2>") && page.contains("class=\"camera-chart\""))
        _ = try? await daemon.stop()
    }
}
