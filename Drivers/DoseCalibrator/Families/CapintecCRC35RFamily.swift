import NMBridgeCore
import NMTransport

/// Capintec CRC-35R: framed ASCII with a checksum, one request per chamber
/// (Protocols/CapintecCRC35R.swift).
public struct CapintecCRC35RFamily: DoseCalibratorFamily {
    public static let driverName = "capintec-crc35r"
    public static let summary = "Capintec CRC-35R: framed ASCII with checksum, up to 8 chambers."
    public static let defaultSerial = SerialSettings(baud: 4800)
    public static let isPolled = true
    public static let defaultSettle = SettleRule.Mode.polls(count: 3, band: 0.01)
    public static let familyKeys = [
        unitCodesKey,
        DriverConfigKey("chambers", "array of integers", "Chambers to read, 1–8 (default [1])."),
    ]
    public static let framing = ReplyFraming.checksummedFrame
    public static let simulatorName = "crc35r"

    let unitCodes: UnitCodeTable
    let chambers: [Int]

    public init?(from reader: ConfigTableReader) {
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
        guard let codes else { return nil }
        unitCodes = codes
        self.chambers = chambers
    }

    public var pollRequests: [PollRequest] {
        chambers.map { PollRequest(CapintecCRC35R.readRequest(chamber: $0), chamber: $0) }
    }

    public func decode(_ reply: [UInt8], raw: [UInt8], answering request: PollRequest?) -> DecodedMessage {
        let message = CapintecCRC35R.decodeBody(reply, frame: raw, unitCodes: unitCodes)
        if case .reading(let reading) = message, let asked = request?.chamber, reading.chamber != asked {
            return .violation(ProtocolViolation("asked chamber \(asked), reply is for chamber \(reading.chamber ?? 0)", bytes: raw))
        }
        return message
    }

    public static func simulatedInstrument() -> any SimulatedInstrument { Instrument() }

    /// Answers `R<n>` frames; reports kBq, MBq or GBq as the instrument does.
    struct Instrument: SimulatedInstrument {
        private var framer = CRC35RFramer()
        var garbageLength: Int { 24 }

        mutating func requests(in bytes: [UInt8]) -> [SimulatedRequest] {
            framer.push(bytes).compactMap { output in
                guard case .frame(let body, _) = output, body.count == 2, body[0] == UInt8(ascii: "R"),
                    let n = Int(String(UnicodeScalar(body[1]))), (1...8).contains(n)
                else { return nil }
                return SimulatedRequest(chamber: n)
            }
        }

        func reply(to request: SimulatedRequest, nuclide: String, value: Double, unit: ActivityUnit, corrupt: Bool) -> [UInt8] {
            let bq = value * unit.becquerel
            let (shown, code) = bq >= 1e10 ? (bq / 1e9, 5) : bq >= 1e6 ? (bq / 1e6, 4) : (bq / 1e3, 3)
            var frame = CapintecCRC35R.frame(
                CapintecCRC35R.replyBody(
                    chamber: request.chamber ?? 1, name: CapintecCRC15R.displayName(nuclide), valueText: displayText(shown),
                    unitCode: code))
            if corrupt { frame[frame.count - 2] ^= 0x5A }
            return frame
        }

        func emptyReply(to request: SimulatedRequest) -> [UInt8] {
            CapintecCRC35R.frame(CapintecCRC35R.replyBody(chamber: request.chamber ?? 1, name: "", valueText: "", unitCode: 4))
        }
    }
}

extension SimulatedModel {
    public static let crc35r = SimulatedModel(CapintecCRC35RFamily.self)
}
