import Foundation
import NMBridgeCore
import NMQualityControl
import Testing

/// `[[qc.camera]]` (camera QC): values, defaults, and every problem with key and line.
@Suite struct CameraConfigurationTests {
    @Test func cameraEntriesAndDefaults() throws {
        let configuration = try load(
            """
            [dicom]
            [[dicom.peer]]
            ae_title = "SPECTCT1"
            device = "spectct-1"
            [qc]
            [[qc.camera]]
            id = "spect-a"
            device = "spectct-1"
            station_name = ["NM-A*", "NMA"]
            heads = 1
            flood = { series_description = "*flood*", patient_id = ["QC*"] }
            cor = { image_type = "TOMO" }
            ufov_integral_pct = [4, 6.5]
            cor_offset_px = [0.25, 0.5]
            baseline_count = 10
            baseline_investigate_pp = 0
            [[qc.camera]]
            id = "spect-b"
            station_name = "NMB"
            """)
        let cameras = try #require(configuration.qualityControl?.cameras)
        #expect(cameras.map(\.id) == ["spect-a", "spect-b"])
        let a = cameras[0], b = cameras[1]
        #expect(a.devices == ["spectct-1"] && a.stationNames == ["NM-A*", "NMA"] && a.heads == 1)
        #expect(a.flood.seriesDescription == ["*flood*"] && a.flood.patientID == ["QC*"] && a.cor.imageType == ["TOMO"])
        #expect(a.ufovIntegral == .init(investigate: 4, fail: 6.5) && a.corOffsetPx == .init(investigate: 0.25, fail: 0.5))
        #expect(a.cfovIntegral == .init(investigate: 4, fail: 6), "unset limits keep their defaults")
        #expect(a.baselineCount == 10 && a.baselineInvestigatePP == 0)
        #expect(b.heads == 2 && b.flood == DaemonConfiguration.QualityControl.Camera.defaultFlood && b.cor.seriesDescription == ["*COR*", "*cent* of rot*"])
        #expect(b.ufovIntegral.judge(5) == "pass" && b.ufovIntegral.judge(5.01) == "investigate" && b.ufovIntegral.judge(7.5) == "fail")
    }

    @Test func cameraProblemsNameKeyAndLine() {
        let text = """
            [qc]
            [[qc.camera]]
            id = "spect-a"
            heads = 9
            ufov_integral_pct = [7, 5]
            cfov_integral_pct = 4
            flood = { series_descripton = "*flood*" }
            [[qc.camera]]
            id = "spect-a"
            device = "SPECTA"
            """
        let error = #expect(throws: ConfigurationError.self) { try load(text) }
        let problems = error?.problems.map(\.description) ?? []
        let expected = [
            "test.toml:2: qc.camera[spect-a]: give device (the [[dicom.peer]] device id) and/or station_name",
            "test.toml:4: qc.camera[spect-a].heads: 9 is out of range 1…8",
            "test.toml:5: qc.camera[spect-a].ufov_integral_pct: the fail limit 5.0 is smaller than the investigate limit 7.0",
            "test.toml:6: qc.camera[spect-a].cfov_integral_pct: expected [investigate, fail]",
            "qc.camera[spect-a].flood.series_descripton: unknown key",
            "qc.camera[spect-a].flood: give at least one of series_description",
            "test.toml:9: qc.camera[spect-a].id: duplicate camera \"spect-a\" (first on line 3)",
            "test.toml:10: qc.camera[spect-a].device: \"SPECTA\" is not the device of a [[dicom.peer]]; an unlisted caller is journaled as \"dicom-<AE title>\"",
        ]
        for line in expected {
            #expect(problems.contains { $0.contains(line) }, "missing: \(line)\nin: \(problems.joined(separator: "\n"))")
        }
        #expect(problems.count == expected.count, "\(problems.joined(separator: "\n"))")
    }
}
