import Foundation
import NMBridgeCore

// The report's dose-calibrator QA sections (docs/qc.md, "The daily report"): what is due,
// accuracy, linearity (a table and, in HTML, measured against expected over time), the Mo-99
// breakthrough of the day's eluates, and the reviewers' signatures.

extension QCFinding {
    static let signedKind = "qc.review.signed"
    static let dueKind = "qc.dosecal.test_due"
    static let dosecalQAKinds: Set<String> = ["qc.dosecal.accuracy", "qc.dosecal.linearity", "qc.generator.mo99", dueKind]

    /// Value, unit, limit and detail of the QA findings.
    static func dosecalColumns(_ kind: String, _ data: [String: JSONValue]) -> (value: Double?, unit: String, limit: String, detail: String) {
        let number = { (key: String) in data[key]?.doubleValue }
        let text = { (key: String) in data[key]?.stringValue ?? "?" }
        let limits = "±\(QCText.number(number("investigate_pct")))/±\(QCText.number(number("fail_pct"))) %"
        switch kind {
        case "qc.dosecal.accuracy":
            var detail = "\(text("nuclide")) reference \(text("source_serial")): measured \(QCText.activity(number("measured_bq"))), "
                + "certificate decayed \(QCText.activity(number("expected_bq")))"
            if let uncertainty = number("uncertainty_pct") { detail += " (certificate ±\(QCText.number(uncertainty)) %)" }
            return (number("deviation_pct"), "%", limits, detail)
        case "qc.dosecal.linearity":
            let count = data["readings"]?.arrayValue?.count ?? 0
            let detail = "\(text("nuclide")) decay, \(count) reading\(count == 1 ? "" : "s") over a span of \(QCText.number(number("span")))× "
                + "(\(text("start_time").prefix(16)) … \(text("end_time").prefix(16)))" + ((data["excluded"]?.intValue ?? 0) > 0 ? ", \(data["excluded"]?.intValue ?? 0) off the decay left out" : "")
            return (number("max_deviation_pct"), "%", limits, "largest deviation; " + detail)
        case "qc.generator.mo99":
            var detail = "Mo-99 \(QCText.activity(number("mo99_bq"))) / Tc-99m \(QCText.activity(number("tc99m_bq"))): "
                + String(format: "%.4f kBq/MBq at elution, %.4f at expiry", number("ratio_kbq_per_mbq") ?? 0, number("ratio_at_expiry_kbq_per_mbq") ?? 0)
            if let until = data["usable_until"]?.stringValue { detail += "; usable until \(until.prefix(16))" }
            return (number("ratio_kbq_per_mbq"), "kBq/MBq", "≤ \(QCText.number(number("limit_kbq_per_mbq"))) kBq/MBq", detail)
        default:  // qc.dosecal.test_due
            let last = data["last_pass_date"]?.stringValue.map { "last passed \($0), due \(text("due_date"))" } ?? "never passed"
            return (nil, "", "every \(QCText.number(number("interval_days"))) d", "\(text("test")) test due: \(last)")
        }
    }
}

extension QCReport {
    /// The QA findings of the day of one kind, every calibrator.
    func qaFindings(_ kind: String) -> [QCFinding] { findings.filter { $0.kind == kind } }

    /// The QA sections as text.
    var dosecalText: String {
        var out = ""
        let due = qaFindings(QCFinding.dueKind)
        if !due.isEmpty {
            out += "\nDue calibrator tests\n"
            out += indented(Self.aligned([["DEVICE", "TEST", "LAST PASS", "DUE"]] + due.map {
                [QCText.plain($0.device ?? "?"), QCText.plain($0.text("test") ?? "?"), $0.text("last_pass_date") ?? "never", $0.text("due_date") ?? "now"]
            }), by: 2)
        }
        for finding in qaFindings("qc.dosecal.linearity") {
            out += "\nLinearity \(QCText.plain(finding.device ?? "?")): \(finding.marker), largest deviation \(finding.valueText) (limit \(finding.limit))\n"
            var rows = [["TIME", "MEASURED", "EXPECTED", "DEVIATION"]]
            for point in finding.data["readings"]?.arrayValue ?? [] {
                let time = point["time"]?.stringValue.flatMap(Timestamp.parse)
                rows.append([
                    time.map { "\(LocalDay(containing: $0, zone: zone).shortDescription) \(QCText.timeOfDay($0, zone: zone))" } ?? "?",
                    QCText.activity(point["measured_bq"]?.doubleValue), QCText.activity(point["expected_bq"]?.doubleValue),
                    String(format: "%+.2f %%", point["deviation_pct"]?.doubleValue ?? 0),
                ])
            }
            out += indented(Self.aligned(rows), by: 2)
        }
        let mo99 = qaFindings("qc.generator.mo99")
        if !mo99.isEmpty {
            out += "\nMo-99 breakthrough\n"
            out += indented(Self.aligned([["TIME", "DEVICE", "RESULT", "AT ELUTION", "AT EXPIRY", "LIMIT"]] + mo99.map {
                [
                    QCText.timeOfDay($0.time, zone: zone), QCText.plain($0.device ?? "?"), $0.marker,
                    String(format: "%.4f", $0.data["ratio_kbq_per_mbq"]?.doubleValue ?? 0), String(format: "%.4f", $0.data["ratio_at_expiry_kbq_per_mbq"]?.doubleValue ?? 0),
                    $0.limit,
                ]
            }), by: 2)
        }
        out += "\nReview\n"
        out += signatures.isEmpty ? "  not signed\n" : signatures.map { "  signed by \(QCText.plain($0.text("signer") ?? "?")) (\($0.text("via") ?? "?")) at \(QCText.timeOfDay($0.time, zone: zone))" + ($0.text("comment").map { ": \(QCText.plain($0))" } ?? "") + "\n" }.joined()
        return out
    }

