import DicomStore
import NMBridgeCore
import Testing

/// `[[dicom.destination]]`, `[[dicom.route]]`, `[dicom.outbound]` (docs/configuration.md, "Forwarding").
@Suite struct OutboundConfigurationTests {
    static let base = "[dicom]\naccept_any_calling_ae = true\n"

    @Test func destinationsRoutesAndQueueSettings() throws {
        let configuration = try load(
            Self.base + """
                [dicom.outbound]
                max_backoff_s = 30
                give_up_after_h = 24
                [[dicom.destination]]
                name = "pacs"
                ae_title = "PACS"
                host = "192.0.2.40"
                port = 104
                [[dicom.destination]]
                name = "registry"
                ae_title = "DOSEREG"
                host = "192.0.2.41"
                port = 2762
                calling_ae = "NMB_DOSE"
                [dicom.destination.tls]
                verify_hostname = true
                [[dicom.route]]
                destinations = ["pacs"]
                modalities = ["NM", "PT"]
                when = "stable"
                [[dicom.route]]
                name = "dose"
                destinations = ["registry"]
                instances = false
                rrdsr = true
                """)
        let outbound = try #require(configuration.dicom?.outbound)
        #expect(outbound.destinations.map(\.name) == ["pacs", "registry"])
        #expect(outbound.destinations[0].callingAE == "NMBRIDGE" && outbound.destinations[1].callingAE == "NMB_DOSE")
        #expect(outbound.destinations[0].tls == nil && outbound.destinations[1].tls?.verifyHostname == true)
        #expect(outbound.routes.map(\.name) == ["route-1", "dose"])
        #expect(outbound.routes[0].when == .stable && outbound.routes[0].modalities == ["NM", "PT"])
        #expect(outbound.routes[1].rrdsr && !outbound.routes[1].instances)
        #expect(outbound.rrdsr, "a route that sends RRDSRs turns them on")
        #expect(outbound.maxBackoff == 30 && outbound.giveUpAfter == 24 * 3600)
        #expect(outbound.cursorFile == configuration.dicom!.storage + "/.outbound-cursor.json")
    }

    @Test func everyProblemIsReportedWithItsLine() {
        let error = #expect(throws: ConfigurationError.self) {
            try load(
                Self.base + """
                    [[dicom.destination]]
                    name = "pacs"
                    ae_title = "A TITLE LONGER THAN 16"
                    host = "192.0.2.40"
                    [[dicom.route]]
                    destinations = ["pac"]
                    when = "later"
                    modalitys = ["NM"]
                    """)
        }
        let problems = error?.problems.map(\.description) ?? []
        #expect(problems.contains { $0.hasPrefix("test.toml:5: dicom.destination[pacs].ae_title:") }, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("test.toml:3: dicom.destination[pacs].port: is required") }, "\(problems)")
        #expect(problems.contains { $0.contains("dicom.route[#1].destinations: no [[dicom.destination]] is named \"pac\"") }, "\(problems)")
        #expect(problems.contains { $0.contains("dicom.route[#1].when: \"later\" is not one of") }, "\(problems)")
        #expect(problems.contains { $0.contains("dicom.route[#1].modalitys: unknown key (did you mean \"modalities\"?)") }, "\(problems)")
    }
}
