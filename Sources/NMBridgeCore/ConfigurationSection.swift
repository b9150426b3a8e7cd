/// A top-level table of the configuration that a subsystem owns (`[dicom]`, `[qc]`,
/// `[shipper]`): its settings type, declared and read in the subsystem's own module.
///
/// The loader (`DaemonConfiguration.load`) reads the core's tables (`[daemon]`, `[journal]`,
/// `[api]`, `[supervisor]`, `[[device]]`), then hands each section of its
/// `ConfigurationSectionCatalog` its table, when present, and reports the keys of that table
/// no reader asked for as unknown. A top-level table that no section of the catalog claims
/// is an unknown key. The parsed value is kept in `DaemonConfiguration.sections`, found by
/// type: `configuration[DaemonConfiguration.Dicom.self]`.
///
/// docs/architecture.md, "Adding a configuration section", has a worked example.
public protocol ConfigurationSection: Sendable {
    /// The top-level table read, e.g. `"dicom"` for `[dicom]`.
    static var key: String { get }

    /// Reads the section from its table. Every problem goes to `table` (or a reader derived
    /// from it) with its key and line; keys not read are reported as unknown afterwards.
    /// `nil`: the table turns the subsystem off (`enabled = false`), or is too broken to use
    /// (then it recorded why).
    static func read(_ table: ConfigTableReader, context: ConfigurationContext) -> Self?
}

/// What a section's reader may need beyond its own table: what the core tables said, and
/// the whole document for cross-references (the devices a camera's DICOM peers name).
///
/// Not `Sendable`, like the readers it holds: it lives for one configuration load.
public struct ConfigurationContext {
    /// `[daemon] state_dir`, absolute: the default home of a section's files.
    public let stateDirectory: String
    /// The ids of the `[[device]]` tables, for settings that name a device.
    public let deviceIDs: Set<String>
    /// The document's root table, to look at another table without claiming its keys.
    public let root: ConfigTableReader

    public init(stateDirectory: String, deviceIDs: Set<String>, root: ConfigTableReader) {
        self.stateDirectory = stateDirectory
        self.deviceIDs = deviceIDs
        self.root = root
    }
}

/// A section type with its value erased, so that a catalog can hold many.
public struct ConfigurationSectionEntry: Sendable {
    /// The top-level table read.
    public let key: String
    let id: ObjectIdentifier
    let read: @Sendable (ConfigTableReader, ConfigurationContext) -> (any Sendable)?

    public init<S: ConfigurationSection>(_ type: S.Type) {
        key = S.key
        id = ObjectIdentifier(S.self)
        read = { table, context in S.read(table, context: context) }
    }
}

/// The configuration sections a build reads, in the order they are read. Adding a section
/// is one entry here (`ConfigurationSectionCatalog.standard`, in `NMCatalog`).
public struct ConfigurationSectionCatalog: Sendable {
    public let entries: [ConfigurationSectionEntry]

    /// Each type once; two types claiming one key is a programming error that the
    /// catalog's test (`ConfigurationSectionTests`) catches.
    public init(_ types: [any ConfigurationSection.Type]) {
        entries = types.map { Self.entry($0) }
    }

    private static func entry<S: ConfigurationSection>(_ type: S.Type) -> ConfigurationSectionEntry { ConfigurationSectionEntry(type) }

    /// No sections: the core's tables only (tests of a driver's `[[device]]` settings).
    public static let none = ConfigurationSectionCatalog([])

    /// The top-level keys the sections read, in catalog order.
    public var keys: [String] { entries.map(\.key) }
}

/// The parsed sections of one configuration, by type.
public struct ConfigurationSections: Sendable {
    private var values: [ObjectIdentifier: any Sendable] = [:]

    public init() {}

    /// The section of type `S`; `nil` when its table is absent or turns it off.
    public subscript<S: ConfigurationSection>(_ type: S.Type) -> S? {
        get { values[ObjectIdentifier(type)] as? S }
        set { values[ObjectIdentifier(type)] = newValue }
    }

    mutating func store(_ value: any Sendable, for entry: ConfigurationSectionEntry) {
        values[entry.id] = value
    }
}
