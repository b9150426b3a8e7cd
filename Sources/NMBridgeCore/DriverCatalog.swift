import ServiceLifecycle

/// A driver type with its generic settings erased, so the daemon can hold many.
public struct DriverCatalogEntry: Sendable {
    public let manifest: DriverManifest
    /// Validates a `[[device]]` table; `nil` when unusable (problems are in the reader).
    public let validate: @Sendable (ConfigTableReader) -> (any Sendable)?
    /// Builds the driver from validated settings.
    public let make: @Sendable (any Sendable, DriverContext) -> any Service
    /// The driver's `stale_after_s` default for validated settings.
    public let defaultStaleAfter: @Sendable (any Sendable) -> Double?

    public init<D: Driver>(_ type: D.Type) {
        manifest = D.manifest
        validate = { reader in D.settings(from: reader) }
        defaultStaleAfter = { settings in D.defaultStaleAfter(settings as! D.Settings) }
        make = { settings, context in
            // `settings` always comes from `validate` of this same entry.
            D(settings: settings as! D.Settings, context: context)
        }
    }
}

/// The drivers a daemon knows, by name, and the event kinds it journals. Adding a driver
/// family is one entry here.
public struct DriverCatalog: Sendable {
    public let entries: [String: DriverCatalogEntry]
    /// Every kind the build journals (`EventKindRegistry.standard`), for settings that name
    /// kinds (`ConfigTableReader.eventKinds`).
    public let eventKinds: EventKindRegistry

    public init(_ types: [any Driver.Type], eventKinds: EventKindRegistry = EventKindRegistry(EventKindRegistry.coreKinds)) {
        self.eventKinds = eventKinds
        var entries: [String: DriverCatalogEntry] = [:]
        for type in types {
            let entry = Self.entry(type)
            entries[entry.manifest.name] = entry
        }
        self.entries = entries
    }

    private static func entry<D: Driver>(_ type: D.Type) -> DriverCatalogEntry { DriverCatalogEntry(type) }

    public var names: [String] { entries.keys.sorted() }
}
