import Foundation
import NMBridgeCore
import NMJournal

/// Dose-calibrator QA beyond daily constancy (docs/qc.md, "Dose calibrator QA"): check sources
/// read on another setting, accuracy with reference sources, Mo-99 breakthrough, linearity
/// series between the start and finish markers, and due tests. As everywhere in the engine,
/// a judgement reads only journal events before the judged one.
extension QCEngine {
    /// What a calibrator measurement is, before it is taken for a patient dose.
    enum MeasurementRole {
        /// A check source on its own setting or recognized on another (constancy).
        case constancy(QCRules.Constancy, setting: QCRules.SettingCheck?)
        /// A certified reference source (accuracy).
        case accuracy(QCRules.Accuracy)
        /// Anything else: a patient dose, an eluate, a linearity vial.
        case other
    }

    /// Classifies a measurement on `device` from its nuclide (the setting as reported), its
    /// calibration number and activity. Pure: the same answer whenever it is asked.
    func role(device: String, nuclide: String, calibrationNumber: String?, measuredBq: Double, at time: Date) -> MeasurementRole {
        let sources = settings.checkSources.filter { $0.device == device }
        let own = sources.filter { $0.nuclide == nuclide }
        let references = settings.referenceSources.filter { $0.nuclide == nuclide && ($0.devices.isEmpty || $0.devices.contains(device)) }
        let constancy = own.isEmpty ? nil : QCRules.constancy(measuredBq: measuredBq, at: time, sources: own, settings: settings)
        let accuracy = references.isEmpty ? nil : QCRules.accuracy(measuredBq: measuredBq, at: time, sources: references, tests: settings.dosecal)
        // A nuclide with both a check source and a reference source: the closer expectation.
        switch (constancy, accuracy) {
        case (let c?, let a?):
            return abs(log(a.expectedBq / measuredBq)) < abs(log(c.expectedBq / measuredBq)) ? .accuracy(a) : .constancy(c, setting: nil)
        case (let c?, nil): return .constancy(c, setting: nil)
        case (nil, let a?): return .accuracy(a)
        case (nil, nil): break
        }
        if let check = QCRules.settingCheck(
            setting: nuclide, calibrationNumber: calibrationNumber, measuredBq: measuredBq, at: time,
            minuteOfDay: Self.minuteOfDay(time, zone: zone), sources: sources, settings: settings)
        {
            let constancy = QCRules.Constancy(source: check.source, expectedBq: check.expectedBq, deviationPct: check.deviationPct, result: check.result)
            return .constancy(constancy, setting: check)
        }
        return .other
    }

    /// The role of a journaled measurement (nil: not a usable measurement).
    func role(of event: Event) -> MeasurementRole? {
        let d = event.data
        guard let device = event.device, let nuclide = d["nuclide"]?.stringValue, let bq = d["activity_bq"]?.doubleValue, bq > 0 else { return nil }
        return role(device: device, nuclide: nuclide, calibrationNumber: d["calibration_number"]?.stringValue, measuredBq: bq, at: event.time)
    }

    /// Whether a journaled measurement is a check or reference source: never a patient dose,
    /// never a reconciliation candidate.
    func isSourceReading(_ event: Event) -> Bool {
        switch role(of: event) {
        case .constancy, .accuracy: return true
        case .other, nil: return false
        }
    }

    static func minuteOfDay(_ time: Date, zone: TimeZone) -> Int {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = calendar.dateComponents([.hour, .minute], from: time)
        return (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
    }

    /// The instrument's identity as the measurement carries it.
    static func instrument(_ data: [String: JSONValue]) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for key in ["instrument_model", "instrument_serial"] { if let value = data[key]?.stringValue { out[key] = .string(value) } }
        return out
    }

    // MARK: Accuracy

    func accuracyFinding(_ event: Event, device: String, _ check: QCRules.Accuracy, common: [String: JSONValue]) -> EventDraft {
        var out = common
        out["result"] = .string(check.result)
        out["expected_bq"] = .double(check.expectedBq.rounded())
        out["deviation_pct"] = .double(Self.round(check.deviationPct, 2))
        out["source_serial"] = .string(check.source.serial)
        out["certificate_bq"] = .double(check.source.activityBq)
        out["certificate_date"] = .string(Timestamp.format(check.source.referenceDate))
        if let uncertainty = check.source.uncertaintyPct { out["uncertainty_pct"] = .double(uncertainty) }
        out["investigate_pct"] = .double(settings.dosecal.accuracyInvestigatePct)
        out["fail_pct"] = .double(settings.dosecal.accuracyFailPct)
        return draft(event, kind: "qc.dosecal.accuracy", severity: Self.severity(check.result), device: device, out)
    }

    static func severity(_ result: String) -> Severity {
        switch result {
        case "pass": .info
        case "fail": .error
        default: .warning
        }
    }

