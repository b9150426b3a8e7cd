import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// Study-level QC through separate processes: pydicom writes the images, DCMTK's storescu
/// sends them to a running daemon, and the QC service judges each study when the receiver
/// reports it stable (docs/qc.md, "Studies").
@Suite struct QCStudyChainTests {
    static let protocols = """
        [qc]
        [[qc.protocol]]
        name = "in111-tc99m-dual"
        nuclide = ["In-111"]
        photopeak_kev = { "Tc-99m" = 140, "In-111" = [171, 245] }

        [[qc.protocol]]
        name = "tc99m-bone"
        agent = ["*oxidronate*", "*MDP*"]
        nuclide = ["Tc-99m"]
        modality = ["NM"]
        primary_image_type = ["WHOLE BODY"]
        uptake_min_h = 2
        uptake_max_h = 5
        photopeak_kev = 140
        activity_min_mbq = 300
        activity_max_mbq = 740
        activity_mbq_per_kg = 9.3
        scan_speed_min_cm_per_min = 10
        scan_speed_max_cm_per_min = 15
        collimator = ["LEHR*"]

        [[qc.protocol]]
        name = "fdg-pet"
        modality = ["PT"]
        photopeak_kev = 511
        window_min_pct = 30
        window_max_pct = 50
        window_center_tolerance_pct = 10
        """

    /// The lung-cancer patient's bone scan, injected 08:00 UTC: a whole-body sweep at 3 h,
    /// static humerus views at 3 h 20 min and 5 h 30 min, a SPECT at 3 h 40 min.
    static let boneSeries: [(label: String, acquisition: String, imageType: String, view: String)] = [
        ("WB", "20261129110000", "ORIGINAL\\PRIMARY\\WHOLE BODY\\EMISSION", "anterior"),
        ("STATIC-1", "20261129112000", "ORIGINAL\\PRIMARY\\STATIC\\EMISSION", "anterior"),
        ("SPECT", "20261129114000", "ORIGINAL\\PRIMARY\\TOMO\\EMISSION", "anterior"),
        ("STATIC-2", "20261129133000", "ORIGINAL\\PRIMARY\\STATIC\\EMISSION", "left lateral"),
    ]

