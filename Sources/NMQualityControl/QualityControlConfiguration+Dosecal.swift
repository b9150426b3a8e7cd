import Foundation
import NMBridgeCore
import NMTOML

// Dose-calibrator QA beyond daily constancy (docs/qc.md, "Dose calibrator QA"): check-source
// readings on other settings, accuracy with certified reference sources, linearity by the decay
// method, the Mo-99 breakthrough of a generator's eluate, and when each test falls due.

extension DaemonConfiguration.QualityControl {
    /// A check source measured on a setting other than its own nuclide's (Cs-137 read on the
    /// Tc-99m setting): the instrument reports the setting ("Tc99m"), so the reading is known by
    /// the setting and an activity band around what the source reads there.
    public struct SettingReading: Sendable, Equatable {
        /// The setting as the instrument reports it: a canonical nuclide name (`Tc-99m`), else the
        /// calibration number text (CRC-35R).
        public var setting: String
        /// Reading on this setting per becquerel of the source (the source's decayed activity
        /// times this is the expected reading). Set either this or a reference reading.
        public var factor: Double?
        /// A reading of the source on this setting at `referenceDate`, decayed with the source's
        /// own half-life to give the expected reading.
        public var referenceReadingBq: Double?
        public var referenceDate: Date?
        /// A reading within ± this percentage of the expected reading is the check source.
        public var bandPct: Double = 25
        /// Site-local minutes of the day (from, to) in which such a reading is the check source;
        /// nil: any time.
        public var minutesOfDay: ClosedRange<Int>?

        public init(setting: String) { self.setting = setting }

        /// The expected reading at `time` of a source whose activity then is `sourceBq`.
        public func expectedReading(sourceBq: Double, at time: Date, halfLifeSeconds: Double) -> Double? {
            if let factor { return sourceBq * factor }
            if let referenceReadingBq, let referenceDate {
                return referenceReadingBq * exp(-M_LN2 * time.timeIntervalSince(referenceDate) / halfLifeSeconds)
            }
            return nil
        }
    }

    /// A certified reference source for the accuracy test (`[[qc.reference_source]]`).
    public struct ReferenceSource: Sendable, Equatable {
        public var nuclide: String
        public var activityBq: Double
        public var referenceDate: Date
        public var serial: String
        /// The certificate's expanded uncertainty, percent (reported beside the deviation).
        public var uncertaintyPct: Double?
        /// Calibrators it is measured on; empty: every calibrator.
        public var devices: [String] = []

        public init(nuclide: String, activityBq: Double, referenceDate: Date, serial: String) {
            self.nuclide = nuclide
            self.activityBq = activityBq
            self.referenceDate = referenceDate
            self.serial = serial
        }
    }

    /// Limits and intervals of the calibrator tests beyond constancy (`[qc.dosecal]`).
    public struct DosecalTests: Sendable, Equatable {
        /// Accuracy: deviation from the decayed certificate. Defaults ±5 % investigate (a choice:
        /// the action level of many programs) and ±10 % fail (ANSI N42.13; NUREG-1556 Vol. 9).
        public var accuracyInvestigatePct = 5.0
        public var accuracyFailPct = 10.0
        /// Distinct reference sources that must pass on one day for the accuracy test to count
        /// as done (DOMAIN.md: "two or more certified sources"); fewer configured: all of them.
        public var accuracyMinSources = 2
        /// Linearity: deviation of each reading from the fitted decay. Defaults ±5 % investigate
        /// (stricter programs) and ±10 % fail (NUREG-1556 Vol. 9; AAPM TG-181).
        public var linearityInvestigatePct = 5.0
        public var linearityFailPct = 10.0
        /// A reading belongs to the linearity series when within ± this of the decayed first reading.
        public var linearityBandPct = 20.0
        /// Fewest readings for a linearity result.
        public var linearityMinReadings = 4
        /// Intervals after which a test falls due (days): accuracy yearly, linearity quarterly
        /// (AAPM TG-181; 10 CFR 35.60 asks for the maker's or a national standard's procedures).
        /// nil: not tracked.
        public var accuracyIntervalDays: Double? = 365
        public var linearityIntervalDays: Double? = 92
        /// Whether due tests are journaled: on once the site configures `[qc.dosecal]` or a
        /// `[[qc.reference_source]]` (a site that keeps these tests elsewhere gets no reminders).
        public var tracksDueDates = false
        /// Mo-99 breakthrough: limit in kBq Mo-99 per MBq Tc-99m at administration
        /// (10 CFR 35.204(a), USP: 0.15 µCi/mCi).
        public var mo99LimitKBqPerMBq = 0.15
        /// Hours from elution to the eluate's expiry, where the ratio is projected (a choice:
        /// 12 h is a common shelf life of a pertechnetate eluate; set the generator maker's value).
        public var eluateShelfLifeHours = 12.0
        /// Minutes between the Mo-99 assay and the eluate's Tc-99m reading (either order).
        public var mo99PairWindowMinutes = 30.0
        /// The Mo-99 reading times this is the Mo-99 activity (the canister's attenuation when the
        /// instrument does not correct for it itself; 1: it does).
        public var mo99CanisterFactor = 1.0

