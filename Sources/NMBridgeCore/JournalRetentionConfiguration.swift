import Foundation
import NMTOML

extension DaemonConfiguration.Journal {
    /// `[[journal.retention]]`: how long events of some kinds are kept, instead of `retention_days`.
    /// The journal adds the records regulations ask to keep (`effectiveRetentionRules`, NMJournal).
    public struct RetentionRule: Sendable, Equatable {
        /// Event-kind globs (`*` any run of characters, `?` one; case-sensitive, as SQLite GLOB).
        public var kinds: [String]
        /// Days to keep; nil: forever.
        public var days: Double?
        /// The line it was defined on (0: built in).
        public var line = 0

        public init(kinds: [String], days: Double?, line: Int = 0) {
            self.kinds = kinds
            self.days = days
            self.line = line
        }
    }

    /// Reads the `retention` array of tables of `[journal]`.
    static func readRetentionRules(_ table: ConfigTableReader) -> [RetentionRule] {
        var rules: [RetentionRule] = []
        for entry in table.tables("retention", name: { index, _ in "retention[#\(index + 1)]" }) {
            let kinds = entry.strings("kinds", required: true) ?? []
            for glob in kinds where glob.isEmpty || !glob.utf8.allSatisfy({ c in
                (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x5F || c == 0x2D || c == 0x2A || c == 0x3F
            }) {
                entry.problem("kinds", "\"\(glob)\" is not an event-kind glob such as \"gantry.*\" (a–z, 0–9, '.', '_', '-', '*', '?')")
            }
            var days: Double?
            if entry.has("days") {
                days = entry.double("days", in: 0...100_000, required: true).flatMap { $0 == 0 ? nil : $0 }
            } else {
                entry.problem("days", "required key is missing (0: keep forever)")
            }
            entry.reportUnknownKeys()
            if !kinds.isEmpty { rules.append(RetentionRule(kinds: kinds, days: days, line: entry.table.location.line)) }
        }
        return rules
    }
}
