import Foundation
import NMBridgeCore

extension QCReport {
    /// The report as data for the web dashboard's QC page (docs/dashboard.md): the same
    /// findings as the CSV (each row has the CSV columns by name), grouped as the sheet
    /// groups them, plus what needs attention first. Text stays text: the page renders
    /// every field with `textContent`.
    public var dashboardJSON: JSONValue {
        let counts = counts
        let constancyToday = Set(findings.filter { $0.kind == QCFinding.constancyKind || $0.kind == QCFinding.missedKind }.compactMap(\.device))
        // Missing or due first: a check the QC service flagged as missed, then calibrators
        // with a constancy history but no check yet today, then failures and investigations.
        var attention: [JSONValue] = []
        for finding in findings where finding.result == "missed" || finding.result == "missing" {
            attention.append(["level": "missing", "text": .string(Self.attentionText(finding, zone: zone)), "seq": .int(finding.seq)])
        }
        for calibrator in calibrators where !calibrator.trend.isEmpty && !constancyToday.contains(calibrator.device) {
            attention.append(["level": "due", "text": .string("\(calibrator.device): constancy check due on \(day) (none yet)")])
        }
        for finding in findings where finding.outcome == .fail || finding.outcome == .investigate {
            guard finding.result != "missed", finding.result != "missing" else { continue }
            attention.append([
                "level": .string(finding.outcome.cssClass), "text": .string(Self.attentionText(finding, zone: zone)), "seq": .int(finding.seq),
            ])
        }
        return [
            "day": .string(day.description), "node": .string(node), "zone": .string(zone.identifier),
            "generated": .string(Timestamp.format(generated)), "summary": .string(summary),
            "counts": .object(Dictionary(uniqueKeysWithValues: QCFinding.Outcome.allCases.map { ($0.cssClass, JSONValue.int(Int64(counts[$0] ?? 0))) })),
            "attention": .array(attention),
            "findings": .array(findings.map(row)),
            "calibrators": .array(
                calibrators.map { calibrator in
                    [
                        "device": .string(calibrator.device), "trend_summary": .string(trendSummary(calibrator)),
                        "has_chart": .bool(!calibrator.trend.isEmpty), "findings": .array(calibrator.findings.map(row)),
                    ]
                }),
            "cameras": .array(cameras.map { ["camera": .string($0.camera), "findings": .array($0.findings.map(row))] }),
            "studies": .array(
                studies.map { study in
                    [
                        "study_uid": study.studyUID.map(JSONValue.string) ?? .null,
                        "patient_id": study.patientID.map(JSONValue.string) ?? .null,
                        "accession_number": study.accessionNumber.map(JSONValue.string) ?? .null,
                        "series": .array(
                            study.series.map { series in
                                [
                                    "series_uid": series.seriesUID.map(JSONValue.string) ?? .null,
                                    "heading": .string(seriesHeading(series)), "findings": .array(series.findings.map(row)),
                                ]
                            }),
                    ]
                }),
        ]
    }

    /// One finding: the CSV columns (same text as `--format csv`, without the spreadsheet
    /// quoting) and what the sheet shows of it.
    public func row(_ finding: QCFinding) -> JSONValue {
        var fields: [String: JSONValue] = [
            "local_date": .string(finding.localDay.description), "time": .string(Timestamp.format(finding.time)),
            "kind": .string(finding.kind), "device": .string(finding.device ?? ""), "result": .string(finding.result),
            "value": .string(finding.value.map(QCText.decimal) ?? ""), "unit": .string(finding.unit), "limit": .string(finding.limit),
            "detail": .string(finding.detail), "seq": .int(finding.seq),
            "time_of_day": .string(QCText.timeOfDay(finding.time, zone: zone)), "check": .string(finding.check),
            "marker": .string(finding.marker), "outcome": .string(finding.outcome.cssClass), "value_text": .string(finding.valueText),
        ]
        for key in ["patient_id", "accession_number", "study_uid", "series_uid", "role", "primary_series_uid", "acquisition_time"] {
            fields[key] = .string(finding.text(key) ?? "")
        }
        return .object(fields)
    }

    static func attentionText(_ finding: QCFinding, zone: TimeZone) -> String {
        let subject = finding.device ?? finding.text("camera") ?? finding.text("patient_id").map { "patient \($0)" } ?? "?"
        return "\(finding.marker) \(subject) — \(finding.check) at \(QCText.timeOfDay(finding.time, zone: zone)): \(finding.detail)"
    }

    /// One calibrator's constancy chart as a standalone SVG document (its own styles, no
    /// scripts), for an `<img>` on the dashboard; nil for a device without a trend.
    public func constancyChartDocument(device: String) -> String? {
        guard let calibrator = calibrators.first(where: { $0.device == device }), !calibrator.trend.isEmpty else { return nil }
        let chart = ConstancyChart(device: device, trend: calibrator.trend, period: chartPeriod, zone: zone)
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(ConstancyChart.width)" height="\(ConstancyChart.height)" \
            viewBox="0 0 \(ConstancyChart.width) \(ConstancyChart.height)"><style>\(Self.css)</style>
            \(chart.svg)</svg>

            """
    }
}
