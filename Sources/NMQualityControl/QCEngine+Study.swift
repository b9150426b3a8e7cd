import Foundation
import NMBridgeCore
import NMJournal

/// Study-level judging (docs/qc.md, "Studies").
///
/// A study is judged when the DICOM receiver journals `dicom.study.stable` for it: the
/// engine then reads the study's NM/PT instances stored before that event, so a static view
/// sent before the whole-body sweep of its study is judged knowing the sweep, and the same
/// study sent in any order gives the same findings. A study that receives more series after
/// it was stable becomes stable again; only the series of the new period are judged then,
/// against the primary chosen before (`QCRules.studyPlan`). Everything read is before the
/// stable event, so judging it again gives the same findings.
extension QCEngine {
    /// How far back a study's instances are looked for when it becomes stable: the series of
    /// one study can be days apart (In-111 imaging at 4, 24 and 48 h; post-therapy scans).
    static let studyLookback: TimeInterval = 14 * 86_400

    /// One NM/PT series of the study, described by its first stored instance.
    struct StudySeries {
        var uid: String
        var first: Event
        var modality: String
        var pharmaceuticals: [[String: JSONValue]]
        var acquisition: Date?
        var injection: Date?
        var imageType: [String]
        var rule: Settings.ProtocolRule?
        var batch: Int
        var data: [String: JSONValue] { first.data }
        /// Its protocol names it a primary acquisition (no primary Image Type given: any series).
        var preferred: Bool {
            guard let rule else { return false }
            return rule.primaryImageTypes.isEmpty || QCRules.imageTypeMatches(imageType, rule.primaryImageTypes)
        }
        var isWholeBody: Bool { imageType.contains("WHOLE BODY") }
    }

    mutating func judgeStudy(_ event: Event) async throws -> [EventDraft] {
        guard let study = event.data["study_uid"]?.stringValue, !study.isEmpty else { return [] }
        let since = event.time.addingTimeInterval(-Self.studyLookback)
        // NM and PT only (Modality is a CS value, upper case by definition): the CT slices of
        // a SPECT/CT or PET/CT, often hundreds, are never parsed.
        var instances: [Event] = []
        for modality in ["NM", "PT"] {
            instances += try await journal.events(
                EventQuery(
                    before: event.seq, filter: EventFilter(kinds: ["dicom.instance.stored"], since: since, until: Self.bound(event.time)),
                    limit: 100_000, dataEquals: ["study_uid": study, "modality": modality])
            ).events
        }
        let earlierStable = try await journal.events(
            EventQuery(
                before: event.seq, filter: EventFilter(kinds: ["dicom.study.stable"], since: since, until: Self.bound(event.time)),
                limit: 100_000, dataEquals: ["study_uid": study])
        ).events.map(\.seq)
        var series: [StudySeries] = []
        var seen: Set<String> = []
        for instance in instances.sorted(by: { $0.seq < $1.seq }) {
            let data = instance.data
            guard let modality = data["modality"]?.stringValue?.uppercased(), modality == "NM" || modality == "PT",
                let uid = data["series_uid"]?.stringValue, !uid.isEmpty, seen.insert(uid).inserted,
                !isCameraQualityControl(instance)  // a flood or COR acquisition is not a patient study
            else { continue }
            series.append(describe(instance, uid: uid, modality: modality, batch: earlierStable.filter { $0 < instance.seq }.count))
        }
        let batch = earlierStable.count
        let plan = QCRules.studyPlan(
            series.map { QCRules.SeriesCandidate(batch: $0.batch, acquisition: $0.acquisition, order: $0.first.seq, preferred: $0.preferred) },
            judging: batch)
        guard let primaryIndex = plan.primary else { return [] }
        let primary = series[primaryIndex]
        var drafts: [EventDraft] = []
        for index in plan.judgedNow {
            if index == primaryIndex {
                drafts += try await judgePrimary(event, primary, replaced: plan.replaced.map { series[$0] })
            } else {
                drafts += judgeSupplementary(event, series[index], primary: primary)
            }
        }
        return drafts
    }

