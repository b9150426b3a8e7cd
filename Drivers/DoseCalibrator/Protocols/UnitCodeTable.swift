import NMBridgeCore

/// Maps a calibrator's numeric unit code to a unit. Public sources disagree on some codes,
/// so every table is configurable per device (`unit_codes = { "1" = "uCi", … }`).
public struct UnitCodeTable: Sendable, Equatable {
    public var units: [Int: ActivityUnit]

    public init(_ units: [Int: ActivityUnit]) {
        self.units = units
    }

    public subscript(code: Int) -> ActivityUnit? { units[code] }

    /// Reads `key` (an inline table of code → unit text) on top of `defaults`: listed codes
    /// replace the default's, others stay.
    public static func read(_ key: String = "unit_codes", from reader: ConfigTableReader, defaults: UnitCodeTable) -> UnitCodeTable? {
        guard reader.has(key) else { return defaults }
        guard let table = reader.table(key) else { return nil }
        var units = defaults.units
        var ok = true
        for code in table.table.keys.sorted() {
            guard let number = Int(code), (0...255).contains(number) else {
                table.problem(code, "unit codes are numbers 0–255")
                ok = false
                continue
            }
            guard let text = table.string(code) else {
                ok = false
                continue
            }
            guard let unit = ActivityUnit(text: text) else {
                table.problem(code, "\"\(text)\" is not a unit; use one of " + ActivityUnit.allCases.map(\.rawValue).joined(separator: ", "))
                ok = false
                continue
            }
            units[number] = unit
        }
        return ok ? UnitCodeTable(units) : nil
    }
}
