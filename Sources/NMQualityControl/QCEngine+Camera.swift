import Foundation
import NMBridgeCore
import NMJournal

/// Camera QC in the engine: recognizing a camera's QC acquisitions among the stored
/// instances, judging floods (NEMA NU 1) and COR acquisitions from the stored files, and
/// flagging patient studies acquired on a camera without a passing flood that day
/// (docs/qc.md, "Camera QC").
///
/// Determinism: a flood's judgement reads the stored file and, for its baseline, the
/// `qc.camera.uniformity` findings whose `source_seq` is before it; a patient study's reads
/// those findings too. The service judges in journal order and appends an event's findings
/// before it judges the next, so these findings are all there whenever the event is judged
/// (again).
extension QCEngine {
    /// What the camera rules make of a stored instance.
    enum CameraOutcome {
        /// A QC acquisition: these findings, and it is not judged as a patient study.
        case qualityControl([EventDraft])
        /// Anything else: judged as usual, plus these findings.
        case patient([EventDraft])
    }

    /// Per-engine memory of the camera rules.
    struct CameraState: Sendable {
        /// Patient series already looked at for qc_missing (first instance per series).
        var seriesSeen: [String: Int64] = [:]
    }

    typealias Camera = DaemonConfiguration.QualityControl.Camera

    /// The values the match rules look at.
    struct AcquisitionFacts {
        var seriesDescription: String?
        var protocolName: String?
        var patientID: String?
        var patientName: String?
        var imageType: [String] = []
    }

    /// Which configured camera a stored NM instance comes from, and whether it is one of
    /// its flood or COR acquisitions; nil when no camera applies.
    func cameraAcquisition(_ event: Event) -> (camera: Camera, isCOR: Bool, isFlood: Bool)? {
        let data = event.data
        guard !settings.cameras.isEmpty, data["modality"]?.stringValue?.uppercased() == "NM" else { return nil }
        let station = data["station_name"]?.stringValue
        guard
            let camera = settings.cameras.first(where: { camera in
                (camera.devices.isEmpty || event.device.map(camera.devices.contains) == true)
                    && (camera.stationNames.isEmpty || station.map { s in camera.stationNames.contains { Glob.matches(pattern: $0.lowercased(), s.lowercased()) } } == true)
            })
        else { return nil }
        var facts = AcquisitionFacts(
            seriesDescription: data["series_description"]?.stringValue, patientID: data["patient_id"]?.stringValue,
            patientName: data["patient_name"]?.stringValue)
        // Protocol Name and Image Type are not in the event: read the header when a rule needs them.
        let needsHeader = [camera.flood, camera.cor].contains { !$0.protocolName.isEmpty || !$0.imageType.isEmpty }
        if needsHeader, let path = data["path"]?.stringValue, let parsed = try? NMImageFile.read(path: path, headerOnly: true) {
            facts.protocolName = parsed.protocolName
            facts.imageType = parsed.imageType
        }
        let isCOR = Self.matches(camera.cor, facts)
        return (camera, isCOR, !isCOR && Self.matches(camera.flood, facts))
    }

    /// Whether a stored instance is a camera QC acquisition (never judged as a patient study).
    func isCameraQualityControl(_ event: Event) -> Bool {
        cameraAcquisition(event).map { $0.isCOR || $0.isFlood } ?? false
    }

    /// How far back a patient series' earlier instances are looked for (qc_missing is
    /// judged once per series, on its first instance).
    static let cameraSeriesLookback: TimeInterval = 12 * 3600

    mutating func judgeCamera(_ event: Event) async throws -> CameraOutcome {
        guard let (camera, isCOR, isFlood) = cameraAcquisition(event) else { return .patient([]) }
        guard isCOR || isFlood else { return .patient(try await qcMissing(event, camera: camera)) }
        if event.data["duplicate"] != nil { return .qualityControl([]) }  // the same bytes again: judged when first stored
        let path = event.data["path"]?.stringValue
        return .qualityControl(isCOR ? await corFindings(event, camera: camera, path: path) : try await floodFindings(event, camera: camera, path: path))
    }

