import Foundation

/// A position in TOML source text.
///
/// Both numbers are 1-based. `column` counts Unicode scalars (code points) from the start of
/// the line, not bytes, so "é" and a tab are one column each.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// The 1-based line number.
    public var line: Int
    /// The 1-based column, counted in Unicode scalars.
    public var column: Int

    /// Creates a location from a 1-based line and column.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    /// `"line 14"`. Configuration errors quote the line only; syntax errors add the column.
    public var description: String { "line \(line)" }
}

/// A TOML value.
public enum TOMLValue: Sendable, Equatable {
    /// A string, with escapes decoded and CR LF inside multi-line strings turned into LF.
    case string(String)
    /// A 64-bit signed integer.
    case integer(Int64)
    /// A 64-bit float, including `inf` and `nan`.
    case float(Double)
    /// `true` or `false`.
    case boolean(Bool)
    /// An offset date-time, local date-time, local date or local time.
    case dateTime(TOMLDateTime)
    /// An array: `[...]`, or an array of tables built from `[[x]]` headers.
    case array([TOMLNode])
    /// A table: the root, a `[x]` section, a table created by dotted keys, or an inline table.
    case table(TOMLTable)

    /// The TOML type name for error messages: "string", "integer", "float", "boolean",
    /// "date-time", "array" or "table".
    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .dateTime: "date-time"
        case .array: "array"
        case .table: "table"
        }
    }
}

/// A value together with where it was written.
public struct TOMLNode: Sendable, Equatable {
    /// The value.
    public var value: TOMLValue
    /// For a table entry, where its key is written (the last part of a dotted key); for an
    /// array element, where the element starts; for an `[[x]]` element, where its header starts.
    public var location: SourceLocation

    /// Creates a node.
    public init(value: TOMLValue, location: SourceLocation) {
        self.value = value
        self.location = location
    }

    /// The string, when this is a string.
    public var string: String? {
        if case .string(let text) = value { return text }
        return nil
    }

    /// The integer, when this is an integer.
    public var int: Int64? {
        if case .integer(let number) = value { return number }
        return nil
    }

    /// The number as a `Double`, for floats and integers alike (`timeout = 5` means 5.0).
    public var double: Double? {
        switch value {
        case .float(let number): number
        case .integer(let number): Double(number)
        default: nil
        }
    }

    /// The Boolean, when this is a Boolean.
    public var bool: Bool? {
        if case .boolean(let flag) = value { return flag }
        return nil
    }

    /// The date-time, when this is any of the four date-time forms.
    public var dateTime: TOMLDateTime? {
        if case .dateTime(let stamp) = value { return stamp }
        return nil
    }

    /// The elements, when this is an array (including an array of tables).
    public var array: [TOMLNode]? {
        if case .array(let elements) = value { return elements }
        return nil
    }

    /// The table, when this is a table or an inline table.
    public var table: TOMLTable? {
        if case .table(let table) = value { return table }
        return nil
    }

    /// The TOML type name of the value, for error messages.
    public var typeName: String { value.typeName }
}

/// A TOML table: its entries in document order and where it was defined.
public struct TOMLTable: Sendable, Equatable {
    /// One key and its value.
    public struct Entry: Sendable, Equatable {
        /// The key (one part of a dotted key; never contains the dots as separators).
        public var key: String
        /// The value and the location of the key.
        public var node: TOMLNode

        /// Creates an entry.
        public init(key: String, node: TOMLNode) {
            self.key = key
            self.node = node
        }
    }

    /// Where the table was defined: the `[` of its `[x]` or `[[x]]` header, the `{` of an
    /// inline table, the key part that created it through a dotted key, or 1:1 for the root.
    public var location: SourceLocation
    /// The entries in the order their keys first appear in the document.
    public var entries: [Entry]

    /// Creates a table.
    public init(location: SourceLocation, entries: [Entry] = []) {
        self.location = location
        self.entries = entries
    }

    /// The value under `key`, if any. A linear search: configuration tables are small, and
    /// keeping no separate index means `entries` can be edited freely.
    public subscript(key: String) -> TOMLNode? {
        entries.first { $0.key == key }?.node
    }

    /// The keys in document order.
    public var keys: [String] { entries.map(\.key) }
}

/// A TOML date-time in any of its four forms, kept as written and broken into components.
public struct TOMLDateTime: Sendable, Equatable, CustomStringConvertible {
    /// Which of the four TOML date-time forms this is.
    public enum Kind: Sendable, Equatable {
        /// `1979-05-27T07:32:00Z` or `1979-05-27 00:32:00-07:00`: a moment in time.
        case offsetDateTime
        /// `1979-05-27T07:32:00`: a wall-clock time with no zone.
        case localDateTime
        /// `1979-05-27`.
        case localDate
        /// `07:32:00.999`.
        case localTime
    }

    /// Which form was written.
    public var kind: Kind
    /// The text exactly as written in the document.
    public var text: String
    /// The year (0–9999); nil for a local time.
    public var year: Int?
    /// The month (1–12); nil for a local time.
    public var month: Int?
    /// The day of the month; nil for a local time.
    public var day: Int?
    /// The hour (0–23); nil for a local date.
    public var hour: Int?
    /// The minute (0–59); nil for a local date.
    public var minute: Int?
    /// The second (0–60, 60 being a leap second); nil for a local date.
    public var second: Int?
    /// The fractional second in nanoseconds (digits past the ninth are dropped); nil for a local date.
    public var nanosecond: Int?
    /// The offset from UTC in seconds (`Z` is 0); nil for the three local forms.
    public var utcOffsetSeconds: Int?
    /// The moment, for offset date-times only (local forms name no moment), fractional
    /// seconds included.
    public var date: Date?

    /// The text as written.
    public var description: String { text }
}

/// One problem found in a TOML document.
public struct TOMLSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Where the problem is.
    public var location: SourceLocation
    /// What is wrong, naming the key when it is known.
    public var message: String

    /// Creates an error.
    public init(location: SourceLocation, message: String) {
        self.location = location
        self.message = message
    }

    /// `line 3, column 7: expected '=' after key "poll_ms"`.
    public var description: String {
        "line \(location.line), column \(location.column): \(message)"
    }
}

/// Every problem found in a TOML document, in line order.
public struct TOMLParseFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The problems, sorted by line and column; never empty when thrown by ``TOMLParser``.
    public var errors: [TOMLSyntaxError]

    /// Creates a failure from its errors.
    public init(errors: [TOMLSyntaxError]) {
        self.errors = errors
    }

    /// One error per line.
    public var description: String {
        errors.map(\.description).joined(separator: "\n")
    }
}
