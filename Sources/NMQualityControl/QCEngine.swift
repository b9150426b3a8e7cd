import Foundation
import NMBridgeCore
import NMJournal

/// Judges one journal event at a time and returns the qc.* events it calls for.
///
/// A judgement depends only on the event and on journal events *before* it: lookups are
/// bounded by `seq < event.seq`, and what the engine keeps in memory (a calibrator's checks
/// of the day, the series it has judged) is what those lookups would return. Judging the
/// same event again — after a crash between appending the findings and saving the cursor —
/// gives the same findings, and the service can tell that they are already there.
public struct QCEngine: Sendable {
    public typealias Settings = DaemonConfiguration.QualityControl
    public static let inputKinds = ["dosecal.measurement", "dicom.instance.stored"]

    let settings: Settings
    let zone: TimeZone
    let journal: Journal
    /// Series judged by this process (a lookup in the journal answers for earlier ones).
    private var seriesSeen: [String: Int64] = [:]
    /// Per calibrator with check sources: the constancy checks of the latest site-local day
    /// this engine has seen (see `constancyChecks`).
    private var days: [String: CalibratorDay] = [:]
    /// The time of the first event this engine judged.
    private var firstJudged: Date?
    /// Camera QC's memory (QCEngine+Camera.swift).
    var cameraState = CameraState()

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
        if firstJudged == nil { firstJudged = event.time }
        switch event.kind {
        case "dosecal.measurement": return try await judgeMeasurement(event)
        case "dicom.instance.stored":
            // Camera QC (QCEngine+Camera.swift): a QC acquisition is never judged as a patient study.
            switch try await judgeCamera(event) {
            case .qualityControl(let findings): return findings
            case .patient(let findings): return try await judgeInstance(event) + findings
            }
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
        let isCheck = sources.contains { $0.nuclide == nuclide }
        if !isCheck, QCRules.checkSourceNuclides.contains(nuclide) { return [] }  // a check source this calibrator has no reference for
        var today: [QCRules.Constancy] = []
        if !sources.isEmpty { today = try await constancyChecks(before: event, device: device, on: localDate, sources: sources) }

        if isCheck {
            guard let check = QCRules.constancy(measuredBq: measured, at: event.time, sources: sources.filter { $0.nuclide == nuclide }, settings: settings)
            else { return [] }
            if days[device]?.date == localDate { days[device]?.checks.append(check) }
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
            return [draft(event, kind: "qc.dosecal.constancy", severity: severity, device: device, common)]
        }
        // A patient dose: was there a passing constancy check on this calibrator today?
        if today.contains(where: { $0.result == "pass" }) { return [] }
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
        return [draft(event, kind: "qc.dosecal.constancy_missing", severity: .warning, device: device, common)]
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
        for nuclide in Set(sources.map(\.nuclide)).sorted() {
            earlier += try await journal.events(
                EventQuery(
                    before: event.seq,
                    filter: EventFilter(devices: [device], kinds: ["dosecal.measurement"], since: dayStart, until: Self.bound(event.time)),
                    limit: 10_000, dataEquals: ["nuclide": nuclide])
            ).events
        }
        let checks = earlier.sorted { $0.seq < $1.seq }.compactMap { measurement -> QCRules.Constancy? in
            let d = measurement.data
            guard let n = d["nuclide"]?.stringValue, let bq = d["activity_bq"]?.doubleValue, bq > 0 else { return nil }
            return QCRules.constancy(measuredBq: bq, at: measurement.time, sources: sources.filter { $0.nuclide == n }, settings: settings)
        }
        if days[device] == nil { days[device] = CalibratorDay(date: date, checks: checks) }
        return checks
    }

    // MARK: Stored instances

