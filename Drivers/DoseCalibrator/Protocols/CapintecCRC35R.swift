import Foundation
import NMBridgeCore

// Capintec CRC-35R (multi-chamber), RS-232 remote reading.
//
// Source: DOMAIN.md ("Capintec CRC-35R"), from the CRC-35R manual's communication section
// as quoted by public driver code; not yet verified on an instrument. Assumptions:
// - 4800 baud 8N1. Every message, both ways, is framed: STX (0x02), a length byte
//   (len(body) + 0x41), the body, a checksum, ETX (0x03), with
//   checksum = ((STX + length byte + sum of body bytes) & 0x7F) + 0x21.
// - `R<n>` reads chamber n (1–8). The reply body is `DR<n>,AB<name>,<activity><U>`: the
//   chamber, "AB" and the nuclide name or calibration number (space padded; `&` marks a
//   division, e.g. "990&2"), then the activity text and one unit digit U. U: 3 = kBq,
//   4 = MBq, 5 = GBq; public code disagrees on 4, so the table is configurable.
// - A name field that is a number (or holds `&`) is a calibration number, not a nuclide.
// - No "final" flag: settling is judged by the driver. Only `R<n>` is ever sent.

/// Framing and bodies of the CRC-35R protocol.
public enum CapintecCRC35R {
    public static let stx: UInt8 = 0x02
    public static let etx: UInt8 = 0x03
    public static let defaultUnitCodes = UnitCodeTable([3: .kbq, 4: .mbq, 5: .gbq])
    /// Longest body a length byte can announce that we accept.
    public static let maxBody = 64

    public static func checksum(lengthByte: UInt8, body: some Sequence<UInt8>) -> UInt8 {
        var sum = Int(stx) + Int(lengthByte)
        for byte in body { sum += Int(byte) }
        return UInt8((sum & 0x7F) + 0x21)
    }

    /// A whole frame around `body`.
    public static func frame(_ body: [UInt8]) -> [UInt8] {
        let length = UInt8(truncatingIfNeeded: body.count + 0x41)
        return [stx, length] + body + [checksum(lengthByte: length, body: body), etx]
    }

    /// The request for one chamber's reading.
    public static func readRequest(chamber: Int) -> [UInt8] { frame(Array("R\(chamber)".utf8)) }

    /// Decodes a reply body (the framing already checked).
    public static func decodeBody(_ body: [UInt8], frame raw: [UInt8], unitCodes: UnitCodeTable = defaultUnitCodes) -> DecodedMessage {
        guard body.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }), body.starts(with: Array("DR".utf8)) else {
            return .violation(ProtocolViolation("reply body is not DR<chamber>,…", bytes: raw))
        }
        let fields = String(decoding: body.dropFirst(2), as: UTF8.self).split(separator: ",", omittingEmptySubsequences: false)
        guard fields.count == 3, let chamber = Int(fields[0]), (1...8).contains(chamber) else {
            return .violation(ProtocolViolation("reply body is not DR<chamber>,AB<name>,<activity><unit>", bytes: raw))
        }
        var nameField = Substring(fields[1])
        if nameField.hasPrefix("AB") { nameField = nameField.dropFirst(2) }
        let name = nameField.trimmingCharacters(in: .whitespaces)
        let activityField = fields[2].trimmingCharacters(in: .whitespaces)
        guard let unitDigit = activityField.last, let code = unitDigit.wholeNumberValue else {
            return .violation(ProtocolViolation("activity field has no unit digit", bytes: raw))
        }
        let valueText = activityField.dropLast().trimmingCharacters(in: .whitespaces)
        if name.isEmpty { return .noReading(raw: raw) }
        guard let value = Double(valueText) else {
            return .violation(ProtocolViolation("activity \"\(valueText)\" is not a number", bytes: raw))
        }
        guard let unit = unitCodes[code] else {
            return .violation(ProtocolViolation("unknown unit code \(code) (see unit_codes)", bytes: raw))
        }
        if let violation = plausibility(value, unit: unit, raw: raw) { return .violation(violation) }
        let isCalibrationNumber = name.contains("&") || (!name.isEmpty && name.allSatisfy(\.isNumber))
        return .reading(
            ActivityReading(
                nuclideText: name, value: value, valueText: valueText, unit: unit, chamber: chamber,
                calibrationNumber: isCalibrationNumber ? name : nil, raw: raw))
    }

    /// A reply body for the simulator: `DR1,ABTc99m ,740.0 4`.
    public static func replyBody(chamber: Int, name: String, valueText: String, unitCode: Int) -> [UInt8] {
        let padded = name.padding(toLength: max(6, name.count), withPad: " ", startingAt: 0)
        return Array("DR\(chamber),AB\(padded),\(valueText)\(unitCode)".utf8)
    }
}

/// Finds CRC-35R frames in a byte stream, resynchronizing on the next STX after anything
/// that is not a valid frame. Never holds more than one maximal frame.
public struct CRC35RFramer: Sendable {
    private var buffer: [UInt8] = []

    public init() {}

    public enum Output: Sendable, Equatable {
        case frame(body: [UInt8], raw: [UInt8])
        case violation(ProtocolViolation)
    }

    public mutating func push(_ bytes: some Sequence<UInt8>) -> [Output] {
        buffer.append(contentsOf: bytes)
        var out: [Output] = []
        while !buffer.isEmpty {
            // Skip to the next STX; what came before it is noise.
            if buffer[0] != CapintecCRC35R.stx {
                let end = buffer.firstIndex(of: CapintecCRC35R.stx) ?? buffer.count
                out.append(.violation(ProtocolViolation("bytes outside a frame", bytes: Array(buffer[0..<min(end, 64)]))))
                buffer.removeFirst(end)
                continue
            }
            guard buffer.count >= 2 else { break }
            let lengthByte = buffer[1]
            let bodyLength = Int(lengthByte) - 0x41
            guard (0...CapintecCRC35R.maxBody).contains(bodyLength) else {
                out.append(.violation(ProtocolViolation("impossible frame length byte 0x\(String(lengthByte, radix: 16))", bytes: Array(buffer.prefix(2)))))
                buffer.removeFirst(1)
                continue
            }
            let total = bodyLength + 4
            guard buffer.count >= total else { break }
            let raw = Array(buffer[0..<total])
            let body = Array(raw[2..<(2 + bodyLength)])
            let expected = CapintecCRC35R.checksum(lengthByte: lengthByte, body: body)
            if raw[total - 1] != CapintecCRC35R.etx {
                out.append(.violation(ProtocolViolation("frame does not end with ETX", bytes: raw)))
                buffer.removeFirst(1)
                continue
            }
            if raw[total - 2] != expected {
                out.append(
                    .violation(
                        ProtocolViolation(
                            "checksum 0x\(String(raw[total - 2], radix: 16)) should be 0x\(String(expected, radix: 16))", bytes: raw)))
                buffer.removeFirst(total)
                continue
            }
            out.append(.frame(body: body, raw: raw))
            buffer.removeFirst(total)
        }
        return out
    }

    /// Bytes of an unfinished frame.
    public var pending: Int { buffer.count }

    public mutating func reset() { buffer.removeAll(keepingCapacity: true) }
}
