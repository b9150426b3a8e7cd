import Foundation
import NMBridgeCore
import NMTransport

/// One dose calibrator family as a method table, in the manner of gpsd's driver table: what
/// the family is called and how it is configured, what the host sends in one poll, how
/// replies are cut from the byte stream, how one reply decodes, and the instrument's side of
/// the same protocol for the simulator. `CalibratorSession` runs any family through these
/// alone; adding a family is one file in `Families/` and one line in `doseCalibratorFamilies`
/// (docs/architecture.md has a worked example).
public protocol DoseCalibratorFamily: Sendable {
    static var driverName: String { get }
    static var summary: String { get }
    static var defaultSerial: SerialSettings { get }
    /// Polled families ask every `poll_ms`; the others wait for the device to print.
    static var isPolled: Bool { get }
    static var defaultSettle: SettleRule.Mode { get }
    /// The keys only this family reads (documented in docs/configuration.md).
    static var familyKeys: [DriverConfigKey] { get }
    /// How replies (or printed lines) are cut from the byte stream.
    static var framing: ReplyFraming { get }
    /// The model's name for `nmbridge simulate dosecal --model`.
    static var simulatorName: String { get }

    /// The family's per-device parameters from its `[[device]]` table; `nil` when unusable
    /// (each problem is recorded on `reader` with its key and line).
    init?(from reader: ConfigTableReader)
    /// The requests of one poll, in order; empty for a family that is never asked.
    var pollRequests: [PollRequest] { get }
    /// Decodes one framed reply; `request` is the poll it answers (`nil` for a printed line).
    func decode(_ reply: [UInt8], raw: [UInt8], answering request: PollRequest?) -> DecodedMessage
    /// The instrument's side of the protocol, for `DoseCalibratorSimulator`.
    static func simulatedInstrument() -> any SimulatedInstrument
}

/// How a family's replies are delimited on the wire.
public enum ReplyFraming: Sendable, Equatable {
    /// Exactly this many bytes with no delimiter: fewer by the reply timeout is a cut-short
    /// reply, more is a reply that cannot be trusted (and resets settling).
    case fixedLength(Int)
    /// STX, length, body, checksum, ETX (`CRC35RFramer`).
    case checksummedFrame
    /// A line ended by CR LF (`LineSplitter`).
    case line
}

/// One request of a poll: the bytes to send and the chamber whose reading it asks for.
public struct PollRequest: Sendable, Equatable {
    public var bytes: [UInt8]
    public var chamber: Int?

    public init(_ bytes: [UInt8], chamber: Int? = nil) {
        self.bytes = bytes
        self.chamber = chamber
    }
}

/// What the simulated instrument understood the host to ask.
public struct SimulatedRequest: Sendable, Equatable {
    /// The chamber asked for, on multi-chamber models.
    public var chamber: Int?
    /// Family-specific detail (the CRC-15R's letters, each asking for part of the reply).
    public var detail: [UInt8]

    public init(chamber: Int? = nil, detail: [UInt8] = []) {
        self.chamber = chamber
        self.detail = detail
    }
}

/// The instrument's side of a family's protocol: finds requests in what the host sends and
/// encodes replies as the instrument would.
public protocol SimulatedInstrument: Sendable {
    /// Requests in the bytes the host sent; a request may arrive in pieces.
    mutating func requests(in bytes: [UInt8]) -> [SimulatedRequest]
    /// The reply showing `value` `unit` of `nuclide`; `corrupt` breaks its checksum or value.
    func reply(to request: SimulatedRequest, nuclide: String, value: Double, unit: ActivityUnit, corrupt: Bool) -> [UInt8]
    /// The reply of an empty chamber.
    func emptyReply(to request: SimulatedRequest) -> [UInt8]
    /// Bytes of random garbage in place of a reply.
    var garbageLength: Int { get }
}

/// Every dose calibrator family this build knows. A new family is one line here.
public let doseCalibratorFamilies: [any DoseCalibratorFamily.Type] = [
    CapintecCRC15RFamily.self, CapintecCRC35RFamily.self, BiodexAtomlabFamily.self, DoseCalibratorLineFamily.self,
]

/// Every dose calibrator driver, for the daemon's catalog: one per family.
public let doseCalibratorDrivers: [any Driver.Type] = doseCalibratorFamilies.map { driverType(for: $0) }

private func driverType<Family: DoseCalibratorFamily>(for family: Family.Type) -> any Driver.Type {
    DoseCalibratorDriver<Family>.self
}

/// A calibrator model the simulator can play: a family's `simulatorName`.
public struct SimulatedModel: RawRepresentable, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    public let rawValue: String
    let family: any DoseCalibratorFamily.Type

    public init?(rawValue: String) {
        guard let family = doseCalibratorFamilies.first(where: { $0.simulatorName == rawValue }) else { return nil }
        self.init(family)
    }

    public init(_ family: any DoseCalibratorFamily.Type) {
        rawValue = family.simulatorName
        self.family = family
    }

    public static var allCases: [SimulatedModel] { doseCalibratorFamilies.map(SimulatedModel.init) }
    public var description: String { rawValue }
    /// The driver that talks to this model.
    public var driverName: String { family.driverName }

    public static func == (a: SimulatedModel, b: SimulatedModel) -> Bool { a.rawValue == b.rawValue }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }
}

// MARK: - Keys shared by families

let unitCodesKey = DriverConfigKey(
    "unit_codes", "table", "Unit code → unit overrides, e.g. `{ \"2\" = \"uCi\", \"3\" = \"mCi\" }` (sources disagree on some codes).")

func linePatternKeys(_ what: String) -> [DriverConfigKey] {
    [
        DriverConfigKey(
            "pattern", "string",
            "Regex with named groups activity, unit, nuclide, chamber, time that \(what); default: `<nuclide> <activity> <unit>`."),
        DriverConfigKey("unit", "string", "Fixed unit when the pattern has no `unit` group."),
        DriverConfigKey("nuclide", "string", "Fixed nuclide when the pattern has no `nuclide` group."),
    ]
}

func readLinePattern(_ reader: ConfigTableReader) -> LinePattern? {
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

/// Four significant digits, as calibrator displays show them.
func displayText(_ value: Double) -> String {
    let digits = value >= 1000 ? 0 : value >= 100 ? 1 : value >= 10 ? 2 : 3
    return String(format: "%.\(digits)f", value)
}