    private mutating func judgeInstance(_ event: Event) async throws -> [EventDraft] {
        let data = event.data
        guard let modality = data["modality"]?.stringValue?.uppercased(), modality == "NM" || modality == "PT",
            let series = data["series_uid"]?.stringValue, !series.isEmpty
        else { return [] }
        if seriesSeen[series] != nil { return [] }
        seriesSeen[series] = event.seq
        if seriesSeen.count > 20_000 {  // bounded: forget the oldest half (the journal lookup still answers)
            let cutoff = seriesSeen.values.sorted()[10_000]
            seriesSeen = seriesSeen.filter { $0.value >= cutoff }
        }
        // Earlier instances of the series are looked for 12 hours back. When this engine
        // has been judging since before that, it has seen them all: no lookup.
        if let firstJudged, firstJudged < event.time.addingTimeInterval(-Self.seriesLookback - 3600) {
            return try await judgeNewSeries(event, data: data, modality: modality)
        }
        let earlier = try await journal.events(
            EventQuery(
                before: event.seq,
                filter: EventFilter(
                    kinds: ["dicom.instance.stored"], since: event.time.addingTimeInterval(-Self.seriesLookback), until: Self.bound(event.time)),
                limit: 1, dataEquals: ["series_uid": series])
        ).events
        if !earlier.isEmpty { return [] }
        return try await judgeNewSeries(event, data: data, modality: modality)
    }

    /// The findings for the first instance of a series.
    private func judgeNewSeries(_ event: Event, data: [String: JSONValue], modality: String) async throws -> [EventDraft] {
        let pharma = data["radiopharmaceutical"]?.objectValue ?? [:]
        let offset = data["timezone_offset"]?.stringValue
        let acquisition = Self.acquisitionTime(data, offset: offset, zone: zone)
        let injection = Self.injectionTime(pharma, data: data, acquisition: acquisition, offset: offset, zone: zone)
        let nuclide = pharma["nuclide"]?.stringValue
        var common: [String: JSONValue] = [
            "source_seq": .int(event.seq),
            "local_date": .string(LocalDay(containing: acquisition ?? injection ?? event.time, zone: zone).description), "modality": .string(modality),
        ]
        for (field, key) in [
            ("study_uid", "study_uid"), ("series_uid", "series_uid"), ("patient_id", "patient_id"), ("accession_number", "accession_number"),
            ("series_description", "series_description"),
        ] {
            if let value = data[key]?.stringValue, !value.isEmpty { common[field] = .string(value) }
        }
        if let agent = pharma["agent"]?.stringValue { common["agent"] = .string(agent) }

        var drafts = [try await reconcile(event, pharma: pharma, nuclide: nuclide, injection: injection, common: common)]
        let facts = QCRules.SeriesFacts(
            modality: modality, descriptions: [data["series_description"], data["study_description"]].compactMap { $0?.stringValue },
            agent: pharma["agent"]?.stringValue, nuclide: nuclide)
        if let rule = QCRules.matchingProtocol(facts, in: settings.protocols) {
            var protocolCommon = common
            protocolCommon["protocol"] = .string(rule.name)
            if let window = rule.uptakeMinutes {
                drafts.append(uptake(event, rule: rule, window: window, injection: injection, acquisition: acquisition, common: protocolCommon))
            }
            if !rule.photopeaksKeV.isEmpty {
                drafts.append(energyWindows(event, rule: rule, data: data, common: protocolCommon))
            }
        }
        return drafts
    }