    // MARK: Mo-99 breakthrough

    /// A Mo-99 assay pairs with the eluate's Tc-99m reading on the same calibrator within the
    /// window, in either order: judged at the Mo-99 reading when the Tc-99m reading came first
    /// (and no other assay since), else at the first Tc-99m reading after the assay (when the
    /// assay was not already paired with an earlier one).
    func breakthrough(_ event: Event, device: String, nuclide: String, common: [String: JSONValue]) async throws -> EventDraft? {
        let tests = settings.dosecal
        let window = tests.mo99PairWindowMinutes * 60
        let nearby = try await journal.events(
            EventQuery(
                before: event.seq,
                filter: EventFilter(devices: [device], kinds: ["dosecal.measurement"], since: event.time.addingTimeInterval(-2 * window), until: Self.bound(event.time)),
                limit: 10_000)
        ).events.filter { e in
            let n = e.data["nuclide"]?.stringValue
            return (n == "Mo-99" || n == "Tc-99m") && (e.data["activity_bq"]?.doubleValue ?? -1) >= 0
        }.sorted { $0.seq < $1.seq }
        func isMo(_ e: Event) -> Bool { e.data["nuclide"]?.stringValue == "Mo-99" }
        /// The Tc-99m reading an assay at index `i` of `nearby` pairs with backwards, if any.
        func backwardPartner(_ list: ArraySlice<Event>, of moTime: Date) -> Event? {
            guard let tc = list.last(where: { !isMo($0) && !isSourceReading($0) && moTime.timeIntervalSince($0.time) <= window }) else { return nil }
            return list.contains { isMo($0) && $0.seq > tc.seq } ? nil : tc
        }
        let pair: (mo: Event, tc: Event)
        if nuclide == "Mo-99" {
            guard let partner = backwardPartner(nearby[...], of: event.time) else { return nil }
            pair = (event, partner)
        } else {
            guard let index = nearby.lastIndex(where: { isMo($0) && event.time.timeIntervalSince($0.time) <= window }) else { return nil }
            let assay = nearby[index]
            // Another Tc-99m reading since the assay took it, or one before it already did.
            if nearby[(index + 1)...].contains(where: { !isMo($0) && !isSourceReading($0) }) { return nil }
            if backwardPartner(nearby[..<index], of: assay.time) != nil { return nil }
            pair = (assay, event)
        }
        let (mo, tc) = pair
        guard let moBq = mo.data["activity_bq"]?.doubleValue, let tcBq = tc.data["activity_bq"]?.doubleValue,
            let result = QCRules.breakthrough(
                mo99Bq: moBq * tests.mo99CanisterFactor, mo99At: mo.time, tc99mBq: tcBq, tc99mAt: tc.time, shelfLifeHours: tests.eluateShelfLifeHours,
                limitKBqPerMBq: tests.mo99LimitKBqPerMBq)
        else { return nil }
        var out = common
        out["nuclide"] = nil
        out["measured_bq"] = nil
        out["result"] = .string(result.result)
        out["mo99_bq"] = .double(result.mo99Bq.rounded())
        out["tc99m_bq"] = .double(tcBq.rounded())
        out["ratio_kbq_per_mbq"] = .double(Self.round(result.ratioAtElution, 5))
        out["ratio_at_expiry_kbq_per_mbq"] = .double(Self.round(result.ratioAtExpiry, 5))
        let expiry = tc.time.addingTimeInterval(tests.eluateShelfLifeHours * 3600)
        out["expiry_time"] = .string(Timestamp.format(expiry))
        if result.hoursToLimit < tests.eluateShelfLifeHours {
            out["usable_until"] = .string(Timestamp.format(tc.time.addingTimeInterval(result.hoursToLimit * 3600)))
        }
        out["limit_kbq_per_mbq"] = .double(tests.mo99LimitKBqPerMBq)
        out["mo99_seq"] = .int(mo.seq)
        out["tc99m_seq"] = .int(tc.seq)
        out["canister_factor"] = .double(tests.mo99CanisterFactor)
        for (key, value) in Self.instrument(mo.data).merging(Self.instrument(tc.data), uniquingKeysWith: { a, _ in a }) { out[key] = value }
        return draft(event, kind: "qc.generator.mo99", severity: result.result == "pass" ? .info : result.result == "fail" ? .error : .warning, device: device, out)
    }

    // MARK: Linearity

    /// Judges the series between the device's last start marker and this finish marker.
    /// The linearity test a finish marker closes: its start marker, nuclide and readings.
    struct LinearityTest {
        var start: Event
        var nuclide: String
        var halfLife: Double
        var readingEvents: [Event]
        var readings: [(time: Date, bq: Double, seq: Int64)]
    }