    static func matches(_ rule: Camera.Match, _ facts: AcquisitionFacts) -> Bool {
        guard !rule.isEmpty else { return false }
        func any(_ patterns: [String], _ values: [String]) -> Bool {
            patterns.isEmpty || patterns.contains { p in values.contains { Glob.matches(pattern: p.lowercased(), $0.lowercased()) } }
        }
        return any(rule.seriesDescription, facts.seriesDescription.map { [$0] } ?? [])
            && any(rule.protocolName, facts.protocolName.map { [$0] } ?? [])
            && any(rule.patientID, facts.patientID.map { [$0] } ?? [])
            && any(rule.patientName, facts.patientName.map { [$0] } ?? [])
            && any(rule.imageType, facts.imageType)
    }

    // MARK: Common fields

    private func cameraCommon(_ event: Event, camera: Camera) -> [String: JSONValue] {
        let data = event.data
        let acquisition = Self.acquisitionTime(data, offset: data["timezone_offset"]?.stringValue, zone: zone)
        var out: [String: JSONValue] = [
            "source_seq": .int(event.seq), "local_date": .string(LocalDay(containing: acquisition ?? event.time, zone: zone).description),
            "camera": .string(camera.id),
        ]
        for key in ["sop_instance_uid", "series_uid", "study_uid", "series_description", "station_name"] {
            if let value = data[key]?.stringValue, !value.isEmpty { out[key] = .string(value) }
        }
        if let acquisition { out["acquisition_time"] = .string(Timestamp.format(acquisition)) }
        return out
    }

    private func cameraDraft(_ event: Event, kind: String, result: String, camera: Camera, _ data: [String: JSONValue]) -> EventDraft {
        let severity: Severity =
            switch result {
            case "pass": .info
            case "fail": .error
            case "investigate": .warning
            default: .notice
            }
        return EventDraft(time: event.time, device: camera.id, driver: "qc", kind: kind, severity: severity, data: data)
    }

    private static func limitValue(_ limit: Camera.Limit) -> JSONValue {
        .object(["investigate": .double(limit.investigate), "fail": .double(limit.fail)])
    }

    private static func worst(_ results: [String]) -> String {
        results.contains("fail") ? "fail" : results.contains("investigate") ? "investigate" : "pass"
    }

    // MARK: Floods

    private func floodFindings(_ event: Event, camera: Camera, path: String?) async throws -> [EventDraft] {
        var common = cameraCommon(event, camera: camera)
        func unjudged(_ text: String) -> [EventDraft] {
            var out = common
            out["result"] = .string("not_judged")
            out["finding"] = .string(text)
            return [cameraDraft(event, kind: "qc.camera.uniformity", result: "not_judged", camera: camera, out)]
        }
        guard let path else { return unjudged("the stored instance has no path") }
        // Reading and analysing run at the lowest CPU priority (LowPriorityWorker).
        let analysed: [(head: Int, result: Result<FloodUniformity.Result, any Error>)]
        do {
            analysed = try await LowPriorityWorker.shared.run {
                try NMImageFile.read(path: path).floodPerHead().map { head, image in
                    (head, Result { try FloodUniformity.analyze(image) })
                }
            }
        } catch {
            return unjudged("\(error)")
        }
        common["limits"] = .object([
            "ufov_integral_pct": Self.limitValue(camera.ufovIntegral), "cfov_integral_pct": Self.limitValue(camera.cfovIntegral),
            "ufov_differential_pct": Self.limitValue(camera.ufovDifferential), "cfov_differential_pct": Self.limitValue(camera.cfovDifferential),
        ])
        var drafts: [EventDraft] = []
        let baselines = try await uniformityBaselines(before: event, camera: camera)
        for (head, analysis) in analysed {
            var out = common
            out["head"] = .int(Int64(head))
            let result: FloodUniformity.Result
            do {
                result = try analysis.get()
            } catch {
                out["result"] = .string("not_judged")
                out["finding"] = .string("head \(head): \(error)")
                drafts.append(cameraDraft(event, kind: "qc.camera.uniformity", result: "not_judged", camera: camera, out))
                continue
            }
            let judged = Self.judgeFlood(result, camera: camera, baseline: baselines[head] ?? [])
            out["ufov"] = .object(["integral_pct": .double(Self.round(result.ufov.integralPct, 2)), "differential_pct": .double(Self.round(result.ufov.differentialPct, 2))])
            out["cfov"] = .object(["integral_pct": .double(Self.round(result.cfov.integralPct, 2)), "differential_pct": .double(Self.round(result.cfov.differentialPct, 2))])
            if let mm = result.rebinning.columnPixelMM { out["pixel_mm"] = .double(Self.round(mm, 3)) }
            out["rebin_factor"] = .int(Int64(result.rebinning.columnFactor))
            out["pixel_size_ok"] = .bool(result.rebinning.withinTolerance)
            out["mean_counts"] = .double(Self.round(result.ufov.meanCounts, 1))
            out["total_counts"] = .double(result.totalCounts.rounded())
            out["expected_noise_pct"] = .double(Self.round(result.ufov.expectedNoisePct, 2))
            out["low_counts"] = .bool(judged.lowCounts)
            out["ufov_pixels"] = .int(Int64(result.ufov.pixels))
            out["cfov_pixels"] = .int(Int64(result.cfov.pixels))
            out["edge_pixels_dropped"] = .int(Int64(result.edgePixelsDropped))
            if let median = judged.baselineMedian {
                out["baseline_median_pct"] = .double(Self.round(median, 2))
                out["baseline_deviation_pp"] = .double(Self.round(result.ufov.integralPct - median, 2))
                out["baseline_floods"] = .int(Int64(judged.baselineCount))
            }
            out["baseline_investigate_pp"] = .double(camera.baselineInvestigatePP)
            out["result"] = .string(judged.result)
            out["finding"] = .string("head \(head): " + judged.finding)
            out["map"] = Self.floodMap(result)
            drafts.append(cameraDraft(event, kind: "qc.camera.uniformity", result: judged.result, camera: camera, out))
        }
        return drafts.isEmpty ? unjudged("the image has no frames") : drafts
    }