    private func reconcile(_ event: Event, pharma: [String: JSONValue], nuclide: String?, injection: Date?, common: [String: JSONValue]) async throws
        -> EventDraft
    {
        var out = common
        var device = event.device
        func finding(_ result: String, _ text: String, _ severity: Severity = .notice) -> EventDraft {
            out["result"] = .string(result)
            out["finding"] = .string(text)
            return draft(event, kind: "qc.administration.reconciled", severity: severity, device: device, out)
        }
        if let nuclide { out["nuclide"] = .string(nuclide) }
        if let injection { out["injection_time"] = .string(Timestamp.format(injection)) }
        guard !pharma.isEmpty else { return finding("no_header_dose", "the instance has no Radiopharmaceutical Information Sequence") }
        let headerText = pharma["total_dose_header"]?.doubleValue.map { QCText.decimal($0) } ?? "none"
        if let suspect = pharma["total_dose_suspect"]?.stringValue {
            return finding("implausible_header", "Radionuclide Total Dose \(headerText): \(suspect); not compared")
        }
        guard let header = pharma["total_dose_bq"]?.doubleValue, header > 0 else {
            let rule = pharma["total_dose_unit_rule"]?.stringValue.map { " (\($0))" } ?? ""
            return finding("no_header_dose", "no usable Radionuclide Total Dose in the header: \(headerText)\(rule)")
        }
        out["header_bq"] = .double(header.rounded())
        guard let nuclide else { return finding("no_nuclide", "the header names no radionuclide this service knows") }
        let halfLife = Radionuclide.named(nuclide)?.halfLifeSeconds ?? pharma["half_life_s"]?.doubleValue
        guard let halfLife, halfLife > 0 else { return finding("no_nuclide", "no half-life is known for \(nuclide)") }
        guard let injection else {
            return finding("no_injection_time", "the header has no readable Radiopharmaceutical Start DateTime or Start Time")
        }
        let windowStart = injection.addingTimeInterval(-settings.reconciliationWindowMinutes * 60)
        let windowEnd = injection.addingTimeInterval(settings.residualWindowMinutes * 60)
        let nearby = try await journal.events(
            EventQuery(
                before: event.seq, filter: EventFilter(kinds: ["dosecal.measurement"], since: windowStart, until: windowEnd), limit: 10_000,
                dataEquals: ["nuclide": nuclide])
        ).events.compactMap { event -> (event: Event, bq: Double)? in  // each payload parsed once
            guard let bq = event.data["activity_bq"]?.doubleValue, bq > 0 else { return nil }
            return (event, bq)
        }
        let before = nearby.filter { $0.event.time <= injection }
        guard let (syringe, syringeBq) = before.last else {
            return finding(
                "no_measurement",
                "no \(nuclide) measurement in the \(QCText.decimal(settings.reconciliationWindowMinutes)) min before the injection at \(Timestamp.format(injection))")
        }
        device = syringe.device ?? device
        // A residual: the same calibrator, after the injection, less than the syringe held.
        let residual = nearby.first { $0.event.time > injection && $0.event.device == syringe.device && $0.bq < syringeBq }
        let result = QCRules.administered(
            headerBq: header, injection: injection, measuredBq: syringeBq, measuredAt: syringe.time,
            residualBq: residual?.bq, residualAt: residual?.event.time, halfLifeSeconds: halfLife,
            tolerancePct: settings.reconciliationTolerancePct)
        out["measured_bq"] = .double(result.measuredBq.rounded())
        out["deviation_pct"] = .double(Self.round(result.deviationPct, 2))
        out["tolerance_pct"] = .double(settings.reconciliationTolerancePct)
        out["measurement_seq"] = .int(syringe.seq)
        out["measurement_time"] = .string(Timestamp.format(syringe.time))
        out["measurement_bq"] = .double(syringeBq.rounded())
        out["candidates"] = .int(Int64(before.count))
        if let residual, let residualBq = result.residualBq {
            out["residual_seq"] = .int(residual.event.seq)
            out["residual_bq"] = .double(residualBq.rounded())
        }
        let text =
            "header \(Self.mbq(header)) MBq vs measured \(Self.mbq(result.measuredBq)) MBq at injection (\(Self.signed(result.deviationPct)) %, limit ±\(QCText.decimal(settings.reconciliationTolerancePct)) %)"
        return result.pass ? finding("pass", text, .info) : finding("fail", text, .warning)
    }

