import Foundation

/// A site-local calendar day, written `YYYY-MM-DD` (the `local_date` of qc.* events).
///
/// Days compare and step by calendar, not by 24-hour periods, so a report period does not
/// drift across a daylight-saving change.
public struct LocalDay: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The Gregorian year, month (1–12) and day of the month.
    public let year: Int, month: Int, day: Int

    /// Reads `YYYY-MM-DD`; `nil` unless it names a real Gregorian day (no 2026-02-30).
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
            let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            (1...12).contains(month), (1...Self.days(inMonth: month, year: year)).contains(day)
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// The day that holds `date` in `zone`.
    public init(containing date: Date, zone: TimeZone) {
        let c = Self.calendar(zone).dateComponents([.year, .month, .day], from: date)
        year = c.year!
        month = c.month!
        day = c.day!
    }

    /// `today`, `yesterday` or `YYYY-MM-DD`, relative to `now` in `zone`.
    public init?(argument: String, now: Date, zone: TimeZone) {
        switch argument.lowercased() {
        case "today": self.init(containing: now, zone: zone)
        case "yesterday": self = LocalDay(containing: now, zone: zone).adding(days: -1)
        default: self.init(argument)
        }
    }

    /// `YYYY-MM-DD`.
    public var description: String { String(format: "%04d-%02d-%02d", year, month, day) }

    /// Month and day only (`11-29`), for chart axes.
    public var shortDescription: String { String(format: "%02d-%02d", month, day) }

    /// The day `count` calendar days later (earlier when negative).
    public func adding(days count: Int) -> LocalDay {
        let calendar = Self.calendar(TimeZone(identifier: "UTC")!)
        let noon = calendar.date(from: DateComponents(year: year, month: month, day: day, hour: 12))!
        return LocalDay(containing: calendar.date(byAdding: .day, value: count, to: noon)!, zone: calendar.timeZone)
    }

    /// Calendar days from `self` to `other` (negative when `other` is earlier).
    public func days(to other: LocalDay) -> Int {
        let calendar = Self.calendar(TimeZone(identifier: "UTC")!)
        let from = calendar.date(from: DateComponents(year: year, month: month, day: day))!
        let to = calendar.date(from: DateComponents(year: other.year, month: other.month, day: other.day))!
        return calendar.dateComponents([.day], from: from, to: to).day!
    }

    /// Local midnight at the start of this day in `zone`.
    public func start(in zone: TimeZone) -> Date {
        let calendar = Self.calendar(zone)
        return calendar.startOfDay(for: calendar.date(from: DateComponents(year: year, month: month, day: day, hour: 12))!)
    }

    /// Earlier days first.
    public static func < (lhs: LocalDay, rhs: LocalDay) -> Bool {
        (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
    }

    private static func calendar(_ zone: TimeZone) -> Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        return calendar
    }

    private static func days(inMonth month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}
