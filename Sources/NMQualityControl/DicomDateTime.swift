import Foundation

/// DICOM DA, TM and DT values (PS3.5 §6.2) as instants. Dates and times without an
/// offset are wall-clock times at the site: the Timezone Offset From UTC (0008,0201) when
/// the instance has one, else the site's time zone. Every parser is total: `nil` for
/// anything it cannot read.
public enum DicomDateTime {
    /// `YYYYMMDD` (also the old `YYYY.MM.DD`) as (year, month, day).
    static func date(_ text: String) -> (Int, Int, Int)? {
        let digits = text.trimmingCharacters(in: .whitespaces).filter { $0 != "." }
        guard digits.count == 8, digits.allSatisfy(\.isASCIIDigit) else { return nil }
        let chars = Array(digits)
        let year = Int(String(chars[0..<4]))!
        let month = Int(String(chars[4..<6]))!
        let day = Int(String(chars[6..<8]))!
        guard (1...12).contains(month), (1...31).contains(day) else { return nil }
        return (year, month, day)
    }

    /// `HH[MM[SS[.F{1,6}]]]` (also the old `HH:MM:SS`) as seconds since midnight.
    static func time(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let parts = trimmed.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let main = parts[0].filter { $0 != ":" }
        guard [2, 4, 6].contains(main.count), main.allSatisfy(\.isASCIIDigit) else { return nil }
        let chars = Array(main)
        let hour = Int(String(chars[0..<2]))!
        let minute = chars.count >= 4 ? Int(String(chars[2..<4]))! : 0
        let second = chars.count >= 6 ? Int(String(chars[4..<6]))! : 0
        guard hour < 24, minute < 60, second < 61 else { return nil }
        var fraction = 0.0
        if parts.count == 2 {
            let digits = parts[1]
            guard (1...6).contains(digits.count), digits.allSatisfy(\.isASCIIDigit) else { return nil }
            fraction = Double("0." + digits)!
        }
        return Double(hour * 3600 + minute * 60 + second) + fraction
    }

    /// `+HHMM` / `-HHMM` as seconds east of UTC.
    static func offset(_ text: String) -> Int? {
        let chars = Array(text.trimmingCharacters(in: .whitespaces))
        guard chars.count == 5, chars[0] == "+" || chars[0] == "-", chars[1...].allSatisfy(\.isASCIIDigit) else { return nil }
        let hours = Int(String(chars[1...2]))!
        let minutes = Int(String(chars[3...4]))!
        guard hours <= 14, minutes < 60 else { return nil }
        return (chars[0] == "-" ? -1 : 1) * (hours * 3600 + minutes * 60)
    }

    /// A DA and a TM as an instant: at `offset` (seconds east of UTC) when given, else the
    /// wall-clock time in `zone` (for a time that a DST change skips or repeats, the
    /// calendar's choice: the later offset).
    public static func instant(date: String, time: String, offset: String? = nil, zone: TimeZone) -> Date? {
        guard let (year, month, day) = Self.date(date), let seconds = Self.time(time) else { return nil }
        return instant(year: year, month: month, day: day, seconds: seconds, offset: offset.flatMap(Self.offset), zone: zone)
    }

    /// A DT (`YYYYMMDDHHMMSS.FFFFFF&ZZXX`, any precision down to the hour) as an instant;
    /// its own offset wins over `offset`, which wins over `zone`.
    public static func instant(dateTime: String, offset: String? = nil, zone: TimeZone) -> Date? {
        var text = dateTime.trimmingCharacters(in: .whitespaces)
        var ownOffset: Int?
        if let sign = text.lastIndex(where: { $0 == "+" || $0 == "-" }) {
            guard let parsed = Self.offset(String(text[sign...])) else { return nil }
            ownOffset = parsed
            text = String(text[..<sign])
        }
        guard text.count >= 10, let (year, month, day) = date(String(text.prefix(8))), let seconds = time(String(text.dropFirst(8))) else {
            return nil
        }
        return instant(
            year: year, month: month, day: day, seconds: seconds, offset: ownOffset ?? offset.flatMap(Self.offset), zone: zone)
    }

    static func instant(year: Int, month: Int, day: Int, seconds: Double, offset: Int?, zone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = offset.flatMap { TimeZone(secondsFromGMT: $0) } ?? zone
        let whole = Int(seconds)
        let components = DateComponents(
            year: year, month: month, day: day, hour: whole / 3600, minute: (whole / 60) % 60, second: whole % 60)
        guard let date = calendar.date(from: components), calendar.component(.day, from: date) == day else { return nil }
        return date.addingTimeInterval(seconds - Double(whole))
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