    private func describe(_ instance: Event, uid: String, modality: String, batch: Int) -> StudySeries {
        let data = instance.data
        var pharmaceuticals: [[String: JSONValue]] = []
        if case .array(let items) = data["radiopharmaceuticals"] { pharmaceuticals = items.compactMap(\.objectValue) }
        if pharmaceuticals.isEmpty, let first = data["radiopharmaceutical"]?.objectValue { pharmaceuticals = [first] }
        let offset = data["timezone_offset"]?.stringValue
        let acquisition = Self.acquisitionTime(data, offset: offset, zone: zone)
        let injection = Self.injectionTime(pharmaceuticals.first ?? [:], data: data, acquisition: acquisition, offset: offset, zone: zone)
        var imageType: [String] = []
        if case .array(let values) = data["image_type"] { imageType = values.compactMap(\.stringValue).map { $0.uppercased() } }
        var facts = QCRules.SeriesFacts(
            modality: modality, descriptions: [data["series_description"], data["study_description"]].compactMap { $0?.stringValue },
            agent: pharmaceuticals.first?["agent"]?.stringValue, nuclide: pharmaceuticals.first?["nuclide"]?.stringValue)
        facts.otherAgents = pharmaceuticals.dropFirst().compactMap { $0["agent"]?.stringValue }
        facts.otherNuclides = pharmaceuticals.dropFirst().compactMap { $0["nuclide"]?.stringValue }
        return StudySeries(
            uid: uid, first: instance, modality: modality, pharmaceuticals: pharmaceuticals, acquisition: acquisition, injection: injection,
            imageType: imageType, rule: QCRules.matchingProtocol(facts, in: settings.protocols), batch: batch)
    }

    /// The fields every finding about a series has.
    private func seriesCommon(_ stable: Event, _ series: StudySeries, role: String) -> [String: JSONValue] {
        var common: [String: JSONValue] = [
            "source_seq": .int(stable.seq), "instance_seq": .int(series.first.seq), "role": .string(role),
            "local_date": .string(LocalDay(containing: series.acquisition ?? series.injection ?? stable.time, zone: zone).description),
            "modality": .string(series.modality), "view": .string(QCRules.viewKind(imageType: series.imageType, modality: series.modality)),
        ]
        for key in ["study_uid", "series_uid", "patient_id", "accession_number", "series_description"] {
            if let value = series.data[key]?.stringValue, !value.isEmpty { common[key] = .string(value) }
        }
        if let agent = series.pharmaceuticals.first?["agent"]?.stringValue { common["agent"] = .string(agent) }
        if let acquisition = series.acquisition { common["acquisition_time"] = .string(Timestamp.format(acquisition)) }
        if !series.imageType.isEmpty { common["image_type"] = .array(series.imageType.map(JSONValue.string)) }
        return common
    }

    // MARK: Primary

    private func judgePrimary(_ stable: Event, _ series: StudySeries, replaced: StudySeries?) async throws -> [EventDraft] {
        var common = seriesCommon(stable, series, role: "primary")
        if let replaced { common["replaces_primary_series_uid"] = .string(replaced.uid) }
        var drafts: [EventDraft] = []
        // One reconciliation per radiopharmaceutical: a dual-isotope study had two injections.
        for pharma in series.pharmaceuticals.isEmpty ? [[:]] : series.pharmaceuticals {
            let injection = Self.injectionTime(
                pharma, data: series.data, acquisition: series.acquisition, offset: series.data["timezone_offset"]?.stringValue, zone: zone)
            var out = common
            if let agent = pharma["agent"]?.stringValue { out["agent"] = .string(agent) }
            drafts.append(
                try await reconcile(stable, sender: series.first.device, pharma: pharma, nuclide: pharma["nuclide"]?.stringValue, injection: injection, common: out))
        }
        guard let rule = series.rule else { return drafts }
        var protocolCommon = common
        protocolCommon["protocol"] = .string(rule.name)
        if let window = rule.uptakeMinutes {
            drafts.append(
                uptake(stable, device: series.first.device, window: window, injection: series.injection, acquisition: series.acquisition, common: protocolCommon))
        }
        if rule.checksActivity { drafts.append(activity(stable, series, rule: rule, common: protocolCommon)) }
        return drafts + acquisitionChecks(stable, series, rule: rule, common: protocolCommon)
    }

    // MARK: Supplementary views

