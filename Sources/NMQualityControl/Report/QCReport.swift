import Foundation
import NMBridgeCore

/// The daily QC sheet: one site-local day's qc.* findings per dose calibrator and per
/// study, and each calibrator's constancy trend over the days before (docs/qc.md, "The
/// daily report").
///
/// Pure: built from events already fetched, rendered as text, CSV or HTML by the
/// extensions beside this file. Events are selected by their `local_date` (the day the QC
/// service assigned), never by the envelope time, so the report agrees with the findings
/// whatever time zone it is generated in; `zone` only formats times of day.
public struct QCReport: Sendable {
    /// The output formats of `nmbridge qc report`.
    public enum Format: String, Sendable, CaseIterable {
        case text, csv, html
    }

    /// The day reported on.
    public let day: LocalDay
    /// The node whose journal the findings come from.
    public let node: String
    /// When the report was made.
    public let generated: Date
    /// The zone used to show times of day.
    public let zone: TimeZone
    /// The days of the constancy trend: `chartDays` days ending on `day`.
    public let chartPeriod: ClosedRange<LocalDay>
    /// Every finding of the day, in time order.
    public let findings: [QCFinding]
    /// Calibrators with a finding that day or a constancy check in the chart period, by id.
    public let calibrators: [Calibrator]
    /// Studies with a finding that day, in order of their first finding.
    public let studies: [Study]
    /// Gamma cameras with a qc.camera.* finding in the chart period (QCReport+Camera.swift).
    public let cameras: [CameraSection]
    /// `qc.review.signed` for the day: who reviewed this sheet (QCReport+Dosecal.swift).
    public let signatures: [QCFinding]

    /// One dose calibrator (or any device whose findings do not belong to a series).
    public struct Calibrator: Sendable {
        /// The device id.
        public let device: String
        /// The day's findings.
        public let findings: [QCFinding]
        /// Constancy checks of the chart period, in time order.
        public let trend: [QCFinding]
    }

    /// The findings of one study (`studyUID` nil: series without a study UID).
    public struct Study: Sendable {
        /// The Study Instance UID.
        public let studyUID: String?
        /// The study's series, in order of their first finding.
        public let series: [Series]
        /// The patient ID of the study's first finding that has one.
        public var patientID: String? { series.lazy.compactMap { $0.findings.first?.text("patient_id") }.first }
        /// The accession number of the study's first finding that has one.
        public var accessionNumber: String? { series.lazy.compactMap { $0.findings.first?.text("accession_number") }.first }
    }

    /// The findings of one series.
    public struct Series: Sendable {
        /// The Series Instance UID, if the findings have one.
        public let seriesUID: String?
        /// The series' findings, in time order.
        public let findings: [QCFinding]

        /// `primary` or `supplementary` (the study-level judging's `role`); nil for findings
        /// journaled before studies were judged as a whole.
        public var role: String? { findings.lazy.compactMap { $0.text("role") }.first }
        /// When the series was acquired, from its findings.
        public var acquisitionTime: Date? {
            findings.lazy.compactMap { $0.text("acquisition_time").flatMap(Timestamp.parse) }.first
        }
        /// The kind of acquisition (`whole body`, `static`, `SPECT`…), from its findings.
        public var view: String? { findings.lazy.compactMap { $0.text("view") }.first }
        /// Minutes after the injection and after the primary (supplementary views).
        public var delayMinutes: Double? { findings.lazy.compactMap { $0.data["delay_min"]?.doubleValue }.first }
        public var afterPrimaryMinutes: Double? { findings.lazy.compactMap { $0.data["after_primary_min"]?.doubleValue }.first }
    }

