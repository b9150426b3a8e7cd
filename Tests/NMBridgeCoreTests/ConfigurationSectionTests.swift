import DicomStore
import NMCatalog
import NMQualityControl
import NMShipper
import Testing

@testable import NMBridgeCore

/// A section as a subsystem would declare it, read by the loader through a catalog.
struct WidgetSection: ConfigurationSection, Equatable {
    static let key = "widget"
    var rate = 10
    var label: String?

    static func read(_ table: ConfigTableReader, context: ConfigurationContext) -> WidgetSection? {
        guard table.bool("enabled") ?? true else { return nil }
        var widget = WidgetSection()
        widget.rate = table.int("rate", in: 1...100).map(Int.init) ?? widget.rate
        widget.label = table.string("label")
        if let device = table.string("device"), !context.deviceIDs.contains(device) {
            table.problem("device", "\"\(device)\" is not a configured [[device]] id")
        }
        return widget
    }
}

/// The subsystems' tables (`[dicom]`, `[qc]`, `[shipper]`) are sections their modules own,
/// assembled by `ConfigurationSectionCatalog.standard`.
@Suite struct ConfigurationSectionTests {
    func load(_ text: String, sections: ConfigurationSectionCatalog) throws(ConfigurationError) -> DaemonConfiguration {
        try DaemonConfiguration.load(text: text, file: "s.toml", drivers: catalog, sections: sections, defaultNode: "n")
    }

    @Test func theStandardCatalogHasEachSubsystemOnceAndNoCoreTable() {
        let keys = ConfigurationSectionCatalog.standard.keys
        #expect(Set(keys) == ["dicom", "qc", "shipper"], "\(keys)")
        #expect(Set(keys).count == keys.count, "two sections read one table: \(keys)")
        #expect(Set(keys).isDisjoint(with: ["daemon", "journal", "api", "supervisor", "device"]))
    }

    @Test func aSectionIsReadAndFoundByItsType() throws {
        let sections = ConfigurationSectionCatalog([WidgetSection.self])
        let configuration = try load("[widget]\nrate = 42\nlabel = \"w\"\n", sections: sections)
        #expect(configuration[WidgetSection.self] == WidgetSection(rate: 42, label: "w"))
        #expect(try load("", sections: sections)[WidgetSection.self] == nil, "absent: nil")
        #expect(try load("[widget]\nenabled = false\n", sections: sections)[WidgetSection.self] == nil, "turned off: nil")
        #expect(try load("[widget]\n", sections: sections)[WidgetSection.self] == WidgetSection())
    }

    @Test func aSectionsProblemsAndUnknownKeysNameKeyAndLineWithEveryOtherProblem() {
        let text = """
            [daemon]
            nod = "x"
            [widget]
            rate = 500
            device = "nowhere"
            rat = 3
            [gizmo]
            x = 1
            """
        let error = #expect(throws: ConfigurationError.self) { try load(text, sections: ConfigurationSectionCatalog([WidgetSection.self])) }
        #expect(
            error?.problems.map(\.description) == [
                "s.toml:2: daemon.nod: unknown key (did you mean \"node\"?)",
                "s.toml:4: widget.rate: 500 is out of range 1…100",
                "s.toml:5: widget.device: \"nowhere\" is not a configured [[device]] id",
                "s.toml:6: widget.rat: unknown key (did you mean \"rate\"?)",
                "s.toml:7: gizmo: unknown key",
            ])
    }

    @Test func aTableNoSectionClaimsIsAnUnknownKey() {
        let error = #expect(throws: ConfigurationError.self) { try load("[qc]\n[shipper]\n", sections: .none) }
        #expect(error?.problems.map(\.description) == ["s.toml:1: qc: unknown key", "s.toml:2: shipper: unknown key"])
        let typo = #expect(throws: ConfigurationError.self) { try load("[dicm]\naccept_any_calling_ae = true\n", sections: .standard) }
        #expect(typo?.problems.map(\.description) == ["s.toml:1: dicm: unknown key (did you mean \"dicom\"?)"])
    }

    @Test func theSubsystemsSectionsAreReadThroughTheStandardCatalog() throws {
        let configuration = try load(
            """
            [shipper]
            postgres = "postgres://nmb@db.example/department"
            [dicom]
            accept_any_calling_ae = true
            [qc]
            """, sections: .standard)
        #expect(configuration.shipper?.url.database == "department")
        #expect(configuration[DaemonConfiguration.Shipper.self] == configuration.shipper)
        #expect(configuration.dicom?.acceptAnyCallingAE == true)
        #expect(configuration.qualityControl?.protocols.map(\.name) == ["tc99m-bone"])
    }
}