    private func judgeSupplementary(_ stable: Event, _ series: StudySeries, primary: StudySeries) -> [EventDraft] {
        var out = seriesCommon(stable, series, role: "supplementary")
        let rule = series.rule ?? primary.rule
        if let rule { out["protocol"] = .string(rule.name) }
        out["primary_series_uid"] = .string(primary.uid)
        out["primary_instance_seq"] = .int(primary.first.seq)
        if let description = primary.data["series_description"]?.stringValue { out["primary_series_description"] = .string(description) }
        let injection = series.injection ?? primary.injection
        if let injection { out["injection_time"] = .string(Timestamp.format(injection)) }
        if let acquisition = primary.acquisition { out["primary_acquisition_time"] = .string(Timestamp.format(acquisition)) }
        let view = QCRules.viewKind(imageType: series.imageType, modality: series.modality)
        var text = view == "series" ? "series" : "\(view) view"
        if let description = series.data["series_description"]?.stringValue { text += " \"\(description)\"" }
        var meanings: [String] = []
        if case .array(let codes) = series.data["view_codes"] {
            for code in codes { if let meaning = code["meaning"]?.stringValue, !meanings.contains(meaning) { meanings.append(meaning) } }
        }
        if !meanings.isEmpty {
            out["view_codes"] = .array(meanings.map(JSONValue.string))
            text += " (\(meanings.joined(separator: ", ")))"
        }
        if let acquisition = series.acquisition {
            var times: [String] = []
            if let injection {
                let minutes = acquisition.timeIntervalSince(injection) / 60
                out["delay_min"] = .double(Self.round(minutes, 1))
                times.append("\(Self.duration(minutes)) after injection")
            }
            if let primaryTime = primary.acquisition {
                let minutes = acquisition.timeIntervalSince(primaryTime) / 60
                out["after_primary_min"] = .double(Self.round(minutes, 1))
                times.append("\(Self.duration(abs(minutes))) \(minutes < 0 ? "before" : "after") the primary")
            }
            text += times.isEmpty ? "" : ", acquired " + times.joined(separator: ", ")
        } else {
            text += ", no acquisition time in the header"
        }
        let primaryView = QCRules.viewKind(imageType: primary.imageType, modality: primary.modality)
        let primaryName = primaryView == "series" ? "series \(primary.uid)" : "\(primaryView) series \(primary.uid)"
        out["finding"] = .string(text + "; primary: \(primaryName) (uptake judged there, not here)")
        out["result"] = .string("supplementary")
        var drafts = [draft(stable, kind: "qc.protocol.supplementary_view", severity: .info, device: series.first.device, out)]
        if let rule {
            var common = seriesCommon(stable, series, role: "supplementary")
            common["protocol"] = .string(rule.name)
            common["primary_series_uid"] = .string(primary.uid)
            drafts += acquisitionChecks(stable, series, rule: rule, common: common)
        }
        return drafts
    }

    /// The checks every acquisition of the protocol gets, primary or not: whole-body scan
    /// speed, collimator, energy windows.
    private func acquisitionChecks(_ stable: Event, _ series: StudySeries, rule: Settings.ProtocolRule, common: [String: JSONValue]) -> [EventDraft] {
        var drafts: [EventDraft] = []
        // Whole-body series only: Scan Velocity is required only for them (PS3.3 NM Image
        // module, Type 2C), and a static may carry a meaningless 0.
        if let limits = rule.scanSpeedCmPerMin, series.isWholeBody {
            drafts.append(scanSpeed(stable, series, limits: limits, common: common))
        }
        if !rule.collimators.isEmpty, series.modality == "NM" {
            drafts.append(collimator(stable, series, rule: rule, common: common))
        }
        if !rule.photopeaksByNuclide.isEmpty {
            let inHeader = series.pharmaceuticals.compactMap { $0["nuclide"]?.stringValue }
            var nuclides: [String] = []
            for nuclide in inHeader.isEmpty ? rule.photopeaksByNuclide.keys.sorted() : inHeader where !nuclides.contains(nuclide) {
                nuclides.append(nuclide)
            }
            for nuclide in nuclides {
                drafts.append(energyWindows(stable, series, rule: rule, peaks: rule.photopeaksByNuclide[nuclide] ?? [], nuclide: nuclide, common: common))
            }
        } else if !rule.photopeaksKeV.isEmpty {
            drafts.append(energyWindows(stable, series, rule: rule, peaks: rule.photopeaksKeV, nuclide: nil, common: common))
        }
        return drafts
    }

