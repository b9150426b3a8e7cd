import Foundation
import NMBridgeCore
import NMJournal

/// Judges one journal event at a time and returns the qc.* events it calls for.
///
/// A judgement depends only on the event and on journal events *before* it: lookups are
/// bounded by `seq < event.seq`, and what the engine keeps in memory (a calibrator's checks
/// of the day) is what those lookups would return. Studies are judged in
/// `QCEngine+Study.swift`. Judging the
/// same event again — after a crash between appending the findings and saving the cursor —
/// gives the same findings, and the service can tell that they are already there.
public struct QCEngine: Sendable {
    public typealias Settings = DaemonConfiguration.QualityControl
    /// Stored instances are judged per study, when the receiver reports the study stable
    /// (docs/qc.md, "Studies"): the engine reads the study's instances from the journal then.
    /// (Stored instances are inputs too: camera QC judges its acquisitions one by one.)
    public static let inputKinds = ["dosecal.measurement", "dicom.instance.stored", "dicom.study.stable", "qc.dosecal.linearity_finished"]

    let settings: Settings
    let zone: TimeZone
    let journal: Journal
    /// Per calibrator with check sources: the constancy checks of the latest site-local day
    /// this engine has seen (see `constancyChecks`).
    private var days: [String: CalibratorDay] = [:]
    /// Camera QC's memory (QCEngine+Camera.swift).
    var cameraState = CameraState()
    /// Per calibrator: the site-local day its due tests were last looked at (QCEngine+Dosecal.swift).
    var dueChecked: [String: LocalDay] = [:]

    struct CalibratorDay {
        var date: LocalDay
        var checks: [QCRules.Constancy]
    }

    public init(settings: Settings, zone: TimeZone, journal: Journal) {
        self.settings = settings
        self.zone = zone
        self.journal = journal
    }

    public mutating func judge(_ event: Event) async throws -> [EventDraft] {
        switch event.kind {
        case "dosecal.measurement": return try await judgeMeasurement(event)
        case "dicom.instance.stored":
            // Camera QC (QCEngine+Camera.swift) judges each QC acquisition as it is stored, and
            // each patient instance for a missed daily flood; patient studies are judged as
            // studies, when stable.
            switch try await judgeCamera(event) {
            case .qualityControl(let findings), .patient(let findings): return findings
            }
        case "dicom.study.stable": return try await judgeStudy(event)
        case "qc.dosecal.linearity_finished": return try await judgeLinearity(event)
        default: return []
        }
    }

    // MARK: Dose calibrator measurements

    private mutating func judgeMeasurement(_ event: Event) async throws -> [EventDraft] {
        let data = event.data
        guard let device = event.device, let nuclide = data["nuclide"]?.stringValue, let measured = data["activity_bq"]?.doubleValue,
            measured > 0
        else { return [] }
        let sources = settings.checkSources.filter { $0.device == device }
        let localDate = LocalDay(containing: event.time, zone: zone)
        var common: [String: JSONValue] = [
            "source_seq": .int(event.seq), "local_date": .string(localDate.description), "nuclide": .string(nuclide), "measured_bq": .double(measured.rounded()),
        ]
        for (key, value) in Self.instrument(data) { common[key] = value }
        // Due tests, accuracy, Mo-99 and check sources on other settings: QCEngine+Dosecal.swift.
        var findings: [EventDraft] = []
        let hasReferences = settings.referenceSources.contains { $0.devices.isEmpty || $0.devices.contains(device) }
        if !sources.isEmpty || hasReferences { findings += try await dueTests(event, device: device, localDate: localDate) }
        let measurementRole = role(device: device, nuclide: nuclide, calibrationNumber: data["calibration_number"]?.stringValue, measuredBq: measured, at: event.time)
        if case .accuracy(let check) = measurementRole { return findings + [accuracyFinding(event, device: device, check, common: common)] }
        if nuclide == "Mo-99" {
            // The generator's breakthrough assay, never a patient dose.
            if let finding = try await breakthrough(event, device: device, nuclide: nuclide, common: common) { findings.append(finding) }
            return findings
        }
        if nuclide == "Tc-99m", case .other = measurementRole, let finding = try await breakthrough(event, device: device, nuclide: nuclide, common: common) {
            return findings + [finding]  // the eluate, paired with its assay
        }
        let isCheck: Bool
        if case .constancy = measurementRole { isCheck = true } else { isCheck = false }
        if !isCheck, QCRules.checkSourceNuclides.contains(nuclide) { return findings }  // a check source this calibrator has no reference for
        // A reading of an open linearity test's vial is QA, not a patient dose (QCEngine+Dosecal.swift).
        if !isCheck, try await isLinearityReading(event, device: device, nuclide: nuclide, measured: measured) { return findings }
        var today: [QCRules.Constancy] = []
        if !sources.isEmpty { today = try await constancyChecks(before: event, device: device, on: localDate, sources: sources) }

        if case .constancy(let check, let setting) = measurementRole {
            if days[device]?.date == localDate { days[device]?.checks.append(check) }
            if let setting {
                common["setting"] = .string(setting.reading.setting)
                common["source_nuclide"] = .string(setting.source.nuclide)
            }
            common["result"] = .string(check.result)
            common["deviation_pct"] = .double(Self.round(check.deviationPct, 2))
            common["expected_bq"] = .double(check.expectedBq.rounded())
            common["source_serial"] = .string(check.source.serial)
            common["reference_bq"] = .double(check.source.referenceBq)
            common["reference_date"] = .string(Timestamp.format(check.source.referenceDate))
            common["investigate_pct"] = .double(settings.investigatePct)
            common["fail_pct"] = .double(settings.failPct)
            if let setting = data["calibration_number"] { common["calibration_number"] = setting }
            let severity: Severity = check.result == "pass" ? .info : check.result == "investigate" ? .warning : .error
            return findings + [draft(event, kind: "qc.dosecal.constancy", severity: severity, device: device, common)]
        }
        // A patient dose: was there a passing constancy check on this calibrator today?
        if today.contains(where: { $0.result == "pass" }) { return findings }
        if sources.isEmpty {
            common["reason"] = .string("no [[qc.check_source]] is configured for \(device)")
        } else if let last = today.last {
            common["last_result"] = .string(last.result)
            common["reason"] = .string(
                "today's constancy check on \(device) did not pass (last: \(last.result), \(Self.signed(last.deviationPct)) %)")
        } else {
            let names = sources.map { "\($0.nuclide) \($0.serial)" }.joined(separator: ", ")
            common["reason"] = .string("no constancy check on \(device) since 00:00 \(zone.identifier) (check sources: \(names))")
        }
        return findings + [draft(event, kind: "qc.dosecal.constancy_missing", severity: .warning, device: device, common)]
    }