    struct FloodJudgement: Equatable {
        var result: String
        var lowCounts: Bool
        var baselineMedian: Double?
        var baselineCount: Int
        var finding: String
    }

    /// The result of a flood against the camera's limits and baseline.
    static func judgeFlood(_ r: FloodUniformity.Result, camera: Camera, baseline: [Double]) -> FloodJudgement {
        let checks: [(String, Double, Camera.Limit)] = [
            ("UFOV IU", r.ufov.integralPct, camera.ufovIntegral), ("CFOV IU", r.cfov.integralPct, camera.cfovIntegral),
            ("UFOV DU", r.ufov.differentialPct, camera.ufovDifferential), ("CFOV DU", r.cfov.differentialPct, camera.cfovDifferential),
        ]
        var result = worst(checks.map { $0.2.judge($0.1) })
        let lowCounts = r.ufov.expectedNoisePct >= camera.lowCountsFraction * camera.ufovIntegral.investigate
        let values = checks.map { "\($0.0) \(String(format: "%.2f", $0.1)) %" }.joined(separator: ", ")
        // Each limit crossed, named: "CFOV IU beyond its investigate limit 4 %".
        var notes: [String] = checks.compactMap { check -> String? in
            let (name, value, limit) = check
            switch limit.judge(value) {
            case "fail": return "\(name) beyond its fail limit \(QCText.decimal(limit.fail)) %"
            case "investigate": return "\(name) beyond its investigate limit \(QCText.decimal(limit.investigate)) %"
            default: return nil
            }
        }
        var median: Double?
        let recent = Array(baseline.prefix(camera.baselineCount))
        if !recent.isEmpty {
            let sorted = recent.sorted()
            let m = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            median = m
            let deviation = r.ufov.integralPct - m
            notes.append(String(format: "baseline %.2f %% (median of %d), %+.2f pp", m, recent.count, deviation))
            if result == "pass", camera.baselineInvestigatePP > 0, deviation > camera.baselineInvestigatePP, !lowCounts {
                result = "investigate"
                notes.append(String(format: "more than %.2f pp above the baseline", camera.baselineInvestigatePP))
            }
        }
        if lowCounts {
            notes.append(
                String(
                    format: "counting noise alone gives about %.2f %% at %.0f counts/pixel", r.ufov.expectedNoisePct, r.ufov.meanCounts))
            if result != "pass" {
                result = "low_counts"
                notes.append("too few counts to tell a detector fault from noise: acquire more counts")
            }
        }
        if !r.rebinning.withinTolerance {
            notes.append(
                r.rebinning.columnPixelMM.map { String(format: "pixel %.2f mm is outside 6.4 mm ± 30 %%", $0) }
                    ?? "no Pixel Spacing: not rebinned to 6.4 mm")
        }
        if notes.isEmpty { notes.append("within limits") }
        return FloodJudgement(
            result: result, lowCounts: lowCounts, baselineMedian: median, baselineCount: recent.count,
            finding: ([values] + notes).joined(separator: "; "))
    }

