import Foundation

extension QCReport {
    /// The report as one self-contained HTML page: inline CSS and SVG, no scripts, no
    /// links or resources to fetch (a content security policy forbids any), every text
    /// from events escaped. Failures carry a visible `FAIL` marker, not only a colour.
    public var html: String {
        let counts = counts
        var out = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
            <title>\(e("QC report \(day) — \(node)"))</title>
            <style>\(Self.css)</style>
            </head>
            <body>
            <h1>QC report \(day)</h1>
            <p class="meta">Node <b>\(e(node))</b> · generated \(LocalDay(containing: generated, zone: zone)) \
            \(QCText.timeOfDay(generated, zone: zone)) · times in \(e(zone.identifier))</p>
            <p class="summary">\(findings.count) finding\(findings.count == 1 ? "" : "s"): \
            \(QCFinding.Outcome.allCases.filter { $0 != .recorded || counts[$0] != nil }.map { badge($0, count: counts[$0] ?? 0) }.joined(separator: " "))</p>

            """
        if let failed = counts[.fail] {
            out += "<p class=\"alert\">FAIL: \(failed) finding\(failed == 1 ? "" : "s") failed, marked below.</p>\n"
        }
        if findings.isEmpty { out += "<p class=\"empty\">No QC findings on \(day).</p>\n" }

        if !calibrators.isEmpty {
            out += "<h2>Dose calibrators</h2>\n"
            for calibrator in calibrators {
                out += "<section class=\"device\">\n<h3>\(e(calibrator.device))</h3>\n"
                out += "<p class=\"trend\">\(e(trendSummary(calibrator)))</p>\n"
                out += ConstancyChart(device: calibrator.device, trend: calibrator.trend, period: chartPeriod, zone: zone).svg
                out += calibrator.findings.isEmpty ? "<p class=\"empty\">No findings on \(day).</p>\n" : findingTable([(nil, calibrator.findings)])
                out += "</section>\n"
            }
        }
        out += cameraHTML  // QCReport+Camera.swift
        out += dosecalHTML  // QCReport+Dosecal.swift
        if !studies.isEmpty {
            out += "<h2>Studies</h2>\n"
            for study in studies {
                out += "<section class=\"study\">\n<h3>Study \(e(study.studyUID ?? "(no study UID)"))</h3>\n"
                out += "<p>Patient <b>\(e(study.patientID ?? "?"))</b> · accession <b>\(e(study.accessionNumber ?? "?"))</b></p>\n"
                out += findingTable(study.series.map { (seriesHeading($0), $0.findings) })
                out += "</section>\n"
            }
        }
        return out + "</body>\n</html>\n"
    }

    /// A table of findings in groups, each under an optional caption row.
    private func findingTable(_ groups: [(caption: String?, findings: [QCFinding])]) -> String {
        var out = "<table>\n<tr><th>Time</th><th>Check</th><th>Result</th><th>Value</th><th>Limit</th><th>Detail</th></tr>\n"
        for group in groups {
            if let caption = group.caption { out += "<tr class=\"group\"><th colspan=\"6\">\(e(caption))</th></tr>\n" }
            for finding in group.findings {
                let style = finding.outcome.cssClass
                out += "<tr class=\"\(style)\"><td>\(QCText.timeOfDay(finding.time, zone: zone))</td><td>\(e(finding.check))</td>"
                out += "<td><span class=\"mark \(style)\">\(e(finding.marker))</span></td><td class=\"num\">\(e(finding.valueText))</td>"
                out += "<td class=\"limit\">\(e(finding.limit))</td><td>\(e(finding.detail))</td></tr>\n"
            }
        }
        return out + "</table>\n"
    }

    /// `2 fail`, red only when there is something to see.
    private func badge(_ outcome: QCFinding.Outcome, count: Int) -> String {
        "<span class=\"badge \(count == 0 ? "none" : outcome.cssClass)\">\(count) \(outcome.rawValue)</span>"
    }

    private func e(_ text: String) -> String { QCText.html(text) }

    static let css = """

        body { font: 13px/1.4 sans-serif; color: #222; margin: 1.5em; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
        h1 { font-size: 20px; margin: 0 0 .2em; } h2 { font-size: 16px; margin: 1.4em 0 .4em; border-bottom: 1px solid #bbb; }
        h3 { font-size: 14px; margin: 1em 0 .3em; } .meta, .trend { color: #555; margin: .2em 0; }
        section { page-break-inside: avoid; }
        table { border-collapse: collapse; margin: .4em 0 1em; width: 100%; }
        th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid #ddd; vertical-align: top; }
        td.num { text-align: right; white-space: nowrap; } td.limit { white-space: nowrap; } .badge.none { color: #666; } tr.group th { background: #f2f2f2; font-weight: normal; }
        tr.fail td { background: #fdecea; } tr.investigate td { background: #fff6e5; }
        .mark, .badge { font-weight: bold; padding: 0 4px; border-radius: 3px; white-space: nowrap; }
        .mark.pass, .badge.pass { color: #1b5e20; } .mark.investigate, .badge.investigate { color: #e65100; }
        .mark.fail, .badge.fail { color: #fff; background: #c62828; } .mark.not-judged, .badge.not-judged { color: #666; } .mark.recorded, .badge.recorded { color: #1a4f8a; }
        .alert { color: #fff; background: #c62828; padding: 4px 8px; font-weight: bold; display: inline-block; }
        .empty { color: #555; font-style: italic; }
        svg.chart { display: block; max-width: 100%; height: auto; }
        .band-pass { fill: #e8f5e9; } .band-investigate { fill: #fff3e0; } .band-fail { fill: #ffebee; }
        .grid { stroke: #e0e0e0; stroke-width: .5; } .tick, .axis-line { stroke: #333; } .zero { stroke: #999; }
        .limit-investigate { stroke: #ef6c00; stroke-dasharray: 5 3; } .limit-fail { stroke: #c62828; stroke-dasharray: 5 3; }
        .axis, .legend, .no-data { font: 11px sans-serif; fill: #333; } .title { font: bold 12px sans-serif; fill: #222; }
        .limit-label { font: 10px sans-serif; fill: #555; }
        .trend-line { fill: none; stroke: #666; stroke-width: 1; }
        .point { stroke: #fff; stroke-width: 1; } .point.pass { fill: #2e7d32; } .point.investigate { fill: #ef6c00; }
        .point.fail { fill: #c62828; stroke: #000; } .point.not-judged { fill: #999; } .point.pinned { stroke: #000; stroke-width: 2; }
        \(cameraCSS)

        """
}

extension QCFinding.Outcome {
    var cssClass: String { self == .notJudged ? "not-judged" : self == .recorded ? "recorded" : rawValue }
}

extension QCText {
    /// `text` safe as HTML text and attribute content (`&`, `<`, `>`, `"`, `'` escaped).
    static func html(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in plain(text) {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