    func makeBoneStudy(_ dir: String, study: String) async throws -> (files: [String], labels: [String: String]) {
        var files: [String] = []
        var labels: [String: String] = [study: "STUDY"]
        for (index, series) in Self.boneSeries.enumerated() {
            let file = "\(dir)/\(study)-\(index).dcm"
            let uid = "\(study).\(index + 1)"
            labels[uid] = series.label
            let made = try await runProgram(
                testPython,
                [
                    repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-nm", file, "--study-uid", study, "--series-uid", uid, "--dose", "700",
                    "--start-datetime", "20261129080000+0000", "--acquisition", series.acquisition, "--timezone-offset", "+0000",
                    "--image-type", series.imageType, "--description", series.label, "--view-meaning", series.view, "--collimator", "LEHR",
                    "--scan-velocity", "2.0", "--weight", "70",
                ])
            #expect(made.status == 0, "\(made.stderr)")
            files.append(file)
        }
        // The CT of the SPECT/CT: no radiopharmaceutical, never a series QC judges.
        let ct = "\(dir)/\(study)-ct.dcm"
        let madeCT = try await runProgram(
            testPython, [repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-ct", ct, "--study-uid", study, "--series-uid", study + ".9", "--rows", "16"])
        #expect(madeCT.status == 0, "\(madeCT.stderr)")
        files.insert(ct, at: 3)
        return (files, labels)
    }

    /// A finding without where it sits in the journal, UIDs replaced by the series' labels.
    static func essence(_ event: Event, labels: [String: String]) -> String {
        var data = event.data
        for key in ["source_seq", "instance_seq", "primary_instance_seq", "measurement_seq"] { data[key] = nil }
        var text = event.kind + " " + JSONValue.object(data).jsonText
        for (uid, label) in labels.sorted(by: { $0.key.count > $1.key.count }) { text = text.replacingOccurrences(of: uid, with: label) }
        return text
    }

    @Test func aBoneScanInEitherOrderADualIsotopeStudyAndAPETStudy() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try freeTCPPort()
        let config = daemonConfig(
            dir,
            extra: """
                [dicom]
                port = \(port)
                accept_any_calling_ae = true
                # Long enough that a loaded machine's pause between two files of one
                # association does not split a study (the test would then see two periods).
                stable_after_s = 5

                \(Self.protocols)
                """)
        let daemon = try await DaemonProcess.start(directory: dir, config: config)
        defer { daemon.signal(SIGKILL) }

        // The same study twice: in acquisition order, then in reverse order.
        let forward = try await makeBoneStudy(dir, study: "1.2.826.0.1.3680043.8.498.15.1")
        let reverse = try await makeBoneStudy(dir, study: "1.2.826.0.1.3680043.8.498.15.2")
        for files in [forward.files, Array(reverse.files.reversed())] {
            let sent = try await runProgram("/usr/bin/storescu", ["-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)"] + files)
            #expect(sent.status == 0, "storescu: \(sent.stdout)\(sent.stderr)\n\(daemon.log)")
        }
        let studies = ["1.2.826.0.1.3680043.8.498.15.1", "1.2.826.0.1.3680043.8.498.15.2"]
        let all = try await daemon.waitForEvents(timeout: .seconds(90)) { events in
            studies.allSatisfy { study in
                events.filter { $0.kind == "qc.protocol.supplementary_view" && $0.data["study_uid"] == .string(study) }.count == 3
                    && events.contains { $0.kind == "qc.protocol.uptake_delay" && $0.data["study_uid"] == .string(study) }
            }
        }
        // The receiver read the new metadata from the real files.
        let wb = try #require(all.first { $0.kind == "dicom.instance.stored" && $0.data["series_uid"] == .string(studies[0] + ".1") })
        #expect(wb.data["image_type"] == .array(["ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"]), "\(wb.dataJSON)")
        #expect(wb.data["collimators"] == .array(["LEHR"]) && wb.data["collimator_types"] == .array(["PARA"]))
        #expect(wb.data["scan_velocity_mm_per_s"]?.doubleValue == 2 && wb.data["patient_weight_kg"]?.doubleValue == 70)
        #expect(wb.data["view_codes"]?.jsonText.contains("\"meaning\":\"anterior\"") == true, "\(wb.dataJSON)")

        var outcomes: [[String]] = []
        for (study, labels) in zip(studies, [forward.labels, reverse.labels]) {
            let qc = all.filter { $0.kind.hasPrefix("qc.") && $0.data["study_uid"] == .string(study) }
            #expect(all.contains { $0.kind == "dicom.instance.stored" && $0.data["series_uid"] == .string(study + ".9") }, "the CT was stored")
            #expect(!qc.contains { $0.data["series_uid"] == .string(study + ".9") }, "and not judged")
            let uptake = qc.filter { $0.kind == "qc.protocol.uptake_delay" }
            #expect(uptake.count == 1, "exactly one uptake finding: \(uptake.map(\.dataJSON))")
            #expect(uptake.first?.data["result"] == .string("pass") && uptake.first?.data["delay_min"]?.doubleValue == 180)
            #expect(uptake.first?.data["series_uid"] == .string(study + ".1"))
            let views = qc.filter { $0.kind == "qc.protocol.supplementary_view" }
            #expect(views.map { labels[$0.data["series_uid"]?.stringValue ?? ""] } == ["STATIC-1", "SPECT", "STATIC-2"])
            #expect(views.map { $0.data["delay_min"]?.doubleValue } == [200, 220, 330])
            #expect(!qc.contains { $0.data["result"] == .string("too_late") }, "no false alarm on the 5 h 30 min static")
            // 70 kg × 9.3 MBq/kg = 651 MBq ± 10 % → 585.9–716.1 MBq; 700 MBq passes.
            let activity = try #require(qc.first { $0.kind == "qc.protocol.activity" })
            #expect(activity.data["result"] == .string("pass") && activity.data["expected_bq"]?.doubleValue == 651e6, "\(activity.dataJSON)")
            // 2.0 mm/s = 12 cm/min, within 10–15; the sweep only.
            #expect(qc.filter { $0.kind == "qc.protocol.scan_speed" }.map { $0.data["speed_cm_per_min"]?.doubleValue } == [12])
            #expect(qc.filter { $0.kind == "qc.protocol.collimator" && $0.data["result"] == .string("pass") }.count == 4)
            #expect(qc.filter { $0.kind == "qc.protocol.energy_window" && $0.data["result"] == .string("pass") }.count == 4)
            outcomes.append(qc.map { Self.essence($0, labels: labels) }.sorted())
        }
        #expect(outcomes[0] == outcomes[1], "the reverse order gives the same findings")

        // A dual-isotope study (Tc-99m and In-111) and a PET study with a 425–650 keV window.
        let dual = dir + "/dual.dcm"
        let pet = dir + "/pet.dcm"
        let madeDual = try await runProgram(
            testPython,
            [
                repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-nm", dual, "--study-uid", "1.2.826.0.1.3680043.8.498.15.3", "--dose", "500",
                "--indium-dose", "111", "--windows", "126-154,154-188,220.5-269.5", "--start-datetime", "20261129080000+0000", "--acquisition",
                "20261129120000", "--timezone-offset", "+0000",
            ])
        #expect(madeDual.status == 0, "\(madeDual.stderr)")
        let madePET = try await runProgram(
            testPython,
            [
                repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-pt", pet, "--study-uid", "1.2.826.0.1.3680043.8.498.15.4", "--dose", "250000000",
                "--windows", "425-650",
            ])
        #expect(madePET.status == 0, "\(madePET.stderr)")
        let sent = try await runProgram("/usr/bin/storescu", ["-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)", dual, pet])
        #expect(sent.status == 0, "storescu: \(sent.stdout)\(sent.stderr)\n\(daemon.log)")
        let more = try await daemon.waitForEvents(timeout: .seconds(90)) { events in
            events.filter { $0.kind == "qc.protocol.energy_window" && ($0.data["study_uid"]?.stringValue ?? "").hasSuffix(".15.3") }.count == 2
                && events.contains { $0.kind == "qc.protocol.energy_window" && $0.data["study_uid"] == .string("1.2.826.0.1.3680043.8.498.15.4") }
        }
        let dualStored = try #require(more.first { $0.kind == "dicom.instance.stored" && $0.data["study_uid"] == .string("1.2.826.0.1.3680043.8.498.15.3") })
        guard case .array(let items) = dualStored.data["radiopharmaceuticals"] else {
            Issue.record("no radiopharmaceuticals: \(dualStored.dataJSON)")
            return
        }
        let nuclides = items.map { $0["nuclide"]?.stringValue }
        #expect(nuclides == ["Tc-99m", "In-111"], "\(dualStored.dataJSON)")
        let dualWindows = more.filter { $0.kind == "qc.protocol.energy_window" && $0.data["study_uid"] == .string("1.2.826.0.1.3680043.8.498.15.3") }
        #expect(dualWindows.map { $0.data["nuclide"]?.stringValue } == ["Tc-99m", "In-111"])
        #expect(dualWindows.allSatisfy { $0.data["result"] == .string("pass") && $0.data["protocol"] == .string("in111-tc99m-dual") }, "\(dualWindows.map(\.dataJSON))")
        #expect(more.filter { $0.kind == "qc.administration.reconciled" && $0.data["study_uid"] == .string("1.2.826.0.1.3680043.8.498.15.3") }.count == 2)
        let petStored = try #require(more.first { $0.kind == "dicom.instance.stored" && $0.data["modality"] == .string("PT") })
        guard case .array(let petWindows) = petStored.data["energy_windows"] else {
            Issue.record("no PET energy windows: \(petStored.dataJSON)")
            return
        }
        #expect(petWindows.count == 1 && petWindows.first?["lower_kev"]?.doubleValue == 425 && petWindows.first?["upper_kev"]?.doubleValue == 650)
        #expect(petStored.data["radiopharmaceutical"]?["total_dose_bq"]?.doubleValue == 250e6)
        let petWindow = try #require(more.first { $0.kind == "qc.protocol.energy_window" && $0.data["modality"] == .string("PT") })
        #expect(petWindow.data["result"] == .string("pass") && petWindow.data["protocol"] == .string("fdg-pet"), "\(petWindow.dataJSON)")
    }
}