    /// Per head, the UFOV integral uniformity of this camera's latest passing floods judged
    /// before `event`, newest first.
    private func uniformityBaselines(before event: Event, camera: Camera) async throws -> [Int: [Double]] {
        let found = try await journal.events(
            EventQuery(
                filter: EventFilter(devices: [camera.id], kinds: ["qc.camera.uniformity"], until: Self.bound(event.time)),
                limit: max(200, camera.baselineCount * camera.heads * 4), newestFirst: true, dataEquals: ["result": "pass"])
        ).events
        var out: [Int: [Double]] = [:]
        for finding in found.reversed() {  // newest first
            guard let source = finding.data["source_seq"]?.intValue, source < event.seq, let head = finding.data["head"]?.intValue,
                let iu = finding.data["ufov"]?["integral_pct"]?.doubleValue
            else { continue }
            out[Int(head), default: []].append(iu)
        }
        return out
    }

    /// The smoothed flood for the report's picture: 1 byte per rebinned pixel (0 outside the
    /// UFOV, 1–255 linear from the UFOV minimum to its maximum), the CFOV mask (0/1 per
    /// pixel), both base64, and the min/max pixels.
    static func floodMap(_ r: FloodUniformity.Result) -> JSONValue {
        let low = r.ufov.minimum, high = r.ufov.maximum
        var pixels = [UInt8](repeating: 0, count: r.smoothed.count)
        for i in 0..<pixels.count where r.ufovMask[i] {
            let scaled = high > low ? (r.smoothed[i] - low) / (high - low) : 0.5
            pixels[i] = UInt8(1 + (scaled * 254).rounded().clampedInt(0, 254))
        }
        let cfov = r.cfovMask.map { $0 ? UInt8(1) : 0 }
        return .object([
            "rows": .int(Int64(r.rebinned.rows)), "columns": .int(Int64(r.rebinned.columns)),
            "low": .double(Self.round(low, 1)), "high": .double(Self.round(high, 1)),
            "pixels_b64": .string(Data(pixels).base64EncodedString()), "cfov_b64": .string(Data(cfov).base64EncodedString()),
            "min_at": .array([.int(Int64(r.ufov.minimumAt.row)), .int(Int64(r.ufov.minimumAt.column))]),
            "max_at": .array([.int(Int64(r.ufov.maximumAt.row)), .int(Int64(r.ufov.maximumAt.column))]),
            "cfov_min_at": .array([.int(Int64(r.cfov.minimumAt.row)), .int(Int64(r.cfov.minimumAt.column))]),
            "cfov_max_at": .array([.int(Int64(r.cfov.maximumAt.row)), .int(Int64(r.cfov.maximumAt.column))]),
        ])
    }

    // MARK: Centre of rotation

