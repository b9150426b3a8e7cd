import Foundation

extension QCReport {
    /// The report as aligned plain text for a terminal or a printout.
    public var text: String {
        var out = "QC report \(day) — node \(QCText.plain(node))\n"
        out += "Generated \(LocalDay(containing: generated, zone: zone)) \(QCText.timeOfDay(generated, zone: zone)) (times are \(zone.identifier))\n\n"
        out += "Summary: \(summary)\n"
        if findings.isEmpty { out += "No QC findings on \(day).\n" }

        if !calibrators.isEmpty {
            out += "\nDose calibrators\n"
            for calibrator in calibrators {
                out += "  \(QCText.plain(calibrator.device))\n"
                out += "    \(trendSummary(calibrator))\n"
                if calibrator.findings.isEmpty {
                    out += "    no findings on \(day)\n"
                } else {
                    out += indented(findingTable(calibrator.findings), by: 4)
                }
            }
        }
        out += cameraText  // QCReport+Camera.swift
        out += dosecalText  // QCReport+Dosecal.swift
        if !studies.isEmpty {
            out += "\nStudies\n"
            for study in studies {
                out += "  Study \(QCText.plain(study.studyUID ?? "(no study UID)"))"
                out += " — patient \(QCText.plain(study.patientID ?? "?")), accession \(QCText.plain(study.accessionNumber ?? "?"))\n"
                for series in study.series {
                    out += "    \(seriesHeading(series))\n"
                    out += indented(findingTable(series.findings), by: 6)
                }
            }
        }
        return out
    }

    /// `7 findings: 4 pass, 2 investigate, 1 fail, 0 not judged` (`, 3 supplementary views`
    /// when there are any).
    var summary: String {
        let counts = counts
        let parts = QCFinding.Outcome.allCases.filter { $0 != .recorded || counts[$0] != nil }.map { "\(counts[$0] ?? 0) \($0.rawValue)" }
        return "\(findings.count) finding\(findings.count == 1 ? "" : "s"): " + parts.joined(separator: ", ")
    }

    /// The trend in one line, for readers without the chart.
    func trendSummary(_ calibrator: Calibrator) -> String {
        let values = calibrator.trend.compactMap(\.value)
        guard let last = values.last, let low = values.min(), let high = values.max() else {
            return "constancy \(chartPeriod.lowerBound) … \(chartPeriod.upperBound): no checks"
        }
        let flagged = calibrator.trend.filter { $0.outcome != .pass }.count
        let range = values.count == 1 ? String(format: "deviation %+.2f %%", last) : String(format: "deviation %+.2f %% … %+.2f %%, last %+.2f %%", low, high, last)
        return "constancy \(chartPeriod.lowerBound) … \(chartPeriod.upperBound): \(values.count) check\(values.count == 1 ? "" : "s"), " + range
            + (flagged > 0 ? ", \(flagged) not passed" : "")
    }

    /// `Primary: Series 1.2.3 "WB" NM whole body, acquired 11:30:00` or `Supplementary view:
    /// Series 1.2.4 "Humerus" NM static, acquired 11:50:00, 3 h 20 min p.i., 20 min after the primary`.
    func seriesHeading(_ series: Series) -> String {
        var out = series.role == "primary" ? "Primary: " : series.role == "supplementary" ? "Supplementary view: " : ""
        out += "Series \(QCText.plain(series.seriesUID ?? "(no series UID)"))\(seriesCaption(series))"
        if let view = series.view { out += " " + QCText.plain(view) }
        if let acquired = series.acquisitionTime { out += ", acquired \(QCText.timeOfDay(acquired, zone: zone))" }
        if series.role == "supplementary" {
            if let delay = series.delayMinutes { out += ", \(Self.duration(delay)) p.i." }
            if let after = series.afterPrimaryMinutes { out += ", \(Self.duration(abs(after))) \(after < 0 ? "before" : "after") the primary" }
        }
        return out
    }

    /// `3 h 20 min`, `45 min`.
    static func duration(_ minutes: Double) -> String { QCEngine.duration(minutes) }

    /// ` "WB PET" PT F-18 FDG` from the first finding of a series.
    func seriesCaption(_ series: Series) -> String {
        guard let first = series.findings.first else { return "" }
        var parts: [String] = []
        if let description = first.text("series_description") { parts.append("\"\(description)\"") }
        parts += ["modality", "agent"].compactMap { first.text($0) }
        return parts.isEmpty ? "" : " " + QCText.plain(parts.joined(separator: " "))
    }

    func findingTable(_ findings: [QCFinding]) -> String {
        var rows = [["TIME", "CHECK", "RESULT", "VALUE", "LIMIT", "DETAIL"]]
        for finding in findings {
            rows.append([
                QCText.timeOfDay(finding.time, zone: zone), QCText.plain(finding.check), QCText.plain(finding.marker), finding.valueText,
                finding.limit, QCText.plain(finding.detail),
            ])
        }
        return Self.aligned(rows)
    }

    func indented(_ text: String, by count: Int) -> String {
        let margin = String(repeating: " ", count: count)
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { margin + $0 + "\n" }.joined()
    }

    /// Rows padded to the widest cell of each column; the last column is not padded.
    static func aligned(_ rows: [[String]]) -> String {
        guard let columns = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").replacingOccurrences(of: #"\s+$"#, with: "", options: .regularExpression)
        }.joined(separator: "\n") + "\n"
    }
}