        public init() {}
    }

    /// Reads a `[[qc.check_source]]`'s `[[qc.check_source.reading]]` tables.
    static func readSettingReadings(_ source: ConfigTableReader) -> [SettingReading] {
        var readings: [SettingReading] = []
        for entry in source.tables("reading", name: { index, t in "reading[\(t["setting"]?.string ?? "#\(index + 1)")]" }) {
            guard let text = entry.string("setting", required: true) else {
                entry.reportUnknownKeys()
                continue
            }
            var reading = SettingReading(setting: Radionuclide.canonicalName(text) ?? text)
            reading.factor = entry.double("factor", in: 1e-6...1e6)
            reading.referenceReadingBq = entry.double("reference_reading_bq", in: 1...1e15)
            reading.referenceDate = dateTime(entry, "reference_date", required: reading.referenceReadingBq != nil)
            switch (reading.factor, reading.referenceReadingBq) {
            case (nil, nil): entry.problem("factor", "give factor (reading per becquerel of the source) or reference_reading_bq with reference_date")
            case (.some, .some): entry.problem("factor", "give factor or reference_reading_bq, not both")
            default: break
            }
            reading.bandPct = entry.double("band_pct", in: 0.1...90) ?? reading.bandPct
            if let window = entry.string("time_window") {
                if let range = minutesOfDay(window) {
                    reading.minutesOfDay = range
                } else {
                    entry.problem("time_window", "\"\(window)\" is not a site-local span such as \"06:00-10:00\"")
                }
            }
            entry.reportUnknownKeys()
            readings.append(reading)
        }
        return readings
    }

    /// Reads `[[qc.reference_source]]` and `[qc.dosecal]`.
    static func readDosecal(_ table: ConfigTableReader, deviceIDs: Set<String>, into qc: inout Self) {
        for entry in table.tables("reference_source", name: { index, t in "reference_source[\(t["serial"]?.string ?? "#\(index + 1)")]" }) {
            let nuclideText = entry.string("nuclide", required: true)
            let activity = entry.double("activity_bq", in: 1...1e15, required: true)
            let serial = entry.string("serial", required: true)
            let date = dateTime(entry, "reference_date", required: true)
            var nuclide: String?
            if let nuclideText {
                nuclide = Radionuclide.named(nuclideText)?.name
                if nuclide == nil {
                    entry.problem("nuclide", "\"\(nuclideText)\" is not a nuclide with a known half-life (\(Radionuclide.known.map(\.name).joined(separator: ", ")))")
                }
            }
            let uncertainty = entry.double("uncertainty_pct", in: 0...100)
            let devices = entry.strings("devices") ?? []
            for device in devices where !deviceIDs.contains(device) {
                entry.problem("devices", "\"\(device)\" is not a configured [[device]] id")
            }
            entry.reportUnknownKeys()
            if let nuclide, let activity, let serial, let date {
                var source = ReferenceSource(nuclide: nuclide, activityBq: activity, referenceDate: date, serial: serial)
                source.uncertaintyPct = uncertainty
                source.devices = devices
                qc.referenceSources.append(source)
            }
        }
        if !qc.referenceSources.isEmpty { qc.dosecal.tracksDueDates = true }
        guard let entry = table.table("dosecal") else { return }
        var tests = DosecalTests()
        tests.tracksDueDates = entry.bool("track_due_dates") ?? true
        tests.accuracyInvestigatePct = entry.double("accuracy_investigate_pct", in: 0.1...100) ?? tests.accuracyInvestigatePct
        tests.accuracyFailPct = entry.double("accuracy_fail_pct", in: 0.1...100) ?? tests.accuracyFailPct
        if tests.accuracyFailPct < tests.accuracyInvestigatePct {
            entry.problem("accuracy_fail_pct", "\(tests.accuracyFailPct) must not be smaller than accuracy_investigate_pct \(tests.accuracyInvestigatePct)")
        }
        tests.accuracyMinSources = entry.int("accuracy_min_sources", in: 1...20).map(Int.init) ?? tests.accuracyMinSources
        tests.linearityInvestigatePct = entry.double("linearity_investigate_pct", in: 0.1...100) ?? tests.linearityInvestigatePct
        tests.linearityFailPct = entry.double("linearity_fail_pct", in: 0.1...100) ?? tests.linearityFailPct
        if tests.linearityFailPct < tests.linearityInvestigatePct {
            entry.problem("linearity_fail_pct", "\(tests.linearityFailPct) must not be smaller than linearity_investigate_pct \(tests.linearityInvestigatePct)")
        }
        tests.linearityBandPct = entry.double("linearity_band_pct", in: 1...90) ?? tests.linearityBandPct
        tests.linearityMinReadings = entry.int("linearity_min_readings", in: 2...1000).map(Int.init) ?? tests.linearityMinReadings
        if entry.has("accuracy_interval_days") {
            tests.accuracyIntervalDays = entry.double("accuracy_interval_days", in: 0...3660).flatMap { $0 == 0 ? nil : $0 }
        }
        if entry.has("linearity_interval_days") {
            tests.linearityIntervalDays = entry.double("linearity_interval_days", in: 0...3660).flatMap { $0 == 0 ? nil : $0 }
        }
        tests.mo99LimitKBqPerMBq = entry.double("mo99_limit_kbq_per_mbq", in: 0.001...100) ?? tests.mo99LimitKBqPerMBq
        tests.eluateShelfLifeHours = entry.double("eluate_shelf_life_h", in: 0...72) ?? tests.eluateShelfLifeHours
        tests.mo99PairWindowMinutes = entry.double("mo99_pair_window_min", in: 1...1440) ?? tests.mo99PairWindowMinutes
        tests.mo99CanisterFactor = entry.double("mo99_canister_factor", in: 0.01...100) ?? tests.mo99CanisterFactor
        entry.reportUnknownKeys()
        qc.dosecal = tests
    }

    /// A TOML date-time with a zone, or an RFC 3339 string.
    static func dateTime(_ entry: ConfigTableReader, _ key: String, required: Bool) -> Date? {
        guard let node = entry.table[key] else {
            if required { entry.problem(key, "required key is missing") }
            return nil
        }
        entry.markUsed(key)
        if let stamp = node.dateTime {
            if stamp.date == nil { entry.problem(key, "\(stamp.text) names no moment: give a zone, e.g. \(stamp.text)Z") }
            return stamp.date
        }
        if let text = node.string {
            if let date = Timestamp.parse(text) { return date }
            entry.problem(key, "\"\(text)\" is not an RFC 3339 date-time such as \"2020-01-01T00:00:00Z\"")
            return nil
        }
        entry.problem(key, "expected a date-time such as \"2020-01-01T00:00:00Z\"")
        return nil
    }

    /// `"06:00-10:00"` as minutes of the day.
    static func minutesOfDay(_ text: String) -> ClosedRange<Int>? {
        let parts = text.split(separator: "-").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2 else { return nil }
        func minutes(_ part: String) -> Int? {
            let hm = part.split(separator: ":")
            guard hm.count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0...24).contains(h), (0...59).contains(m), h * 60 + m <= 1440 else { return nil }
            return h * 60 + m
        }
        guard let from = minutes(parts[0]), let to = minutes(parts[1]), from <= to else { return nil }
        return from...to
    }
}