    /// The QA sections as HTML, with a chart per linearity test.
    var dosecalHTML: String {
        var out = ""
        let due = qaFindings(QCFinding.dueKind)
        if !due.isEmpty {
            out += "<h2>Due calibrator tests</h2>\n<table>\n<tr><th>Device</th><th>Test</th><th>Last pass</th><th>Due</th></tr>\n"
            for finding in due {
                out += "<tr class=\"investigate\"><td>\(QCText.html(finding.device ?? "?"))</td><td>\(QCText.html(finding.text("test") ?? "?"))</td>"
                out += "<td>\(QCText.html(finding.text("last_pass_date") ?? "never"))</td><td>\(QCText.html(finding.text("due_date") ?? "now"))</td></tr>\n"
            }
            out += "</table>\n"
        }
        let linearity = qaFindings("qc.dosecal.linearity")
        if !linearity.isEmpty {
            out += "<h2>Linearity</h2>\n"
            for finding in linearity {
                out += "<section class=\"device\">\n<h3>\(QCText.html(finding.device ?? "?")) — <span class=\"mark \(finding.outcome.cssClass)\">\(QCText.html(finding.marker))</span></h3>\n"
                out += "<p class=\"trend\">\(QCText.html(finding.detail)) (limit \(QCText.html(finding.limit)))</p>\n"
                out += LinearityChart(finding: finding, zone: zone).svg
                out += "</section>\n"
            }
        }
        let mo99 = qaFindings("qc.generator.mo99")
        if !mo99.isEmpty {
            out += "<h2>Mo-99 breakthrough</h2>\n<table>\n<tr><th>Time</th><th>Device</th><th>Result</th><th>kBq/MBq at elution</th><th>at expiry</th><th>Limit</th><th>Detail</th></tr>\n"
            for finding in mo99 {
                let style = finding.outcome.cssClass
                out += "<tr class=\"\(style)\"><td>\(QCText.timeOfDay(finding.time, zone: zone))</td><td>\(QCText.html(finding.device ?? "?"))</td>"
                out += "<td><span class=\"mark \(style)\">\(QCText.html(finding.marker))</span></td>"
                out += "<td class=\"num\">\(String(format: "%.4f", finding.data["ratio_kbq_per_mbq"]?.doubleValue ?? 0))</td>"
                out += "<td class=\"num\">\(String(format: "%.4f", finding.data["ratio_at_expiry_kbq_per_mbq"]?.doubleValue ?? 0))</td>"
                out += "<td class=\"limit\">\(QCText.html(finding.limit))</td><td>\(QCText.html(finding.detail))</td></tr>\n"
            }
            out += "</table>\n"
        }
        out += "<h2>Review</h2>\n"
        if signatures.isEmpty { out += "<p class=\"empty\">Not signed.</p>\n" }
        for signature in signatures {
            out += "<p class=\"signature\">Signed by <b>\(QCText.html(signature.text("signer") ?? "?"))</b> (\(QCText.html(signature.text("via") ?? "?"))) at "
                + "\(QCText.timeOfDay(signature.time, zone: zone))\(signature.text("comment").map { ": " + QCText.html($0) } ?? "")</p>\n"
        }
        return out
    }
}

/// Measured activity against the fitted decay of one linearity test, on a logarithmic
/// activity scale over the test's time: the expected decay as a line, each reading as a point
/// coloured by its own deviation against the test's limits.
struct LinearityChart {
    let finding: QCFinding
    let zone: TimeZone
    static let width = 760.0, height = 290.0
    static let left = 76.0, right = 16.0, top = 30.0, bottom = 46.0

