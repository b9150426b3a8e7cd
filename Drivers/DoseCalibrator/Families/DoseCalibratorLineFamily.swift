import NMBridgeCore
import NMTransport

/// Any calibrator that prints one line per measurement on its printer port, read with a
/// configured pattern (LinePattern.swift). Never asked; each line is a final reading.
public struct DoseCalibratorLineFamily: DoseCalibratorFamily {
    public static let driverName = "dosecal-line"
    public static let summary = "Any calibrator that prints one line per measurement (printer port); configured pattern."
    public static let defaultSerial = SerialSettings(baud: 9600)
    public static let isPolled = false
    public static let defaultSettle = SettleRule.Mode.device
    public static let familyKeys = linePatternKeys("reads each printed line")
    public static let framing = ReplyFraming.line
    public static let simulatorName = "line"

    let pattern: LinePattern

    public init?(from reader: ConfigTableReader) {
        guard let pattern = readLinePattern(reader) else { return nil }
        self.pattern = pattern
    }

    public var pollRequests: [PollRequest] { [] }

    public func decode(_ reply: [UInt8], raw: [UInt8], answering request: PollRequest?) -> DecodedMessage {
        pattern.decode(reply, final: true)
    }

    public static func simulatedInstrument() -> any SimulatedInstrument { Instrument() }

    /// Prints "<nuclide> <value> <unit>" CR LF once per vial, unasked.
    struct Instrument: SimulatedInstrument {
        var garbageLength: Int { 24 }
        mutating func requests(in bytes: [UInt8]) -> [SimulatedRequest] { [] }
        func reply(to request: SimulatedRequest, nuclide: String, value: Double, unit: ActivityUnit, corrupt: Bool) -> [UInt8] {
            printedLine(nuclide: nuclide, value: value, unit: unit, corrupt: corrupt)
        }
        func emptyReply(to request: SimulatedRequest) -> [UInt8] { [] }
    }
}

extension SimulatedModel {
    public static let line = SimulatedModel(DoseCalibratorLineFamily.self)
}
