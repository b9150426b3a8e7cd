import Foundation
import NMBridgeCore

// Capintec CRC-15R and CRC-15 PET, RS-232 remote reading.
//
// Source: DOMAIN.md ("Capintec CRC-15R / CRC-15 PET"), gathered from the CRC-15R owner's
// manual's remote-operation section and public driver code; not yet verified on an
// instrument. Assumptions:
// - 4800 baud 8N1; polled: the host sends `@ABCDEFGHIJK\r\n` and the calibrator returns
//   11 bytes: 6 characters of nuclide name (space padded, e.g. "F 18  "), one unit-code
//   byte, then the activity as a little-endian IEEE-754 float32. No terminator.
// - Unit codes differ between sources (1=µCi 2=mCi 3=Ci 5=MBq 6=GBq, or 2=µCi 3=mCi 4=Ci
//   5=MBq 6=GBq); both agree on 5 = MBq and 6 = GBq. The default is the first; the table
//   is configurable per device. Code 0 is taken as "no reading".
// - The reply carries no "final" flag: settling is judged by the driver.
// - Nothing we send changes a setting: the CRC-15R has no nuclide control over RS-232.

/// Request and reply of the CRC-15R remote protocol.
public enum CapintecCRC15R {
    /// Asks for nuclide (A–F), unit code (G) and activity (H–K) in one go.
    public static let request: [UInt8] = Array("@ABCDEFGHIJK\r\n".utf8)
    public static let replyLength = 11

    public static let defaultUnitCodes = UnitCodeTable([1: .uci, 2: .mci, 3: .ci, 5: .mbq, 6: .gbq])

    /// Decodes one 11-byte reply.
    public static func decode(_ reply: [UInt8], unitCodes: UnitCodeTable = defaultUnitCodes) -> DecodedMessage {
        guard reply.count == replyLength else {
            return .violation(ProtocolViolation("reply of \(reply.count) bytes, expected \(replyLength)", bytes: reply))
        }
        let nameBytes = reply[0..<6]
        guard nameBytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            return .violation(ProtocolViolation("nuclide name is not printable text", bytes: reply))
        }
        let name = String(decoding: nameBytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        let code = Int(reply[6])
        let bits = UInt32(reply[7]) | UInt32(reply[8]) << 8 | UInt32(reply[9]) << 16 | UInt32(reply[10]) << 24
        // Through the shortest decimal text of the float32, so that 6.93 stays 6.93 and
        // does not become 6.929999828.
        let float = Float(bitPattern: bits)
        let value = float.isFinite ? Double(String(float)) ?? Double(float) : Double(float)
        if code == 0 || name.isEmpty { return .noReading(raw: reply) }
        guard let unit = unitCodes[code] else {
            return .violation(ProtocolViolation("unknown unit code \(code) (see unit_codes)", bytes: reply))
        }
        if let violation = plausibility(value, unit: unit, raw: reply) { return .violation(violation) }
        return .reading(ActivityReading(nuclideText: name, value: value, unit: unit, raw: reply))
    }

    /// Encodes a reply (for the simulator).
    public static func encode(nuclide: String, unitCode: UInt8, value: Float) -> [UInt8] {
        var name = Array(nuclide.utf8.prefix(6))
        name += [UInt8](repeating: 0x20, count: 6 - name.count)
        let bits = value.bitPattern
        return name + [unitCode, UInt8(bits & 0xFF), UInt8(bits >> 8 & 0xFF), UInt8(bits >> 16 & 0xFF), UInt8(bits >> 24)]
    }

    /// How the CRC-15R spells a nuclide on its display: "Tc-99m" → "Tc99m", "F-18" → "F 18".
    public static func displayName(_ canonical: String) -> String {
        let parts = canonical.split(separator: "-")
        guard parts.count == 2 else { return canonical }
        return parts[0].count == 1 ? "\(parts[0]) \(parts[1])" : "\(parts[0])\(parts[1])"
    }
}