    var svg: String {
        let points: [(time: Date, measured: Double, expected: Double, deviation: Double)] = (finding.data["readings"]?.arrayValue ?? []).compactMap { item in
            guard let time = item["time"]?.stringValue.flatMap(Timestamp.parse), let measured = item["measured_bq"]?.doubleValue, measured > 0,
                let expected = item["expected_bq"]?.doubleValue, expected > 0
            else { return nil }
            return (time, measured, expected, item["deviation_pct"]?.doubleValue ?? 0)
        }
        guard let first = points.first, let last = points.last else { return "" }
        let investigate = finding.data["investigate_pct"]?.doubleValue ?? 5
        let fail = finding.data["fail_pct"]?.doubleValue ?? 10
        let plotWidth = Self.width - Self.left - Self.right, plotHeight = Self.height - Self.top - Self.bottom
        let span = max(last.time.timeIntervalSince(first.time), 1)
        let values = points.flatMap { [$0.measured, $0.expected] }
        let low = floor(log10(values.min() ?? 1)), high = max(ceil(log10(values.max() ?? 10)), low + 1)
        func x(_ time: Date) -> Double { Self.left + time.timeIntervalSince(first.time) / span * plotWidth }
        func y(_ bq: Double) -> Double { Self.top + (high - log10(bq)) / (high - low) * plotHeight }
        func f(_ value: Double) -> String { String(format: "%.1f", value) }
        var out = """
            <svg class="chart" viewBox="0 0 \(Self.width) \(Self.height)" width="\(Self.width)" height="\(Self.height)" \
            role="img" aria-label="\(QCText.html("Linearity of \(finding.device ?? "?"): measured against expected activity"))">
            <text x="\(f(Self.left))" y="16" class="title">\(QCText.html("\(finding.device ?? "?") — linearity: measured (points) against fitted decay (line)"))</text>

            """
        for decade in stride(from: low, through: high, by: 1) {
            out += "<line x1=\"\(f(Self.left))\" y1=\"\(f(y(pow(10, decade))))\" x2=\"\(f(Self.left + plotWidth))\" y2=\"\(f(y(pow(10, decade))))\" class=\"grid\"/>\n"
            out += "<text x=\"\(f(Self.left - 6))\" y=\"\(f(y(pow(10, decade)) + 4))\" text-anchor=\"end\" class=\"axis\">\(QCText.html(QCText.activity(pow(10, decade))))</text>\n"
        }
        let hours = span / 3600
        let step = [1.0, 2, 3, 6, 12, 24].first { hours / $0 <= 10 } ?? 48
        for hour in stride(from: 0, through: hours, by: step) {
            let px = Self.left + hour / hours * plotWidth
            out += "<line x1=\"\(f(px))\" y1=\"\(f(Self.top))\" x2=\"\(f(px))\" y2=\"\(f(Self.top + plotHeight))\" class=\"grid\"/>\n"
            out += "<text x=\"\(f(px))\" y=\"\(f(Self.top + plotHeight + 16))\" text-anchor=\"middle\" class=\"axis\">\(QCText.html(String(format: "%g h", hour)))</text>\n"
        }
        out += "<text x=\"\(f(Self.left + plotWidth / 2))\" y=\"\(f(Self.height - 8))\" text-anchor=\"middle\" class=\"axis\">"
            + "\(QCText.html("hours after the first reading (\(LocalDay(containing: first.time, zone: zone)) \(QCText.timeOfDay(first.time, zone: zone)) \(zone.identifier))"))</text>\n"
        out += "<polyline class=\"trend-line\" points=\"\(points.map { "\(f(x($0.time))),\(f(y($0.expected)))" }.joined(separator: " "))\"/>\n"
        for point in points {
            let outcome = abs(point.deviation) > fail ? "fail" : abs(point.deviation) > investigate ? "investigate" : "pass"
            let label = "\(QCText.timeOfDay(point.time, zone: zone)): \(QCText.activity(point.measured)) measured, \(QCText.activity(point.expected)) expected, "
                + String(format: "%+.2f %%", point.deviation)
            out += "<circle cx=\"\(f(x(point.time)))\" cy=\"\(f(y(point.measured)))\" r=\"4\" class=\"point \(outcome)\"><title>\(QCText.html(label))</title></circle>\n"
        }
        out += "<line x1=\"\(f(Self.left))\" y1=\"\(f(Self.top))\" x2=\"\(f(Self.left))\" y2=\"\(f(Self.top + plotHeight))\" class=\"axis-line\"/>\n"
        out += "<line x1=\"\(f(Self.left))\" y1=\"\(f(Self.top + plotHeight))\" x2=\"\(f(Self.left + plotWidth))\" y2=\"\(f(Self.top + plotHeight))\" class=\"axis-line\"/>\n"
        return out + "</svg>\n"
    }
}

extension JSONValue {
    /// The elements of an array, else nil.
    var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }
}
