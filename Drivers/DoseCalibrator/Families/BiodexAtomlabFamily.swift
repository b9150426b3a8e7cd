import NMBridgeCore
import NMTransport

/// Biodex Atomlab 400/500: `1` asks for the reading, a CR LF line answers; the line's layout
/// is a configurable pattern (Protocols/BiodexAtomlab.swift, LinePattern.swift).
public struct BiodexAtomlabFamily: DoseCalibratorFamily {
    public static let driverName = "biodex-atomlab"
    public static let summary = "Biodex Atomlab 400/500: ASCII, `1` requests a reading, CR LF replies (layout configurable)."
    public static let defaultSerial = SerialSettings(baud: 19200)
    public static let isPolled = true
    public static let defaultSettle = SettleRule.Mode.polls(count: 3, band: 0.01)
    public static let familyKeys = linePatternKeys("reads the reply line")
    public static let framing = ReplyFraming.line
    public static let simulatorName = "atomlab500"

    let pattern: LinePattern

    public init?(from reader: ConfigTableReader) {
        guard let pattern = readLinePattern(reader) else { return nil }
        self.pattern = pattern
    }

    public var pollRequests: [PollRequest] { [PollRequest(BiodexAtomlab.request)] }

    public func decode(_ reply: [UInt8], raw: [UInt8], answering request: PollRequest?) -> DecodedMessage {
        pattern.decode(reply, final: false)
    }

    public static func simulatedInstrument() -> any SimulatedInstrument { Instrument() }

    /// Answers `1` or ^C with "<nuclide> <value> <unit>" CR LF.
    struct Instrument: SimulatedInstrument {
        var garbageLength: Int { 24 }

        mutating func requests(in bytes: [UInt8]) -> [SimulatedRequest] {
            bytes.filter { $0 == 0x31 || $0 == 0x03 }.map { _ in SimulatedRequest() }
        }

        func reply(to request: SimulatedRequest, nuclide: String, value: Double, unit: ActivityUnit, corrupt: Bool) -> [UInt8] {
            printedLine(nuclide: nuclide, value: value, unit: unit, corrupt: corrupt)
        }

        func emptyReply(to request: SimulatedRequest) -> [UInt8] { Array("\r\n".utf8) }
    }
}

/// "<nuclide> <value> <unit>" CR LF, as the default line pattern reads it.
func printedLine(nuclide: String, value: Double, unit: ActivityUnit, corrupt: Bool) -> [UInt8] {
    let name = CapintecCRC15R.displayName(nuclide).replacingOccurrences(of: " ", with: "")
    let text = corrupt ? "\(name) ?.?? \(unit.rawValue)" : "\(name) \(displayText(value)) \(unit.rawValue)"
    return Array((text + "\r\n").utf8)
}

extension SimulatedModel {
    public static let atomlab500 = SimulatedModel(BiodexAtomlabFamily.self)
}
