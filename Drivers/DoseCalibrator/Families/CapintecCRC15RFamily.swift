import NMBridgeCore
import NMTransport

/// Capintec CRC-15R / CRC-15 PET: polled, 11-byte binary reply (Protocols/CapintecCRC15R.swift).
public struct CapintecCRC15RFamily: DoseCalibratorFamily {
    public static let driverName = "capintec-crc15r"
    public static let summary = "Capintec CRC-15R / CRC-15 PET: polled, 11-byte binary reply."
    public static let defaultSerial = SerialSettings(baud: 4800)
    public static let isPolled = true
    public static let defaultSettle = SettleRule.Mode.polls(count: 3, band: 0.01)
    public static let familyKeys = [unitCodesKey]
    public static let framing = ReplyFraming.fixedLength(CapintecCRC15R.replyLength)
    public static let simulatorName = "crc15r"

    let unitCodes: UnitCodeTable

    public init?(from reader: ConfigTableReader) {
        guard let codes = UnitCodeTable.read(from: reader, defaults: CapintecCRC15R.defaultUnitCodes) else { return nil }
        unitCodes = codes
    }

    public var pollRequests: [PollRequest] { [PollRequest(CapintecCRC15R.request)] }

    public func decode(_ reply: [UInt8], raw: [UInt8], answering request: PollRequest?) -> DecodedMessage {
        CapintecCRC15R.decode(reply, unitCodes: unitCodes)
    }

    public static func simulatedInstrument() -> any SimulatedInstrument { Instrument() }

    /// Each letter A–K asks for its byte of the 11-byte reply; the letters that arrived
    /// together are answered together.
    struct Instrument: SimulatedInstrument {
        var garbageLength: Int { CapintecCRC15R.replyLength }

        mutating func requests(in bytes: [UInt8]) -> [SimulatedRequest] {
            let letters = bytes.filter { (UInt8(ascii: "A")...UInt8(ascii: "K")).contains($0) }
            return letters.isEmpty ? [] : [SimulatedRequest(detail: letters)]
        }

        func reply(to request: SimulatedRequest, nuclide: String, value: Double, unit: ActivityUnit, corrupt: Bool) -> [UInt8] {
            let code = CapintecCRC15R.defaultUnitCodes.units.first { $0.value == unit }?.key ?? 5
            let inCode = code == 5 && unit != .mbq ? value * unit.becquerel / 1e6 : value
            let full = CapintecCRC15R.encode(
                nuclide: CapintecCRC15R.displayName(nuclide), unitCode: corrupt ? 0xEE : UInt8(code), value: Float(inCode))
            return request.detail.map { full[Int($0 - UInt8(ascii: "A"))] }
        }

        func emptyReply(to request: SimulatedRequest) -> [UInt8] {
            let full = CapintecCRC15R.encode(nuclide: "", unitCode: 0, value: 0)
            return request.detail.map { full[Int($0 - UInt8(ascii: "A"))] }
        }
    }
}

extension SimulatedModel {
    public static let crc15r = SimulatedModel(CapintecCRC15RFamily.self)
}
