import Foundation

/// Which events a query or a subscription wants. Empty lists match everything.
public struct EventFilter: Sendable, Equatable {
    /// Device ids; an event matches if its device is one of them.
    public var devices: [String]
    /// Kind patterns with `*` (any run of characters) and `?` (one character),
    /// e.g. `dosecal.*`; an event matches if its kind matches one of them.
    public var kinds: [String]
    /// Events at or after this time.
    public var since: Date?
    /// Events strictly before this time.
    public var until: Date?

    public init(devices: [String] = [], kinds: [String] = [], since: Date? = nil, until: Date? = nil) {
        self.devices = devices
        self.kinds = kinds
        self.since = since
        self.until = until
    }

    /// Whether every event matches.
    public var isEmpty: Bool { devices.isEmpty && kinds.isEmpty && since == nil && until == nil }

    /// Whether `event` passes the filter (the same rule the journal's SQL applies).
    public func matches(device: String?, kind: String, time: Date) -> Bool {
        if !devices.isEmpty {
            guard let device, devices.contains(device) else { return false }
        }
        if !kinds.isEmpty, !kinds.contains(where: { Glob.matches(pattern: $0, kind) }) { return false }
        if let since, time < since { return false }
        if let until, time >= until { return false }
        return true
    }

    /// Whether `event` passes the filter.
    public func matches(_ event: Event) -> Bool {
        matches(device: event.device, kind: event.kind, time: event.time)
    }

    /// A problem with a kind pattern, for a 400 answer; `nil` if all are valid.
    public static func invalidKindPattern(_ pattern: String) -> String? {
        if pattern.isEmpty { return "an empty kind pattern matches nothing" }
        if pattern.count > 200 { return "kind pattern is longer than 200 characters" }
        // SQLite's GLOB also knows [...] classes; we only support * and ?, so the two agree.
        if pattern.contains("[") || pattern.contains("]") { return "kind patterns support only * and ?" }
        return nil
    }
}

/// `*` / `?` matching, identical to SQLite's GLOB for patterns without `[`.
public enum Glob {
    public static func matches(pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.utf8)
        let t = Array(text.utf8)
        var pi = 0
        var ti = 0
        var starP = -1
        var starT = 0
        while ti < t.count {
            if pi < p.count, p[pi] == UInt8(ascii: "?") || p[pi] == t[ti] {
                pi += 1
                ti += 1
            } else if pi < p.count, p[pi] == UInt8(ascii: "*") {
                starP = pi
                starT = ti
                pi += 1
            } else if starP >= 0 {
                pi = starP + 1
                starT += 1
                ti = starT
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