    /// The constancy checks on `device` earlier on the site-local day `date` than `event`.
    ///
    /// The first time a calibrator is seen, they are read from the journal; from then on the
    /// engine has judged every later measurement of it in order, so it keeps them itself
    /// (a new day starts empty). Only a measurement dated before the day kept is read again.
    private mutating func constancyChecks(before event: Event, device: String, on date: LocalDay, sources: [Settings.CheckSource])
        async throws -> [QCRules.Constancy]
    {
        if let day = days[device] {
            if day.date == date { return day.checks }
            if day.date < date {
                days[device] = CalibratorDay(date: date, checks: [])
                return []
            }
        }
        let dayStart = date.start(in: zone)
        var earlier: [Event] = []
        // The sources' own nuclides and the settings they are also read on.
        for nuclide in Set(sources.map(\.nuclide) + sources.flatMap { $0.readings.map(\.setting) }).sorted() {
            earlier += try await journal.events(
                EventQuery(
                    before: event.seq,
                    filter: EventFilter(devices: [device], kinds: ["dosecal.measurement"], since: dayStart, until: Self.bound(event.time)),
                    limit: 10_000, dataEquals: ["nuclide": nuclide])
            ).events
        }
        let checks = earlier.sorted { $0.seq < $1.seq }.compactMap { measurement -> QCRules.Constancy? in
            if case .constancy(let check, _) = role(of: measurement) { return check }
            return nil
        }
        if days[device] == nil { days[device] = CalibratorDay(date: date, checks: checks) }
        return checks
    }

    // MARK: Helpers

    /// An upper time bound for lookups of events before `time`'s event (`seq <` it): the
    /// journal then scans only the window's part of its time index. An hour of slack, as
    /// events appended concurrently may carry slightly disordered times.
    static func bound(_ time: Date) -> Date { time.addingTimeInterval(3600) }

    func draft(_ source: Event, kind: String, severity: Severity, device: String?, _ data: [String: JSONValue]) -> EventDraft {
        EventDraft(time: source.time, device: device, driver: "qc", kind: kind, severity: severity, data: data)
    }

    /// Acquisition date/time, else series, else study (DA + TM at the site).
    static func acquisitionTime(_ data: [String: JSONValue], offset: String?, zone: TimeZone) -> Date? {
        for prefix in ["acquisition", "series", "study"] {
            if let date = data["\(prefix)_date"]?.stringValue, let time = data["\(prefix)_time"]?.stringValue,
                let instant = DicomDateTime.instant(date: date, time: time, offset: offset, zone: zone)
            {
                return instant
            }
        }
        return nil
    }

    /// Radiopharmaceutical Start DateTime, else Start Time on the acquisition's date (the
    /// day before when that would put the injection after the acquisition).
    static func injectionTime(_ pharma: [String: JSONValue], data: [String: JSONValue], acquisition: Date?, offset: String?, zone: TimeZone)
        -> Date?
    {
        if let text = pharma["start_datetime"]?.stringValue, let instant = DicomDateTime.instant(dateTime: text, offset: offset, zone: zone) {
            return instant
        }
        guard let time = pharma["start_time"]?.stringValue else { return nil }
        let date = ["acquisition_date", "series_date", "study_date"].lazy.compactMap { data[$0]?.stringValue }.first
        guard let date, var instant = DicomDateTime.instant(date: date, time: time, offset: offset, zone: zone) else { return nil }
        if let acquisition, instant > acquisition, instant.timeIntervalSince(acquisition) < 86_400 {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = zone
            instant = calendar.date(byAdding: .day, value: -1, to: instant) ?? instant
        }
        return instant
    }

    static func round(_ value: Double, _ places: Int) -> Double {
        let factor = pow(10, Double(places))
        return (value * factor).rounded() / factor
    }


    static func signed(_ value: Double) -> String { (value >= 0 ? "+" : "") + String(format: "%.1f", value) }

    static func mbq(_ bq: Double) -> String { String(format: "%.1f", bq / 1e6) }

    static func duration(_ minutes: Double) -> String {
        let whole = Int(minutes.rounded())
        return whole >= 60 ? String(format: "%d h %02d min", whole / 60, whole % 60) : "\(whole) min"
    }
}
