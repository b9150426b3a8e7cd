import Foundation

/// A radionuclide known to nmbridge: its canonical name and physical half-life.
///
/// Half-lives are from NNDC NuDat 3 / ENSDF evaluated data (as listed in DOMAIN.md):
/// change a value only together with its source.
public struct Radionuclide: Sendable, Hashable {
    /// Canonical name: element symbol, hyphen, mass number, metastable `m` (`Tc-99m`).
    public let name: String
    public let halfLifeSeconds: Double

    public init(name: String, halfLifeSeconds: Double) {
        self.name = name
        self.halfLifeSeconds = halfLifeSeconds
    }

    private static let minute = 60.0
    private static let hour = 3600.0
    private static let day = 86400.0
    private static let year = 365.2422 * 86400.0

    /// The nuclides of a nuclear-medicine department and its check sources.
    public static let known: [Radionuclide] = [
        Radionuclide(name: "Tc-99m", halfLifeSeconds: 6.0067 * hour),
        Radionuclide(name: "F-18", halfLifeSeconds: 109.77 * minute),
        Radionuclide(name: "Ga-68", halfLifeSeconds: 67.71 * minute),
        Radionuclide(name: "I-131", halfLifeSeconds: 8.0252 * day),
        Radionuclide(name: "Lu-177", halfLifeSeconds: 6.647 * day),
        Radionuclide(name: "In-111", halfLifeSeconds: 2.8047 * day),
        Radionuclide(name: "Tl-201", halfLifeSeconds: 3.0421 * day),
        Radionuclide(name: "Co-57", halfLifeSeconds: 271.74 * day),
        Radionuclide(name: "Ba-133", halfLifeSeconds: 10.551 * year),
        Radionuclide(name: "Cs-137", halfLifeSeconds: 30.08 * year),
        // The parent in a Tc-99m generator, for the breakthrough assay (10 CFR 35.204):
        // 65.924 h, NNDC NuDat 3 (ENSDF); DOMAIN.md rounds it to 65.9 h.
        Radionuclide(name: "Mo-99", halfLifeSeconds: 65.924 * hour),
    ]

    /// Finds a known nuclide by any usual spelling: `Tc-99m`, `TC99M`, `Tc99m`, `99mTc`,
    /// `99m-Tc`, `Tc 99m`, `F 18`, `18F`. Case and separators (space, hyphen, underscore)
    /// do not matter.
    public static func named(_ text: String) -> Radionuclide? {
        guard let key = canonicalName(text) else { return nil }
        return known.first { $0.name == key }
    }

    /// The canonical spelling of a nuclide name, known or not (`"xe133"` → `"Xe-133"`);
    /// `nil` when the text is not shaped like a nuclide name.
    public static func canonicalName(_ text: String) -> String? {
        let compact = text.filter { !($0 == " " || $0 == "-" || $0 == "_") }
        guard !compact.isEmpty, compact.count <= 8, compact.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            return nil
        }
        // Either SYMBOL MASS [m] or MASS [m] SYMBOL.
        let chars = Array(compact)
        var symbol = ""
        var mass = ""
        var metastable = false
        if chars[0].isLetter {
            var i = 0
            while i < chars.count, chars[i].isLetter { symbol.append(chars[i]); i += 1 }
            while i < chars.count, chars[i].isNumber { mass.append(chars[i]); i += 1 }
            if i < chars.count, chars[i] == "m" || chars[i] == "M" { metastable = true; i += 1 }
            guard i == chars.count else { return nil }
        } else {
            var i = 0
            while i < chars.count, chars[i].isNumber { mass.append(chars[i]); i += 1 }
            // "99mTc": an m directly after the mass is metastable when a symbol follows; an
            // upper-case M followed by a lower-case letter begins the symbol ("99Mo").
            if i + 1 < chars.count, chars[i] == "m" || (chars[i] == "M" && !chars[i + 1].isLowercase), chars[i + 1].isLetter {
                metastable = true
                i += 1
            }
            while i < chars.count, chars[i].isLetter { symbol.append(chars[i]); i += 1 }
            guard i == chars.count else { return nil }
        }
        guard (1...2).contains(symbol.count), (1...3).contains(mass.count), let number = Int(mass), number > 0 else {
            return nil
        }
        let element = symbol.prefix(1).uppercased() + symbol.dropFirst().lowercased()
        return "\(element)-\(number)\(metastable ? "m" : "")"
    }

    /// Activity after `elapsed` seconds of decay from `activity` (negative `elapsed`
    /// goes back in time): A = A0 · exp(−ln 2 · Δt / T½).
    public func decay(_ activity: Double, over elapsed: Double) -> Double {
        activity * exp(-M_LN2 * elapsed / halfLifeSeconds)
    }
}

/// An activity unit as dose calibrators display it.
public enum ActivityUnit: String, Sendable, CaseIterable {
    case bq = "Bq"
    case kbq = "kBq"
    case mbq = "MBq"
    case gbq = "GBq"
    case uci = "µCi"
    case mci = "mCi"
    case ci = "Ci"

    /// Becquerel per unit (1 Ci = 3.7e10 Bq exactly).
    public var becquerel: Double {
        switch self {
        case .bq: 1
        case .kbq: 1e3
        case .mbq: 1e6
        case .gbq: 1e9
        case .uci: 3.7e4
        case .mci: 3.7e7
        case .ci: 3.7e10
        }
    }

    /// Parses a unit as devices print it: `MBq`, `mbq`, `uCi`, `µCi`, `μCi` (Greek mu).
    public init?(text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        let folded = t.replacingOccurrences(of: "μ", with: "u").replacingOccurrences(of: "µ", with: "u")
        switch folded.lowercased() {
        case "bq": self = .bq
        case "kbq": self = .kbq
        case "mbq": self = .mbq
        case "gbq": self = .gbq
        case "uci": self = .uci
        case "ci": self = .ci
        case "mci":
            // "MCi" (mega) is not a dose calibrator unit; "mCi" and "MCI" both mean milli.
            self = .mci
        default: return nil
        }
    }
}
