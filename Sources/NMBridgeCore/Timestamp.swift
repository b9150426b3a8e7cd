import Foundation

/// RFC 3339 timestamps in UTC with microseconds, the journal's one time format.
///
/// Fixed width (`2026-11-29T07:00:00.123456Z`), so text order is time order: the journal
/// stores this text and compares it directly in range queries.
public enum Timestamp {
    /// Formats `date` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, to the nearest microsecond,
    /// so that `format(parse(text)!) == text`).
    public static func format(_ date: Date) -> String {
        // Clamped to years 1…9999, compared as Double (the upper bound rounds up to the
        // next representable value) and converted only when in range; NaN gives the lower.
        let upper: Int64 = 253_402_300_799_999_999  // 9999-12-31T23:59:59.999999Z
        let lower: Int64 = -62_135_596_800_000_000  // 0001-01-01T00:00:00.000000Z
        let scaled = (date.timeIntervalSince1970 * 1_000_000).rounded()
        let micros = scaled >= Double(upper) ? upper : scaled > Double(lower) ? Int64(scaled) : lower
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = civil(fromDays: days)
        // Written straight into the string's storage: this runs once per journaled event.
        return String(unsafeUninitializedCapacity: 27) { buffer in
            var index = 0
            func put(_ value: Int64, width: Int) {
                var v = value
                for i in stride(from: index + width - 1, through: index, by: -1) {
                    buffer[i] = UInt8(ascii: "0") + UInt8(v % 10)
                    v /= 10
                }
                index += width
            }
            func put(_ separator: Unicode.Scalar) {
                buffer[index] = UInt8(ascii: separator)
                index += 1
            }
            put(year, width: 4)
            put("-")
            put(month, width: 2)
            put("-")
            put(day, width: 2)
            put("T")
            put(secondOfDay / 3600, width: 2)
            put(":")
            put(secondOfDay / 60 % 60, width: 2)
            put(":")
            put(secondOfDay % 60, width: 2)
            put(".")
            put(fraction, width: 6)
            put("Z")
            return index
        }
    }

    /// Parses an RFC 3339 date-time (`T` or space separator, optional fraction, `Z` or
    /// `±hh:mm`), or a plain date (`2026-11-29`, meaning midnight UTC). `nil` if malformed.
    public static func parse(_ text: String) -> Date? {
        let c = Array(text.utf8)
        func digits(_ start: Int, _ count: Int) -> Int64? {
            guard start + count <= c.count else { return nil }
            var v: Int64 = 0
            for i in start..<(start + count) {
                guard c[i] >= UInt8(ascii: "0"), c[i] <= UInt8(ascii: "9") else { return nil }
                v = v * 10 + Int64(c[i] - UInt8(ascii: "0"))
            }
            return v
        }
        guard c.count >= 10, let year = digits(0, 4), c[4] == UInt8(ascii: "-"), let month = digits(5, 2),
            c[7] == UInt8(ascii: "-"), let day = digits(8, 2), (1...12).contains(month),
            (1...daysIn(month: month, year: year)).contains(day)
        else { return nil }
        let dayNumber = days(fromCivil: year, month, day)
        if c.count == 10 { return Date(timeIntervalSince1970: Double(dayNumber * 86_400)) }
        guard c.count >= 19, c[10] == UInt8(ascii: "T") || c[10] == UInt8(ascii: "t") || c[10] == UInt8(ascii: " "),
            let hour = digits(11, 2), c[13] == UInt8(ascii: ":"), let minute = digits(14, 2),
            c[16] == UInt8(ascii: ":"), let second = digits(17, 2), hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        var fraction = 0.0
        if i < c.count, c[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            let start = i
            while i < c.count, c[i] >= UInt8(ascii: "0"), c[i] <= UInt8(ascii: "9") {
                fraction += Double(c[i] - UInt8(ascii: "0")) * scale
                scale /= 10
                i += 1
            }
            guard i > start, i - start <= 12 else { return nil }
        }
        guard i < c.count else { return nil }
        var offsetSeconds: Int64 = 0
        switch c[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard i + 1 == c.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard i + 6 == c.count, let oh = digits(i + 1, 2), c[i + 3] == UInt8(ascii: ":"),
                let om = digits(i + 4, 2), oh < 24, om < 60
            else { return nil }
            offsetSeconds = (oh * 3600 + om * 60) * (c[i] == UInt8(ascii: "+") ? 1 : -1)
        default:
            return nil
        }
        let seconds = dayNumber * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    /// Parses a point in time for `--since`/`?since=`: RFC 3339, a date, or a duration
    /// back from `now` such as `90s`, `15m`, `2h`, `7d`.
    public static func parseTimeSpec(_ text: String, now: Date = Date()) -> Date? {
        if let date = parse(text) { return date }
        guard let unit = text.last, let amount = Double(text.dropLast()), amount >= 0, amount.isFinite else {
            return nil
        }
        let seconds: Double
        switch unit {
        case "s": seconds = amount
        case "m": seconds = amount * 60
        case "h": seconds = amount * 3600
        case "d": seconds = amount * 86_400
        default: return nil
        }
        return now.addingTimeInterval(-seconds)
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    // Days since 1970-01-01 to a proleptic Gregorian date and back (H. Hinnant's algorithms).
    private static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    private static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