    /// Builds the report for `day` from `events` (others than qc.* are ignored).
    /// - Parameter chartDays: the length of the constancy trend, ending on `day` (at least 1).
    public init(events: [Event], day: LocalDay, node: String, generated: Date, zone: TimeZone, chartDays: Int = 30) {
        self.day = day
        self.node = node
        self.generated = generated
        self.zone = zone
        chartPeriod = day.adding(days: -(max(chartDays, 1) - 1))...day
        let all = events.filter { $0.kind.hasPrefix("qc.") }.compactMap(QCFinding.init).sorted { ($0.time, $0.seq) < ($1.time, $1.seq) }
        findings = all.filter { $0.localDay == day && $0.kind != QCFinding.signedKind }
        signatures = all.filter { $0.localDay == day && $0.kind == QCFinding.signedKind }

        cameras = Self.cameraSections(all, day: day, period: chartPeriod)
        let (deviceFindings, seriesFindings) = findings.filter { !$0.isCamera }.reduce(into: ([QCFinding](), [QCFinding]())) { split, finding in
            if finding.belongsToSeries { split.1.append(finding) } else { split.0.append(finding) }
        }
        let period = chartPeriod
        let trends = Dictionary(
            grouping: all.filter { $0.kind == QCFinding.constancyKind && period.contains($0.localDay) && $0.value != nil },
            by: { $0.device ?? "" })
        let byDevice = Dictionary(grouping: deviceFindings, by: { $0.device ?? "" })
        calibrators = Set(byDevice.keys).union(trends.keys).sorted().map {
            Calibrator(device: $0, findings: byDevice[$0] ?? [], trend: trends[$0] ?? [])
        }

        // Studies and their series in order of first appearance.
        struct SeriesKey: Hashable {
            var study: String?
            var series: String?
        }
        var studyOrder: [String?] = []
        var seriesOrder: [String?: [SeriesKey]] = [:]
        var bySeries: [SeriesKey: [QCFinding]] = [:]
        for finding in seriesFindings {
            let key = SeriesKey(study: finding.text("study_uid"), series: finding.text("series_uid"))
            if seriesOrder[key.study] == nil { studyOrder.append(key.study) }
            if bySeries[key] == nil { seriesOrder[key.study, default: []].append(key) }
            bySeries[key, default: []].append(finding)
        }
        // A study is shown as one unit: its primary acquisition first, then the supplementary
        // views in acquisition order, then series judged before studies were (no role).
        studies = studyOrder.map { study in
            let series = (seriesOrder[study] ?? []).map { Series(seriesUID: $0.series, findings: bySeries[$0] ?? []) }
            let rank = { (s: Series) in s.role == "primary" ? 0 : s.role == "supplementary" ? 1 : 2 }
            let ordered = series.enumerated().sorted { a, b in
                (rank(a.element), a.element.acquisitionTime ?? .distantFuture, a.offset)
                    < (rank(b.element), b.element.acquisitionTime ?? .distantFuture, b.offset)
            }.map(\.element)
            return Study(studyUID: study, series: ordered)
        }
    }

    /// The day's findings per outcome.
    public var counts: [QCFinding.Outcome: Int] {
        Dictionary(grouping: findings, by: \.outcome).mapValues(\.count)
    }

    /// The report in `format`.
    public func rendered(as format: Format) -> String {
        switch format {
        case .text: text
        case .csv: csv
        case .html: html
        }
    }
}

/// One qc.* event, with what the report shows of it.
public struct QCFinding: Sendable {
    /// How a finding counts in the summary and how it is marked.
    public enum Outcome: String, Sendable, CaseIterable {
        /// The check passed.
        case pass
        /// Needs a look: beyond the investigate limit, a missed check, a protocol window missed.
        case investigate
        /// The check failed.
        case fail
        /// Nothing to compare (a time, dose or measurement missing).
        case notJudged = "not judged"
        /// Recorded, not a check: a supplementary view of a study.
        case recorded = "supplementary views"
    }

    static let constancyKind = "qc.dosecal.constancy"
    static let missedKind = "qc.dosecal.constancy_missing"

