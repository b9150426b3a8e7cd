import Foundation
import NMBridgeCore

/// One activity reading decoded from a dose calibrator's bytes, before settling.
public struct ActivityReading: Sendable, Equatable {
    /// Canonical nuclide name when the device's text is one (`Tc-99m`), else the text
    /// trimmed (a calibration number such as `"234"` or a custom label).
    public var nuclide: String
    /// The device's nuclide or setting text, as sent (trimmed).
    public var nuclideText: String
    public var activityBq: Double
    /// The device's own text of the value, e.g. `"20.00 mCi"`.
    public var reading: String
    public var unit: ActivityUnit
    public var chamber: Int?
    public var calibrationNumber: String?
    public var deviceTime: String?
    /// The device marked this reading as final (settled) itself.
    public var final: Bool
    /// The bytes it was decoded from.
    public var raw: [UInt8]

    public init(
        nuclideText: String, value: Double, valueText: String? = nil, unit: ActivityUnit, chamber: Int? = nil,
        calibrationNumber: String? = nil, deviceTime: String? = nil, final: Bool = false, raw: [UInt8]
    ) {
        let trimmed = nuclideText.trimmingCharacters(in: .whitespaces)
        self.nuclideText = trimmed
        self.nuclide = Radionuclide.canonicalName(trimmed) ?? trimmed
        self.activityBq = value * unit.becquerel
        self.reading = "\(valueText ?? Self.format(value)) \(unit.rawValue)"
        self.unit = unit
        self.chamber = chamber
        self.calibrationNumber = calibrationNumber
        self.deviceTime = deviceTime
        self.final = final
        self.raw = raw
    }

    /// Up to 4 significant decimals, as a display would show a float32 value.
    static func format(_ value: Double) -> String {
        var text = String(format: "%.4g", value)
        if text.contains("e") { text = String(value) }
        return text
    }
}