    private func uptake(
        _ event: Event, rule: Settings.ProtocolRule, window: ClosedRange<Double>, injection: Date?, acquisition: Date?, common: [String: JSONValue]
    ) -> EventDraft {
        var out = common
        out["min_min"] = .double(window.lowerBound)
        out["max_min"] = .double(window.upperBound)
        var severity = Severity.warning
        if let injection { out["injection_time"] = .string(Timestamp.format(injection)) }
        if let acquisition { out["acquisition_time"] = .string(Timestamp.format(acquisition)) }
        if let injection, let acquisition {
            let minutes = acquisition.timeIntervalSince(injection) / 60
            out["delay_min"] = .double(Self.round(minutes, 1))
            let result = minutes < window.lowerBound ? "too_early" : minutes > window.upperBound ? "too_late" : "pass"
            if result == "pass" { severity = .info }
            out["result"] = .string(result)
            out["finding"] = .string(
                "acquired \(Self.duration(minutes)) after injection; allowed \(Self.duration(window.lowerBound))–\(Self.duration(window.upperBound))"
            )
        } else {
            out["result"] = .string("unknown")
            out["finding"] = .string(injection == nil ? "no injection time in the header" : "no acquisition, series or study time in the header")
        }
        return draft(event, kind: "qc.protocol.uptake_delay", severity: severity, device: event.device, out)
    }

    private func energyWindows(_ event: Event, rule: Settings.ProtocolRule, data: [String: JSONValue], common: [String: JSONValue]) -> EventDraft {
        var out = common
        var listed: [JSONValue] = []
        if case .array(let items) = data["energy_windows"] { listed = items }
        let windows: [QCRules.EnergyWindow] = listed.compactMap {
            guard let lower = $0["lower_kev"]?.doubleValue, let upper = $0["upper_kev"]?.doubleValue else { return nil }
            return QCRules.EnergyWindow(name: $0["name"]?.stringValue, lowerKeV: lower, upperKeV: upper)
        }
        let judged = QCRules.energyWindows(windows, against: rule)
        let result = judged.contains { $0.result == "fail" } ? "fail" : judged.contains { $0.result == "missing" } ? "missing" : "pass"
        out["result"] = .string(result)
        out["windows"] = .array(
            judged.map { j in
                var w: [String: JSONValue] = ["photopeak_kev": .double(j.photopeakKeV), "result": .string(j.result)]
                if let window = j.window {
                    if let name = window.name { w["name"] = .string(name) }
                    w["lower_kev"] = .double(window.lowerKeV)
                    w["upper_kev"] = .double(window.upperKeV)
                    w["center_kev"] = .double(Self.round(window.centerKeV, 2))
                    w["width_pct"] = .double(Self.round(window.widthPct, 2))
                }
                return .object(w)
            })
        let limits = "\(QCText.decimal(rule.windowWidthPct.lowerBound))–\(QCText.decimal(rule.windowWidthPct.upperBound)) % wide, centre within ±\(QCText.decimal(rule.windowCenterTolerancePct)) %"
        let parts = judged.map { j in
            guard let w = j.window else { return "\(QCText.decimal(j.photopeakKeV)) keV: no window holds it" }
            return "\(QCText.decimal(j.photopeakKeV)) keV: \(QCText.decimal(w.lowerKeV))–\(QCText.decimal(w.upperKeV)) keV (\(QCText.decimal(Self.round(w.widthPct, 1))) %) \(j.result)"
        }
        out["finding"] = .string(parts.joined(separator: "; ") + " (allowed: \(limits))")
        return draft(event, kind: "qc.protocol.energy_window", severity: result == "pass" ? .info : .warning, device: event.device, out)
    }

    // MARK: Helpers

    /// How far back an earlier instance of a series is looked for: a series arrives within
    /// minutes; one sent again more than 12 hours later is judged again.
    static let seriesLookback: TimeInterval = 12 * 3600

    /// An upper time bound for lookups of events before `time`'s event (`seq <` it): the
    /// journal then scans only the window's part of its time index. An hour of slack, as
    /// events appended concurrently may carry slightly disordered times.
    static func bound(_ time: Date) -> Date { time.addingTimeInterval(3600) }

    private func draft(_ source: Event, kind: String, severity: Severity, device: String?, _ data: [String: JSONValue]) -> EventDraft {
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
