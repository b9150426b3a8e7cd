import NMBridgeCore

// Which kinds are records kept for years unless `[[journal.retention]]` says otherwise: a
// policy of the journal's retention, so it lives here; the core only reads the rules.

extension DaemonConfiguration.Journal {
    /// Records that regulations ask to keep for three years: dosage records (10 CFR 35.2063),
    /// dose-calibrator calibrations and checks (35.2060), Mo-99 breakthrough (35.2204); DICOM
    /// arrivals back the administered-activity reconciliation. Other jurisdictions differ: a
    /// `[[journal.retention]]` rule naming one of these globs replaces this default.
    public static let recordKinds = ["dosecal.*", "qc.*", "dicom.*"]
    /// Three years and a leap day.
    public static let recordDays = 1096.0

    /// The rules retention applies, first match wins: the configured ones, then the record
    /// kinds for `max(recordDays, retention_days)` (forever when `retention_days` is off) unless a
    /// configured rule names the same glob. Kinds no rule matches keep `retention_days`.
    public var effectiveRetentionRules: [RetentionRule] {
        let named = Set(retentionRules.flatMap(\.kinds))
        let records = Self.recordKinds.filter { !named.contains($0) }
        guard !records.isEmpty else { return retentionRules }
        return retentionRules + [RetentionRule(kinds: records, days: retentionDays.map { max(Self.recordDays, $0) })]
    }
}
