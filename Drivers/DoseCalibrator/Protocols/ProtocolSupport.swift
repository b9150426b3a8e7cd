import Foundation
import NMBridgeCore

/// Why bytes from a calibrator were not a reading. Journaled as `device.protocol_error`
/// (rate-limited) with the bytes in hex; never guessed at.
public struct ProtocolViolation: Error, Sendable, Equatable, CustomStringConvertible {
    public var error: String
    public var bytes: [UInt8]

    public init(_ error: String, bytes: [UInt8]) {
        self.error = error
        self.bytes = bytes
    }

    public var description: String { "\(error) (\(Hex.encode(bytes)))" }
}

/// What one message from a calibrator turned out to be.
public enum DecodedMessage: Sendable, Equatable {
    case reading(ActivityReading)
    /// The calibrator answered but has nothing to report (empty chamber, idle screen).
    case noReading(raw: [UInt8])
    case violation(ProtocolViolation)
}

/// Checks that a value is a possible activity: finite, not negative, below `maxBq`.
/// Readings of an empty chamber (background) are small but possible.
func plausibility(_ value: Double, unit: ActivityUnit, raw: [UInt8], maxBq: Double = DoseCalibratorLimits.maxActivityBq)
    -> ProtocolViolation?
{
    if value.isNaN || value.isInfinite { return ProtocolViolation("impossible value: not a number", bytes: raw) }
    if value < 0 { return ProtocolViolation("impossible value: negative activity \(value) \(unit.rawValue)", bytes: raw) }
    if value * unit.becquerel > maxBq {
        return ProtocolViolation("impossible value: \(value) \(unit.rawValue) exceeds any dose calibrator's range", bytes: raw)
    }
    return nil
}

public enum DoseCalibratorLimits {
    /// Above any dose calibrator's range (the largest go to about 6 Ci ≈ 222 GBq): 1 TBq.
    public static let maxActivityBq = 1e12
    /// The longest line or frame a parser keeps while looking for its end.
    public static let maxMessageBytes = 512
}

/// Splits a byte stream into lines ended by LF (a preceding CR is dropped). A line longer
/// than `DoseCalibratorLimits.maxMessageBytes` is cut off and reported, so a device that
/// never sends a line end cannot grow memory.
public struct LineSplitter: Sendable {
    private var pending: [UInt8] = []
    private var discarding = false

    public init() {}

    /// Appends bytes; returns the complete lines and any overlong fragments.
    public mutating func push(_ bytes: some Sequence<UInt8>) -> [Result<[UInt8], ProtocolViolation>] {
        var out: [Result<[UInt8], ProtocolViolation>] = []
        for byte in bytes {
            if byte == 0x0A {
                if discarding {
                    discarding = false
                } else {
                    if pending.last == 0x0D { pending.removeLast() }
                    out.append(.success(pending))
                }
                pending.removeAll(keepingCapacity: true)
                continue
            }
            if discarding { continue }
            pending.append(byte)
            if pending.count > DoseCalibratorLimits.maxMessageBytes {
                out.append(.failure(ProtocolViolation("line longer than \(DoseCalibratorLimits.maxMessageBytes) bytes without an end", bytes: Array(pending.prefix(64)))))
                pending.removeAll(keepingCapacity: true)
                discarding = true
            }
        }
        return out
    }

    /// Bytes of an unfinished line.
    public var partial: [UInt8] { pending }

    public mutating func reset() {
        pending.removeAll(keepingCapacity: true)
        discarding = false
    }
}