    private func corFindings(_ event: Event, camera: Camera, path: String?) async -> [EventDraft] {
        var common = cameraCommon(event, camera: camera)
        func unjudged(_ text: String) -> [EventDraft] {
            var out = common
            out["result"] = .string("not_judged")
            out["finding"] = .string(text)
            return [cameraDraft(event, kind: "qc.camera.cor", result: "not_judged", camera: camera, out)]
        }
        guard let path else { return unjudged("the stored instance has no path") }
        let heads: [(head: Int, result: Result<CenterOfRotation.Result, any Error>)]
        do {
            heads = try await LowPriorityWorker.shared.run {
                try NMImageFile.read(path: path).projectionsPerHead().map { head, projections in
                    (head, Result { try CenterOfRotation.analyze(projections) })
                }
            }
        } catch {
            return unjudged("\(error)")
        }
        common["limits"] = .object(["offset_px": Self.limitValue(camera.corOffsetPx), "axial_drift_px": Self.limitValue(camera.axialDriftPx)])
        return heads.map { head, analysis in
            var out = common
            out["head"] = .int(Int64(head))
            do {
                let r = try analysis.get()
                let result = Self.worst([camera.corOffsetPx.judge(r.offsetPx), camera.axialDriftPx.judge(r.axialDriftPx)])
                out["offset_px"] = .double(Self.round(r.offsetPx, 3))
                out["residual_px"] = .double(Self.round(r.residualPx, 3))
                out["axial_drift_px"] = .double(Self.round(r.axialDriftPx, 3))
                if let mm = r.offsetMM { out["offset_mm"] = .double(Self.round(mm, 2)) }
                if let mm = r.residualMM { out["residual_mm"] = .double(Self.round(mm, 2)) }
                if let mm = r.axialDriftMM { out["axial_drift_mm"] = .double(Self.round(mm, 2)) }
                out["projections"] = .int(Int64(r.projections))
                out["result"] = .string(result)
                out["finding"] = .string(
                    String(
                        format: "head %d: COR offset %+.3f px%@, residual %.3f px, axial drift %.3f px over %d projections; limits %@/%@ px",
                        head, r.offsetPx, r.offsetMM.map { String(format: " (%+.2f mm)", $0) } ?? "", r.residualPx, r.axialDriftPx, r.projections,
                        QCText.decimal(camera.corOffsetPx.investigate), QCText.decimal(camera.corOffsetPx.fail)))
                return cameraDraft(event, kind: "qc.camera.cor", result: result, camera: camera, out)
            } catch {
                out["result"] = .string("not_judged")
                out["finding"] = .string("head \(head): \(error)")
                return cameraDraft(event, kind: "qc.camera.cor", result: "not_judged", camera: camera, out)
            }
        }
    }

    // MARK: Missing daily flood

    /// A patient study's first instance on `camera`: a finding when the camera has no passing
    /// flood of every head earlier that site-local day.
    private mutating func qcMissing(_ event: Event, camera: Camera) async throws -> [EventDraft] {
        let data = event.data
        guard let series = data["series_uid"]?.stringValue, !series.isEmpty, data["duplicate"] == nil else { return [] }
        if cameraState.seriesSeen[series] != nil { return [] }
        cameraState.seriesSeen[series] = event.seq
        if cameraState.seriesSeen.count > 20_000 {
            let cutoff = cameraState.seriesSeen.values.sorted()[10_000]
            cameraState.seriesSeen = cameraState.seriesSeen.filter { $0.value >= cutoff }
        }
        let earlier = try await journal.events(
            EventQuery(
                before: event.seq,
                filter: EventFilter(
                    kinds: ["dicom.instance.stored"], since: event.time.addingTimeInterval(-Self.cameraSeriesLookback), until: Self.bound(event.time)),
                limit: 1, dataEquals: ["series_uid": series])
        ).events
        if !earlier.isEmpty { return [] }
        var common = cameraCommon(event, camera: camera)
        for key in ["patient_id", "accession_number"] {
            if let value = data[key]?.stringValue, !value.isEmpty { common[key] = .string(value) }
        }
        guard let date = common["local_date"]?.stringValue, let day = LocalDay(date) else { return [] }
        let floods = try await journal.events(
            EventQuery(
                filter: EventFilter(
                    devices: [camera.id], kinds: ["qc.camera.uniformity"], since: day.start(in: zone).addingTimeInterval(-86_400),
                    until: Self.bound(event.time)),
                limit: 10_000)
        ).events.filter { ($0.data["source_seq"]?.intValue ?? .max) < event.seq && $0.data["local_date"]?.stringValue == date }
        let passed = Set(floods.filter { $0.data["result"]?.stringValue == "pass" }.compactMap { $0.data["head"]?.intValue.map(Int.init) })
        let missing = (1...max(1, camera.heads)).filter { !passed.contains($0) }
        if missing.isEmpty { return [] }
        common["heads_missing"] = .array(missing.map { .int(Int64($0)) })
        common["result"] = .string("missed")
        let heads = missing.map(String.init).joined(separator: ", ")
        if let last = floods.last, let result = last.data["result"]?.stringValue {
            common["last_result"] = .string(result)
            common["reason"] = .string("no passing flood of head(s) \(heads) on \(camera.id) on \(date) (last flood: \(result))")
        } else {
            common["reason"] = .string("no flood on \(camera.id) since 00:00 \(zone.identifier) on \(date)")
        }
        return [EventDraft(time: event.time, device: camera.id, driver: "qc", kind: "qc.camera.qc_missing", severity: .warning, data: common)]
    }
}