    /// The qc event's journal seq.
    public let seq: Int64
    /// The envelope time (the measurement's or the instance's arrival).
    public let time: Date
    /// The qc.* kind.
    public let kind: String
    /// The envelope's device.
    public let device: String?
    /// `data.local_date`: the site-local day the finding belongs to.
    public let localDay: LocalDay
    /// `data.result` (`missed` for a missed constancy check).
    public let result: String
    /// How the result counts.
    public let outcome: Outcome
    /// The measured quantity the check is about (deviation, delay), if any.
    public let value: Double?
    /// The unit of `value`: `%`, `min`, `Bq`.
    public let unit: String
    /// The limit applied, as a person reads it (`±5/±10 %`, `30–90 min`).
    public let limit: String
    /// The finding in words.
    public let detail: String
    let data: [String: JSONValue]

    /// `nil` for an event without a readable `local_date`: it cannot be placed on a day.
    init?(_ event: Event) {
        let data = event.data
        guard let day = data["local_date"]?.stringValue.flatMap(LocalDay.init) else { return nil }
        seq = event.seq
        time = event.time
        kind = event.kind
        device = event.device
        localDay = day
        self.data = data
        let result = kind == Self.missedKind ? "missed" : kind == Self.dueKind ? "due" : data["result"]?.stringValue ?? "unknown"
        self.result = result
        outcome =
            switch result {
            case "pass": .pass
            case "fail": .fail
            case "investigate", "too_early", "too_late", "missing", "missed", "too_low", "too_high", "too_slow", "too_fast", "low_counts",
                "expires_early", "incomplete", "due":
                .investigate
            case "supplementary": .recorded
            default: .notJudged
            }
        let number = { (key: String) in data[key]?.doubleValue }
        let finding = data["finding"]?.stringValue ?? ""
        switch kind {
        case Self.constancyKind:
            value = number("deviation_pct")
            unit = "%"
            limit = "±\(QCText.number(number("investigate_pct")))/±\(QCText.number(number("fail_pct"))) %"
            detail = "\(data["nuclide"]?.stringValue ?? "?") source \(data["source_serial"]?.stringValue ?? "?"): measured "
                + "\(QCText.activity(number("measured_bq"))), expected \(QCText.activity(number("expected_bq")))"
        case Self.missedKind:
            value = number("measured_bq")
            unit = "Bq"
            limit = ""
            detail = "\(data["nuclide"]?.stringValue ?? "?") dose \(QCText.activity(number("measured_bq"))): \(data["reason"]?.stringValue ?? "")"
        case "qc.administration.reconciled":
            value = number("deviation_pct")
            unit = value == nil ? "" : "%"
            limit = number("tolerance_pct").map { "±\(QCText.number($0)) %" } ?? ""
            detail = finding
        case "qc.protocol.uptake_delay":
            value = number("delay_min")
            unit = value == nil ? "" : "min"
            limit = "\(QCText.number(number("min_min")))–\(QCText.number(number("max_min"))) min"
            detail = "protocol \(data["protocol"]?.stringValue ?? "?"): \(finding)"
        case let qa where Self.dosecalQAKinds.contains(qa):  // QCReport+Dosecal.swift
            let columns = Self.dosecalColumns(kind, data)
            value = columns.value
            unit = columns.unit
            limit = columns.limit
            detail = columns.detail
        case let camera where camera.hasPrefix(Self.cameraPrefix):
            let columns = Self.cameraColumns(kind, data)
            value = columns.value
            unit = columns.unit
            limit = columns.limit
            detail = columns.detail
        case "qc.protocol.energy_window", "qc.protocol.collimator":
            value = nil
            unit = ""
            limit = ""
            detail = "protocol \(data["protocol"]?.stringValue ?? "?"): \(finding)"
        case "qc.protocol.supplementary_view":
            value = number("delay_min")
            unit = value == nil ? "" : "min"
            limit = ""
            detail = finding
        case "qc.protocol.activity":
            value = number("activity_bq")
            unit = value == nil ? "" : "Bq"
            limit = [number("low_bq"), number("high_bq")].contains(where: { $0 != nil })
                ? "\(number("low_bq").map { QCText.activity($0) } ?? "0")–\(number("high_bq").map { QCText.activity($0) } ?? "∞")" : ""
            detail = "protocol \(data["protocol"]?.stringValue ?? "?"): \(finding)"
        case "qc.protocol.scan_speed":
            value = number("speed_cm_per_min")
            unit = value == nil ? "" : "cm/min"
            limit = "\(QCText.number(number("min_cm_per_min")))–\(QCText.number(number("max_cm_per_min"))) cm/min"
            detail = "protocol \(data["protocol"]?.stringValue ?? "?"): \(finding)"
        default:
            value = number("deviation_pct")
            unit = value == nil ? "" : "%"
            limit = ""
            detail = data["finding"]?.stringValue ?? data["reason"]?.stringValue ?? ""
        }
    }