    func linearityTest(finishedBy event: Event, device: String) async throws -> LinearityTest? {
        guard
            let start = try await journal.events(
                EventQuery(before: event.seq, filter: EventFilter(devices: [device], kinds: ["qc.dosecal.linearity_started", "qc.dosecal.linearity_finished"]), limit: 1, newestFirst: true)
            ).events.first, start.kind == "qc.dosecal.linearity_started"
        else { return nil }
        let nuclide = start.data["nuclide"]?.stringValue ?? "Tc-99m"
        guard let halfLife = Radionuclide.named(nuclide)?.halfLifeSeconds else { return nil }
        let readingEvents = try await journal.events(
            EventQuery(
                after: start.seq, before: event.seq, filter: EventFilter(devices: [device], kinds: ["dosecal.measurement"]), limit: 100_000,
                dataEquals: ["nuclide": nuclide])
        ).events.filter { !isSourceReading($0) }
        let readings = readingEvents.compactMap { e -> (time: Date, bq: Double, seq: Int64)? in
            guard let bq = e.data["activity_bq"]?.doubleValue, bq > 0 else { return nil }
            return (e.time, bq, e.seq)
        }
        return LinearityTest(start: start, nuclide: nuclide, halfLife: halfLife, readingEvents: readingEvents, readings: readings)
    }

    /// Judges the series between the device's last start marker and this finish marker.
    mutating func judgeLinearity(_ event: Event) async throws -> [EventDraft] {
        guard let device = event.device, let test = try await linearityTest(finishedBy: event, device: device) else { return [] }
        let (start, nuclide, halfLife, readings) = (test.start, test.nuclide, test.halfLife, test.readings)
        let identity = test.readingEvents.last.map { Self.instrument($0.data) } ?? [:]
        let tests = settings.dosecal
        let series = QCRules.linearitySeries(readings, halfLifeSeconds: halfLife, bandPct: tests.linearityBandPct)
        let localDate = LocalDay(containing: event.time, zone: zone)
        var out: [String: JSONValue] = [
            "source_seq": .int(event.seq), "local_date": .string(localDate.description), "nuclide": .string(nuclide),
            "started_seq": .int(start.seq), "excluded": .int(Int64(readings.count - series.count)),
            "investigate_pct": .double(tests.linearityInvestigatePct), "fail_pct": .double(tests.linearityFailPct),
        ]
        guard let fit = QCRules.linearity(series, halfLifeSeconds: halfLife, tests: tests), let first = fit.points.first, let last = fit.points.last else {
            out["result"] = .string("incomplete")
            out["readings"] = .array([])
            out["max_deviation_pct"] = .double(0)
            out["fitted_start_bq"] = .double(0)
            out["span"] = .double(0)
            out["start_time"] = .string(Timestamp.format(start.time))
            out["end_time"] = .string(Timestamp.format(event.time))
            return [draft(event, kind: "qc.dosecal.linearity", severity: .warning, device: device, out)]
        }
        out["result"] = .string(fit.result)
        out["readings"] = .array(
            fit.points.map { p in
                .object([
                    "time": .string(Timestamp.format(p.time)), "seq": .int(p.seq), "measured_bq": .double(p.measuredBq.rounded()),
                    "expected_bq": .double(p.expectedBq.rounded()), "deviation_pct": .double(Self.round(p.deviationPct, 2)),
                ])
            })
        out["max_deviation_pct"] = .double(Self.round(fit.maxDeviationPct, 2))
        out["fitted_start_bq"] = .double(fit.fittedStartBq.rounded())
        out["span"] = .double(Self.round(fit.span, 1))
        out["start_time"] = .string(Timestamp.format(first.time))
        out["end_time"] = .string(Timestamp.format(last.time))
        for (key, value) in identity { out[key] = value }
        return [draft(event, kind: "qc.dosecal.linearity", severity: fit.result == "incomplete" ? .warning : Self.severity(fit.result), device: device, out)]
    }

    /// Whether a reading belongs to an open linearity test on its calibrator: the latest marker
    /// before it is a start for its nuclide, and it is the test's first reading or within the
    /// band around the first reading decayed to its time. Such readings are QA, not patient doses.
    func isLinearityReading(_ event: Event, device: String, nuclide: String, measured: Double) async throws -> Bool {
        guard
            let start = try await journal.events(
                EventQuery(
                    before: event.seq, filter: EventFilter(devices: [device], kinds: ["qc.dosecal.linearity_started", "qc.dosecal.linearity_finished"]),
                    limit: 1, newestFirst: true)
            ).events.first, start.kind == "qc.dosecal.linearity_started", (start.data["nuclide"]?.stringValue ?? "Tc-99m") == nuclide,
            let halfLife = Radionuclide.named(nuclide)?.halfLifeSeconds
        else { return false }
        let earlier = try await journal.events(
            EventQuery(
                after: start.seq, before: event.seq, filter: EventFilter(devices: [device], kinds: ["dosecal.measurement"]), limit: 100,
                dataEquals: ["nuclide": nuclide])
        ).events
        guard let anchor = earlier.first(where: { !isSourceReading($0) }), let anchorBq = anchor.data["activity_bq"]?.doubleValue, anchorBq > 0 else {
            return true  // the first reading of the test
        }
        let expected = anchorBq * exp(-M_LN2 * event.time.timeIntervalSince(anchor.time) / halfLife)
        return abs(measured - expected) / expected * 100 <= settings.dosecal.linearityBandPct
    }

