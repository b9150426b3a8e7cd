import NMBridgeCore
import NMTransport

/// What distinguishes one dose calibrator family: its name, default line settings, how a
/// measurement settles by default, and its dialect's keys.
public protocol DoseCalibratorFamily: Sendable {
    static var driverName: String { get }
    static var summary: String { get }
    static var defaultSerial: SerialSettings { get }
    /// Polled families ask at `poll_ms`; listening ones wait for the device to print.
    static var isPolled: Bool { get }
    static var defaultSettle: SettleRule.Mode { get }
    /// The keys only this family reads (documented in docs/configuration.md).
    static var familyKeys: [DriverConfigKey] { get }
    static func dialect(from reader: ConfigTableReader) -> Dialect?
}

/// The conversation with one family, with its per-device parameters.
public enum Dialect: Sendable {
    case crc15r(unitCodes: UnitCodeTable)
    case crc35r(unitCodes: UnitCodeTable, chambers: [Int])
    case atomlab(pattern: LinePattern)
    case line(pattern: LinePattern)
}

private let unitCodesKey = DriverConfigKey(
    "unit_codes", "table", "Unit code → unit overrides, e.g. `{ \"2\" = \"uCi\", \"3\" = \"mCi\" }` (sources disagree on some codes).")

private func linePatternKeys(_ what: String) -> [DriverConfigKey] {
    [
        DriverConfigKey(
            "pattern", "string",
            "Regex with named groups activity, unit, nuclide, chamber, time that \(what); default: `<nuclide> <activity> <unit>`."),
        DriverConfigKey("unit", "string", "Fixed unit when the pattern has no `unit` group."),
        DriverConfigKey("nuclide", "string", "Fixed nuclide when the pattern has no `nuclide` group."),
    ]
}

private func readLinePattern(_ reader: ConfigTableReader) -> LinePattern? {
    let source = reader.string("pattern") ?? LinePattern.defaultPattern
    var fixedUnit: ActivityUnit?
    if let unitText = reader.string("unit") {
        guard let unit = ActivityUnit(text: unitText) else {
            reader.problem("unit", "\"\(unitText)\" is not a unit; use one of " + ActivityUnit.allCases.map(\.rawValue).joined(separator: ", "))
            return nil
        }
        fixedUnit = unit
    }
    let fixedNuclide = reader.string("nuclide")
    do {
        return try LinePattern(source, fixedUnit: fixedUnit, fixedNuclide: fixedNuclide)
    } catch {
        reader.problem(reader.has("pattern") ? "pattern" : "unit", error.message)
        return nil
    }
}

public enum CapintecCRC15RFamily: DoseCalibratorFamily {
    public static let driverName = "capintec-crc15r"
    public static let summary = "Capintec CRC-15R / CRC-15 PET: polled, 11-byte binary reply."
    public static let defaultSerial = SerialSettings(baud: 4800)
    public static let isPolled = true
    public static let defaultSettle = SettleRule.Mode.polls(count: 3, band: 0.01)
    public static let familyKeys = [unitCodesKey]
    public static func dialect(from reader: ConfigTableReader) -> Dialect? {
        UnitCodeTable.read(from: reader, defaults: CapintecCRC15R.defaultUnitCodes).map { .crc15r(unitCodes: $0) }
    }
}

public enum CapintecCRC35RFamily: DoseCalibratorFamily {
    public static let driverName = "capintec-crc35r"
    public static let summary = "Capintec CRC-35R: framed ASCII with checksum, up to 8 chambers."
    public static let defaultSerial = SerialSettings(baud: 4800)
    public static let isPolled = true
    public static let defaultSettle = SettleRule.Mode.polls(count: 3, band: 0.01)
    public static let familyKeys = [
        unitCodesKey,
        DriverConfigKey("chambers", "array of integers", "Chambers to read, 1–8 (default [1])."),
    ]
    public static func dialect(from reader: ConfigTableReader) -> Dialect? {
        let codes = UnitCodeTable.read(from: reader, defaults: CapintecCRC35R.defaultUnitCodes)
        var chambers = [1]
        if reader.has("chambers") {
            let items = reader.table["chambers"]?.array ?? []
            let values = items.compactMap(\.int)
            guard !values.isEmpty, values.count == items.count, values.allSatisfy({ (1...8).contains($0) }),
                Set(values).count == values.count
            else {
                reader.problem("chambers", "expected a list of distinct chamber numbers 1–8, e.g. [1, 2]")
                return nil
            }
            chambers = values.map(Int.init)
        }
        return codes.map { .crc35r(unitCodes: $0, chambers: chambers) }
    }
}

public enum BiodexAtomlabFamily: DoseCalibratorFamily {
    public static let driverName = "biodex-atomlab"
    public static let summary = "Biodex Atomlab 400/500: ASCII, `1` requests a reading, CR LF replies (layout configurable)."
    public static let defaultSerial = SerialSettings(baud: 19200)
    public static let isPolled = true
    public static let defaultSettle = SettleRule.Mode.polls(count: 3, band: 0.01)
    public static let familyKeys = linePatternKeys("reads the reply line")
    public static func dialect(from reader: ConfigTableReader) -> Dialect? {
        readLinePattern(reader).map { .atomlab(pattern: $0) }
    }
}

public enum DoseCalibratorLineFamily: DoseCalibratorFamily {
    public static let driverName = "dosecal-line"
    public static let summary = "Any calibrator that prints one line per measurement (printer port); configured pattern."
    public static let defaultSerial = SerialSettings(baud: 9600)
    public static let isPolled = false
    public static let defaultSettle = SettleRule.Mode.device
    public static let familyKeys = linePatternKeys("reads each printed line")
    public static func dialect(from reader: ConfigTableReader) -> Dialect? {
        readLinePattern(reader).map { .line(pattern: $0) }
    }
}