    /// A text field of the event's data.
    public func text(_ key: String) -> String? {
        data[key]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Per-series findings (reconciliation, protocol checks) belong under a study.
    var belongsToSeries: Bool {
        kind.hasPrefix("qc.administration.") || kind.hasPrefix("qc.protocol.") || text("series_uid") != nil || text("study_uid") != nil
    }

    /// What the report calls the check.
    var check: String {
        switch kind {
        case Self.constancyKind: "constancy"
        case Self.missedKind: "constancy missed"
        case "qc.administration.reconciled": "administered activity"
        case "qc.protocol.uptake_delay": "uptake delay"
        case "qc.protocol.energy_window": "energy window"
        case "qc.protocol.supplementary_view": "supplementary view"
        case "qc.protocol.activity": "activity"
        case "qc.protocol.scan_speed": "scan speed"
        case "qc.protocol.collimator": "collimator"
        default: String(kind.dropFirst(3))
        }
    }

    /// The result as shown: `PASS`, `FAIL`, `TOO LATE`, `MISSED`.
    var marker: String { result.replacingOccurrences(of: "_", with: " ").uppercased() }

    /// The value with its unit as a person reads it (`+1.25 %`, `95 min`, `370.00 MBq`).
    var valueText: String {
        guard let value else { return "" }
        switch unit {
        case "%": return String(format: "%+.2f %%", value)
        case "Bq": return QCText.activity(value)
        default: return "\(QCText.number(value)) \(unit)"
        }
    }
}

/// Number and text formatting shared by the renderers.
enum QCText {
    /// `370000000`, `-0.42`: whole numbers without a decimal point, others in full.
    static func decimal(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    /// `5`, `2.5`; `?` when absent.
    static func number(_ value: Double?) -> String {
        guard let value else { return "?" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(format: "%.2f", value).replacingOccurrences(of: #"\.?0+$"#, with: "", options: .regularExpression)
    }

    /// An activity in the unit a hot lab reads: `6.93 MBq`, `1.20 GBq`, `850.00 kBq`.
    static func activity(_ bq: Double?) -> String {
        guard let bq else { return "?" }
        let scales: [(Double, String)] = [(1e9, "GBq"), (1e6, "MBq"), (1e3, "kBq")]
        for (scale, unit) in scales where abs(bq) >= scale { return String(format: "%.2f %@", bq / scale, unit) }
        return String(format: "%.0f Bq", bq)
    }

    /// Time of day in `zone`, `HH:MM:SS`.
    static func timeOfDay(_ date: Date, zone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = calendar.dateComponents([.hour, .minute, .second], from: date)
        return String(format: "%02d:%02d:%02d", c.hour!, c.minute!, c.second!)
    }

    /// Seconds since local midnight in `zone`.
    static func secondsIntoDay(_ date: Date, zone: TimeZone) -> Double {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = calendar.dateComponents([.hour, .minute, .second, .nanosecond], from: date)
        return Double(c.hour! * 3600 + c.minute! * 60 + c.second!) + Double(c.nanosecond!) / 1e9
    }

    /// `text` with control characters (terminal escapes, line breaks) shown as `�`: event
    /// text is untrusted and must not restyle a terminal or break a table row.
    static func plain(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return text }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "\u{FFFD}" : $0 }))
    }
}