    // MARK: Due tests

    /// `qc.dosecal.test_due` for the calibrator's tests whose last pass is older than their
    /// interval, once per calibrator and site-local day (at its first measurement that day).
    mutating func dueTests(_ event: Event, device: String, localDate: LocalDay) async throws -> [EventDraft] {
        let tests = settings.dosecal
        guard tests.tracksDueDates, tests.accuracyIntervalDays != nil || tests.linearityIntervalDays != nil else { return [] }
        if dueChecked[device] == localDate { return [] }
        dueChecked[device] = localDate
        // Only the calibrator's first measurement of the day: read from the inputs (not from
        // findings, which may be appended after later inputs), so a restart judges the same.
        let dayStart = localDate.start(in: zone)
        let earlier = try await journal.events(
            EventQuery(before: event.seq, filter: EventFilter(devices: [device], kinds: ["dosecal.measurement"], since: dayStart, until: Self.bound(event.time)), limit: 1)
        ).events
        if !earlier.isEmpty { return [] }
        var drafts: [EventDraft] = []
        for (test, interval) in [("accuracy", tests.accuracyIntervalDays), ("linearity", tests.linearityIntervalDays)] {
            guard let interval else { continue }
            let since = localDate.adding(days: -Int(interval.rounded(.up))).start(in: zone)
            let lastPass = test == "accuracy"
                ? try await lastAccuracyPass(before: event, device: device, since: since)
                : try await lastLinearityPass(before: event, device: device, since: since)
            var out: [String: JSONValue] = [
                "source_seq": .int(event.seq), "local_date": .string(localDate.description), "test": .string(test), "interval_days": .double(interval),
            ]
            for (key, value) in Self.instrument(event.data) { out[key] = value }
            if let lastPass {
                let due = lastPass.adding(days: Int(interval.rounded(.up)))
                if due > localDate { continue }
                out["last_pass_date"] = .string(lastPass.description)
                out["due_date"] = .string(due.description)
            }
            drafts.append(draft(event, kind: "qc.dosecal.test_due", severity: .warning, device: device, out))
        }
        return drafts
    }

    /// The latest site-local day since `since` on which enough distinct reference sources
    /// passed accuracy on the calibrator, judged again from its measurements.
    func lastAccuracyPass(before event: Event, device: String, since: Date) async throws -> LocalDay? {
        let configured = settings.referenceSources.filter { $0.devices.isEmpty || $0.devices.contains(device) }
        guard !configured.isEmpty else { return nil }
        let needed = max(1, min(settings.dosecal.accuracyMinSources, Set(configured.map(\.serial)).count))
        var serialsByDay: [LocalDay: Set<String>] = [:]
        for nuclide in Set(configured.map(\.nuclide)) {
            let measurements = try await journal.events(
                EventQuery(
                    before: event.seq, filter: EventFilter(devices: [device], kinds: ["dosecal.measurement"], since: since, until: Self.bound(event.time)),
                    limit: 10_000, newestFirst: true, dataEquals: ["nuclide": nuclide])
            ).events
            for measurement in measurements {
                if case .accuracy(let check)? = role(of: measurement), check.result == "pass" {
                    serialsByDay[LocalDay(containing: measurement.time, zone: zone), default: []].insert(check.source.serial)
                }
            }
        }
        return serialsByDay.filter { $0.value.count >= needed }.keys.max()
    }

    /// The latest site-local day since `since` of a linearity test on the calibrator that
    /// passed, judged again from its markers and readings.
    func lastLinearityPass(before event: Event, device: String, since: Date) async throws -> LocalDay? {
        let finishes = try await journal.events(
            EventQuery(before: event.seq, filter: EventFilter(devices: [device], kinds: ["qc.dosecal.linearity_finished"], since: since), limit: 1000, newestFirst: true)
        ).events
        for finish in finishes.reversed() {
            guard let test = try await linearityTest(finishedBy: finish, device: device) else { continue }
            let series = QCRules.linearitySeries(test.readings, halfLifeSeconds: test.halfLife, bandPct: settings.dosecal.linearityBandPct)
            if QCRules.linearity(series, halfLifeSeconds: test.halfLife, tests: settings.dosecal)?.result == "pass" {
                return LocalDay(containing: finish.time, zone: zone)
            }
        }
        return nil
    }
}