    // MARK: The checks

    func reconcile(_ event: Event, sender: String?, pharma: [String: JSONValue], nuclide: String?, injection: Date?, common: [String: JSONValue])
        async throws -> EventDraft
    {
        var out = common
        var device = sender
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
            // A check source read on this setting (Cs-137 on Tc-99m) is never the syringe (QCEngine+Dosecal.swift).
            if isSourceReading(event) { return nil }
            return (event, bq)
        }.asyncFilter { candidate in
            // Nor is a reading of an open linearity test's vial.
            guard let device = candidate.event.device else { return true }
            return try await !isLinearityReading(candidate.event, device: device, nuclide: nuclide, measured: candidate.bq)
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

    func uptake(_ event: Event, device: String?, window: ClosedRange<Double>, injection: Date?, acquisition: Date?, common: [String: JSONValue])
        -> EventDraft
    {
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
        return draft(event, kind: "qc.protocol.uptake_delay", severity: severity, device: device, out)
    }

    private func activity(_ event: Event, _ series: StudySeries, rule: Settings.ProtocolRule, common: [String: JSONValue]) -> EventDraft {
        var out = common
        let pharma =
            series.pharmaceuticals.first { item in item["nuclide"]?.stringValue.map(rule.nuclides.contains) == true } ?? series.pharmaceuticals.first
        if let nuclide = pharma?["nuclide"]?.stringValue { out["nuclide"] = .string(nuclide) }
        if let low = rule.activityMinMBq { out["activity_min_bq"] = .double(low * 1e6) }
        if let high = rule.activityMaxMBq { out["activity_max_bq"] = .double(high * 1e6) }
        let weight = series.data["patient_weight_kg"]?.doubleValue
        if let weight { out["weight_kg"] = .double(weight) }
        if let perKg = rule.activityMBqPerKg {
            out["activity_mbq_per_kg"] = .double(perKg)
            out["tolerance_pct"] = .double(rule.activityTolerancePct)
        }
        func finish(_ result: String, _ text: String) -> EventDraft {
            out["result"] = .string(result)
            out["finding"] = .string(text)
            return draft(event, kind: "qc.protocol.activity", severity: result == "pass" ? .info : .warning, device: series.first.device, out)
        }
        guard let pharma, pharma["total_dose_suspect"] == nil, let bq = pharma["total_dose_bq"]?.doubleValue, bq > 0 else {
            return finish("unknown", "no usable Radionuclide Total Dose in the header")
        }
        let judged = QCRules.activity(bq: bq, weightKg: weight, rule: rule)
        out["activity_bq"] = .double(bq.rounded())
        if let low = judged.lowBq { out["low_bq"] = .double(low.rounded()) }
        if let high = judged.highBq { out["high_bq"] = .double(high.rounded()) }
        if let expected = judged.expectedBq { out["expected_bq"] = .double(expected.rounded()) }
        let allowed = [judged.lowBq.map { Self.mbq($0) } ?? "0", judged.highBq.map { Self.mbq($0) } ?? "∞"].joined(separator: "–")
        var text = "administered \(Self.mbq(bq)) MBq; allowed \(allowed) MBq"
        if let expected = judged.expectedBq, let perKg = rule.activityMBqPerKg, let weight {
            text += " (\(QCText.decimal(weight)) kg × \(QCText.decimal(perKg)) MBq/kg → \(Self.mbq(expected)) MBq ± \(QCText.decimal(rule.activityTolerancePct)) %"
            text += rule.activityMinMBq != nil || rule.activityMaxMBq != nil ? ", within the protocol's limits)" : ")"
        } else if rule.activityMBqPerKg != nil {
            text += " (no Patient's Weight in the header: the protocol's fixed limits)"
        }
        if judged.result == "unknown" { text = "no Patient's Weight in the header and no fixed limit in the protocol" }
        return finish(judged.result, text)
    }

    private func scanSpeed(_ event: Event, _ series: StudySeries, limits: ClosedRange<Double>, common: [String: JSONValue]) -> EventDraft {
        var out = common
        out["min_cm_per_min"] = .double(limits.lowerBound)
        out["max_cm_per_min"] = .double(limits.upperBound)
        let allowed = "\(QCText.decimal(limits.lowerBound))–\(QCText.decimal(limits.upperBound)) cm/min"
        guard let velocity = series.data["scan_velocity_mm_per_s"]?.doubleValue else {
            out["result"] = .string("unknown")
            out["finding"] = .string("the whole-body series has no Scan Velocity (0018,1300); allowed \(allowed)")
            return draft(event, kind: "qc.protocol.scan_speed", severity: .warning, device: series.first.device, out)
        }
        let speed = QCRules.cmPerMinute(mmPerSecond: velocity)
        let result = QCRules.scanSpeed(cmPerMin: speed, limits: limits)
        out["scan_velocity_mm_per_s"] = .double(velocity)
        out["speed_cm_per_min"] = .double(Self.round(speed, 2))
        out["result"] = .string(result)
        out["finding"] = .string(
            "scanned at \(String(format: "%.1f", speed)) cm/min (Scan Velocity \(QCText.decimal(velocity)) mm/s); allowed \(allowed)")
        return draft(event, kind: "qc.protocol.scan_speed", severity: result == "pass" ? .info : .warning, device: series.first.device, out)
    }

    private func collimator(_ event: Event, _ series: StudySeries, rule: Settings.ProtocolRule, common: [String: JSONValue]) -> EventDraft {
        var out = common
        var names: [String] = []
        if case .array(let values) = series.data["collimators"] { names = values.compactMap(\.stringValue) }
        let result = QCRules.collimator(names, patterns: rule.collimators)
        out["collimators"] = .array(names.map(JSONValue.string))
        out["allowed"] = .array(rule.collimators.map(JSONValue.string))
        out["result"] = .string(result)
        let allowed = rule.collimators.joined(separator: ", ")
        out["finding"] = .string(
            names.isEmpty
                ? "the header names no Collimator/Grid Name (0018,1180); allowed \(allowed)"
                : "collimator \(names.joined(separator: ", ")); allowed \(allowed)")
        let severity: Severity = result == "pass" ? .info : result == "fail" ? .error : .warning
        return draft(event, kind: "qc.protocol.collimator", severity: severity, device: series.first.device, out)
    }

    func energyWindows(
        _ event: Event, _ series: StudySeries, rule: Settings.ProtocolRule, peaks: [Double], nuclide: String?, common: [String: JSONValue]
    ) -> EventDraft {
        var out = common
        if let nuclide { out["nuclide"] = .string(nuclide) }
        guard !peaks.isEmpty else {
            out["result"] = .string("unknown")
            out["windows"] = .array([])
            out["finding"] = .string("protocol \(rule.name) names no photopeak for \(nuclide ?? "this nuclide")")
            return draft(event, kind: "qc.protocol.energy_window", severity: .warning, device: series.first.device, out)
        }
        var judgedRule = rule
        judgedRule.photopeaksKeV = peaks
        var listed: [JSONValue] = []
        if case .array(let items) = series.data["energy_windows"] { listed = items }
        let windows: [QCRules.EnergyWindow] = listed.compactMap {
            guard let lower = $0["lower_kev"]?.doubleValue, let upper = $0["upper_kev"]?.doubleValue else { return nil }
            return QCRules.EnergyWindow(name: $0["name"]?.stringValue, lowerKeV: lower, upperKeV: upper)
        }
        let judged = QCRules.energyWindows(windows, against: judgedRule)
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
        out["finding"] = .string((nuclide.map { "\($0): " } ?? "") + parts.joined(separator: "; ") + " (allowed: \(limits))")
        return draft(event, kind: "qc.protocol.energy_window", severity: result == "pass" ? .info : .warning, device: series.first.device, out)
    }
}

extension Array {
    /// The elements for which the async `isIncluded` holds, in order.
    func asyncFilter(_ isIncluded: (Element) async throws -> Bool) async rethrows -> [Element] {
        var kept: [Element] = []
        for element in self where try await isIncluded(element) { kept.append(element) }
        return kept
    }
}
