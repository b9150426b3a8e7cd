import Foundation
import NMBridgeCore
import NMQualityControl
import Testing

/// The study-level `[[qc.protocol]]` keys (docs/configuration.md, docs/qc.md).
@Suite struct QCProtocolConfigurationTests {
    @Test func protocolParametersAreRead() throws {
        let configuration = try load(
            """
            [qc]
            [[qc.protocol]]
            name = "tc99m-bone"
            agent = ["*MDP*", "*HDP*"]
            nuclide = ["Tc-99m"]
            primary_image_type = ["WHOLE BODY"]
            activity_min_mbq = 300
            activity_max_mbq = 740
            activity_mbq_per_kg = 9.3
            activity_tolerance_pct = 15
            scan_speed_min_cm_per_min = 10
            scan_speed_max_cm_per_min = 15
            collimator = ["LEHR*", "LEUHR*"]
            [[qc.protocol]]
            name = "dual"
            photopeak_kev = { "TC99M" = 140, "In111" = [171, 245] }
            """)
        let protocols = try #require(configuration.qualityControl?.protocols)
        let bone = protocols[0]
        #expect(bone.primaryImageTypes == ["WHOLE BODY"])
        #expect(bone.activityMinMBq == 300 && bone.activityMaxMBq == 740 && bone.activityMBqPerKg == 9.3 && bone.activityTolerancePct == 15)
        #expect(bone.scanSpeedCmPerMin == 10...15)
        #expect(bone.collimators == ["LEHR*", "LEUHR*"])
        #expect(bone.checksActivity)
        #expect(protocols[1].photopeaksByNuclide == ["Tc-99m": [140], "In-111": [171, 245]])
        #expect(!protocols[1].checksActivity && protocols[1].scanSpeedCmPerMin == nil && protocols[1].primaryImageTypes.isEmpty)
        #expect(DaemonConfiguration.QualityControl.ProtocolRule.boneScan.primaryImageTypes == ["WHOLE BODY"])
    }

    @Test func protocolParameterProblemsNameKeyAndLine() {
        let text = """
            [qc]
            [[qc.protocol]]
            name = "bone"
            activity_min_mbq = 800
            activity_max_mbq = 740
            scan_speed_min_cm_per_min = 10
            collimator = "LEHR"
            photopeak_kev = { "Unobtainium" = 140, "Tc-99m" = "140" }
            """
        let error = #expect(throws: ConfigurationError.self) { try load(text) }
        let problems = error?.problems.map(\.description) ?? []
        let expected = [
            "qc.protocol[bone].activity_max_mbq: 740.0 is smaller than activity_min_mbq 800.0",
            "test.toml:2: qc.protocol[bone].scan_speed_max_cm_per_min: give both scan_speed_min_cm_per_min and scan_speed_max_cm_per_min",
            "test.toml:7: qc.protocol[bone].collimator: expected an array of strings",
            "qc.protocol[bone].photopeak_kev: \"Unobtainium\" is not a nuclide name",
            "qc.protocol[bone].photopeak_kev: Tc-99m: expected a photopeak in keV",
        ]
        for line in expected {
            #expect(problems.contains { $0.contains(line) }, "missing: \(line)\nin: \(problems.joined(separator: "\n"))")
        }
        #expect(problems.count == expected.count, "\(problems.joined(separator: "\n"))")
    }
}
