import Foundation
import NMBridgeCore
import NMQualityControl
import TestSupport
import Testing

/// The daily report built from hand-made qc.* events (no daemon): what each format shows.
@Suite struct QCReportTests {
    static let zone = TimeZone(identifier: "Europe/Berlin")!
    static let day = LocalDay("2026-11-29")!
    static let hostilePatient = "<script>alert('x')</script>"
    static let quotedPatient = "P,001 \"Doe\""

    /// A day with every kind of finding, two studies, history for the chart and events of
    /// other days that must not count.
    static let events: [Event] = {
        var seq: Int64 = 100
        func event(_ kind: String, _ device: String?, _ time: String, _ data: [String: JSONValue], severity: Severity = .info) -> Event {
            seq += 1
            var data = data
            data["source_seq"] = .int(seq - 50)
            if data["local_date"] == nil { data["local_date"] = .string("2026-11-29") }
            return Event(
                seq: seq, journal: UUID(), time: Timestamp.parse(time)!, node: "nm-test", device: device, driver: nil, kind: kind,
                severity: severity, dataJSON: JSONValue.object(data).jsonText, raw: nil)
        }
        func constancy(_ device: String, _ time: String, _ localDate: String, _ deviation: Double, _ result: String) -> Event {
            event(
                "qc.dosecal.constancy", device, time,
                [
                    "local_date": .string(localDate), "result": .string(result), "deviation_pct": .double(deviation),
                    "measured_bq": .double(6.9e6 * (1 + deviation / 100)), "expected_bq": .double(6.9e6), "nuclide": "Cs-137",
                    "source_serial": "CS-1", "reference_bq": .double(7.4e6), "reference_date": "2024-01-01T00:00:00.000000Z",
                    "investigate_pct": .double(5), "fail_pct": .double(10),
                ])
        }
        func series(_ study: String, _ series: String, patient: String, _ more: [String: JSONValue]) -> [String: JSONValue] {
            more.merging([
                "study_uid": .string(study), "series_uid": .string(series), "patient_id": .string(patient), "accession_number": "A-77",
                "series_description": "WB \"><img src=x onerror=alert(1)>", "modality": "PT", "agent": "Fluorodeoxyglucose",
            ]) { own, _ in own }
        }
        var events: [Event] = []
        // History: outside the 30 days (not charted), then within them.
        events.append(constancy("dosecal-hotlab", "2026-10-01T07:00:00Z", "2026-10-01", 30, "fail"))
        for (n, deviation) in [1.1, 2.0, 3.2, 5.6, 0.4].enumerated() {
            let date = LocalDay("2026-11-2\(n + 3)")!
            events.append(constancy("dosecal-hotlab", "\(date)T06:55:00Z", date.description, deviation, deviation > 5 ? "investigate" : "pass"))
        }
        // The day.
        events.append(constancy("dosecal-hotlab", "2026-11-29T07:02:13Z", "2026-11-29", -0.42, "pass"))
        events.append(constancy("dosecal-pet", "2026-11-29T07:30:00Z", "2026-11-29", 12.5, "fail"))
        events.append(
            event(
                "qc.dosecal.constancy_missing", "dosecal-pet", "2026-11-29T08:10:00Z",
                [
                    "nuclide": "F-18", "measured_bq": .double(3.7e8), "last_result": "fail",
                    "reason": "today's constancy check on dosecal-pet did not pass (last: fail, +12.50 %)",
                ], severity: .warning))
        events.append(
            event(
                "qc.administration.reconciled", "dosecal-pet", "2026-11-29T09:30:00Z",
                series(
                    "1.2.3", "1.2.3.1", patient: quotedPatient,
                    [
                        "result": "fail", "deviation_pct": .double(14.2), "tolerance_pct": .double(10), "header_bq": .double(4.22e8),
                        "measured_bq": .double(3.7e8), "nuclide": "F-18",
                        "finding": "header 422.00 MBq vs measured 370.00 MBq: +14.2 %, beyond ±10 %",
                    ]), severity: .warning))
        events.append(
            event(
                "qc.protocol.uptake_delay", nil, "2026-11-29T09:30:00Z",
                series(
                    "1.2.3", "1.2.3.1", patient: quotedPatient,
                    [
                        "result": "too_late", "protocol": "fdg-wb", "delay_min": .double(95), "min_min": .double(45), "max_min": .double(75),
                        "finding": "95 min after injection, protocol allows 45–75 min",
                    ]), severity: .warning))
        events.append(
            event(
                "qc.protocol.energy_window", nil, "2026-11-29T10:05:00Z",
                series(
                    "1.2.3", "1.2.3.2", patient: quotedPatient,
                    [
                        "result": "pass", "protocol": "fdg-wb", "finding": "511 keV window 435–587 keV",
                        "windows": [["photopeak_kev": 511, "lower_kev": 435, "upper_kev": 587, "result": "pass"]],
                    ])))
        events.append(
            event(
                "qc.administration.reconciled", "dosecal-hotlab", "2026-11-29T11:00:00Z",
                series(
                    "9.8.7", "9.8.7.1", patient: hostilePatient,
                    [
                        "result": "pass", "deviation_pct": .double(-1.5), "tolerance_pct": .double(10),
                        "finding": "header 740.00 MBq vs measured 751.27 MBq: -1.5 %",
                    ])))
        // Just after local midnight (still the 28th in UTC): belongs to the 29th by local_date.
        events.append(
            event(
                "qc.protocol.uptake_delay", nil, "2026-11-28T23:30:00Z",
                series(
                    "5.5.5", "5.5.5.1", patient: "P-5",
                    ["result": "unknown", "protocol": "bone", "min_min": .double(120), "max_min": .double(240), "finding": "no injection time"]),
                severity: .warning))
        // Another day's finding, and an event that is not qc.*.
        events.append(
            event(
                "qc.administration.reconciled", nil, "2026-11-28T12:00:00Z",
                series("7.7.7", "7.7.7.1", patient: "P-7", ["local_date": "2026-11-28", "result": "fail", "finding": "yesterday"])))
        events.append(event("dosecal.measurement", "dosecal-hotlab", "2026-11-29T07:02:13Z", ["activity_bq": .double(6.9e6)]))
        return events
    }()

    static func report(_ events: [Event] = events, days: Int = 30) -> QCReport {
        QCReport(
            events: events, day: day, node: "nm-test", generated: Timestamp.parse("2026-11-29T16:00:00Z")!, zone: zone, chartDays: days)
    }

    @Test func textShowsCalibratorsStudiesAndCounts() {
        let text = Self.report().text
        #expect(text.hasPrefix("QC report 2026-11-29 — node nm-test\n"), "\(text)")
        #expect(text.contains("Summary: 8 findings: 3 pass, 2 investigate, 2 fail, 1 not judged\n"), "\(text)")
        let lines = text.split(separator: "\n").map(String.init)
        let calibrators = try! #require(lines.firstIndex(of: "Dose calibrators"))
        let studies = try! #require(lines.firstIndex(of: "Studies"))
        #expect(calibrators < studies)
        // The hot lab's check at 08:02:13 Berlin time, aligned in its table.
        let hotlab = try! #require(lines.firstIndex(of: "  dosecal-hotlab"))
        #expect(lines[hotlab + 1].contains("6 checks, deviation -0.42 % … +5.60 %, last -0.42 %, 1 not passed"), "\(lines[hotlab + 1])")
        #expect(lines[hotlab + 2].hasPrefix("    TIME      CHECK      RESULT  VALUE"), "\(lines[hotlab + 2])")
        let check = lines[hotlab + 3]
        #expect(check.hasPrefix("    08:02:13  constancy  PASS    -0.42 %  ±5/±10 %  Cs-137 source CS-1: measured 6.87 MBq"), "\(check)")
        #expect(lines.contains { $0.contains("08:30:00  constancy") && $0.contains("FAIL") && $0.contains("+12.50 %") })
        #expect(lines.contains { $0.contains("constancy missed") && $0.contains("MISSED") && $0.contains("370.00 MBq") })
        // Studies group their series; the series of the 28th and the non-qc event are absent.
        #expect(text.contains("  Study 1.2.3 — patient \(Self.quotedPatient), accession A-77\n    Series 1.2.3.1 \"WB"))
        #expect(text.contains("    Series 1.2.3.2 "))
        #expect(lines.contains { $0.contains("administered activity") && $0.contains("FAIL") && $0.contains("+14.20 %") && $0.contains("±10 %") })
        #expect(lines.contains { $0.contains("uptake delay") && $0.contains("TOO LATE") && $0.contains("95 min") && $0.contains("45–75 min") })
        #expect(lines.contains { $0.hasPrefix("      00:30:00  uptake delay") && $0.contains("UNKNOWN") })
        #expect(!text.contains("7.7.7") && !text.contains("yesterday"))
        #expect(text.firstRange(of: "Study 1.2.3 ")!.lowerBound < text.firstRange(of: "Study 9.8.7")!.lowerBound, "in order of first finding")
    }

    @Test func csvHasOneParseableRowPerFinding() throws {
        let csv = Self.report().csv
        let rows = try parseCSV(csv)
        #expect(rows.first == QCReport.csvColumns)
        #expect(rows.count == 1 + 8)
        let records = rows.dropFirst().map { Dictionary(uniqueKeysWithValues: zip(rows[0], $0)) }
        #expect(records.allSatisfy { $0.count == QCReport.csvColumns.count && $0["local_date"] == "2026-11-29" })
        let hotlab = try #require(records.first { $0["kind"] == "qc.dosecal.constancy" && $0["device"] == "dosecal-hotlab" })
        #expect(hotlab["time"] == "2026-11-29T07:02:13.000000Z")
        #expect(hotlab["result"] == "pass" && hotlab["value"] == "-0.42" && hotlab["unit"] == "%" && hotlab["limit"] == "±5/±10 %")
        let reconciled = try #require(records.first { $0["kind"] == "qc.administration.reconciled" && $0["result"] == "fail" })
        #expect(reconciled["patient_id"] == Self.quotedPatient, "commas and quotes survive quoting")
        #expect(reconciled["study_uid"] == "1.2.3" && reconciled["series_uid"] == "1.2.3.1" && reconciled["accession_number"] == "A-77")
        #expect(reconciled["value"] == "14.2" && reconciled["limit"] == "±10 %")
        #expect(records.first { $0["kind"] == "qc.dosecal.constancy_missing" }?["result"] == "missed")
        #expect(csv.contains("\"P,001 \"\"Doe\"\"\""), "RFC 4180: quoted, quotes doubled")
        #expect(csv.hasSuffix("\r\n") && !csv.replacingOccurrences(of: "\r\n", with: "").contains("\n"), "CRLF line ends")
    }

    @Test func csvCellsFromHeadersNeverBecomeFormulas() throws {
        let hostile = Self.events.map { event -> Event in
            guard event.dataJSON.contains("\"P-5\"") else { return event }
            var copy = event
            copy.dataJSON = event.dataJSON.replacingOccurrences(of: "\"P-5\"", with: "\"=HYPERLINK(\\\"http://x\\\")\"")
            return copy
        }
        let rows = try parseCSV(Self.report(hostile).csv)
        let column = try #require(QCReport.csvColumns.firstIndex(of: "patient_id"))
        #expect(rows.contains { $0[column] == "'=HYPERLINK(\"http://x\")" }, "\(rows.map { $0[column] })")
        #expect(!rows.contains { $0[column].hasPrefix("=") })
    }

    @Test func emptyDaySaysSo() throws {
        let report = Self.report([])
        #expect(report.text.contains("Summary: 0 findings: 0 pass, 0 investigate, 0 fail, 0 not judged\nNo QC findings on 2026-11-29.\n"))
        #expect(!report.text.contains("Dose calibrators") && !report.text.contains("Studies"))
        #expect(try parseCSV(report.csv) == [QCReport.csvColumns])
        #expect(report.html.contains("No QC findings on 2026-11-29."))
        // Only history: the calibrator still shows its trend, with no findings that day.
        let history = Self.report(Self.events.filter { $0.kind == "qc.dosecal.constancy" && !$0.dataJSON.contains("2026-11-29") })
        #expect(history.findings.isEmpty && history.calibrators.map(\.device) == ["dosecal-hotlab"])
        #expect(history.text.contains("  dosecal-hotlab\n    constancy 2026-10-31 … 2026-11-29: 5 checks") && history.text.contains("no findings on 2026-11-29"))
    }

    @Test func chartCoversTheDaysEndingOnTheReportDay() {
        let report = Self.report(days: 7)
        #expect(report.chartPeriod == LocalDay("2026-11-23")!...Self.day)
        #expect(report.calibrators.map(\.device) == ["dosecal-hotlab", "dosecal-pet"])
        #expect(report.calibrators[0].trend.compactMap(\.value) == [1.1, 2.0, 3.2, 5.6, 0.4, -0.42], "the 30 % of October is outside")
        let html = report.html
        #expect(html.components(separatedBy: "<svg class=\"chart\"").count == 3, "one chart per calibrator")
        #expect(html.components(separatedBy: "class=\"point investigate\"").count == 4, "the one investigate point and two legends")
        for label in ["11-23", "11-29", "+10 %", "-15 %", "0 %", "investigate ±5 %", "fail ±10 %", "site-local date (Europe/Berlin)"] {
            #expect(html.contains(">\(label)</text>"), "axis label \(label)")
        }
    }

    @Test func htmlIsSelfContainedAndEscapesEventText() {
        let html = Self.report().html
        let lower = html.lowercased()
        for forbidden in ["http:", "https:", "<script", "<img", "<link", "<iframe", "<object", "url(", "@import"] {
            #expect(!lower.contains(forbidden), "\(forbidden)")
        }
        // No element refers to anything (event text may say "src=", but only as escaped text).
        #expect(html.firstMatch(of: /<[a-zA-Z][^>]*\s(src|href|xlink:href)\s*=/) == nil)
        #expect(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"))
        #expect(html.contains("WB &quot;&gt;&lt;img src=x onerror=alert(1)&gt;"))
        #expect(html.contains("<span class=\"mark fail\">FAIL</span>"))
        #expect(html.contains("<p class=\"alert\">FAIL: 2 findings failed"))
        #expect(html.hasPrefix("<!DOCTYPE html>") && html.hasSuffix("</html>\n"))
    }

    @Test func dateArguments() {
        let now = Timestamp.parse("2026-11-28T23:30:00Z")!  // already the 29th in Berlin
        #expect(LocalDay(argument: "today", now: now, zone: Self.zone) == Self.day)
        #expect(LocalDay(argument: "yesterday", now: now, zone: Self.zone) == LocalDay("2026-11-28"))
        #expect(LocalDay(argument: "2024-02-29", now: now, zone: Self.zone)?.description == "2024-02-29")
        for bad in ["2026-13-45", "2026-02-29", "2026-1-05", "26-01-05", "tomorrow", ""] {
            #expect(LocalDay(argument: bad, now: now, zone: Self.zone) == nil, "\(bad)")
        }
        #expect(LocalDay("2026-03-01")!.adding(days: -1) == LocalDay("2026-02-28"))
        #expect(LocalDay("2026-10-31")!.days(to: LocalDay("2026-11-29")!) == 29)
    }
}

/// RFC 4180 records (quoted fields, doubled quotes, CRLF); throws on malformed input.
func parseCSV(_ text: String) throws -> [[String]] {
    struct Malformed: Error {}
    var rows: [[String]] = []
    var row: [String] = []
    var field = ""
    var scalars = Array(text.unicodeScalars)[...]
    while let c = scalars.popFirst() {
        switch c {
        case "\"":
            guard field.isEmpty else { throw Malformed() }
            while true {
                guard let q = scalars.popFirst() else { throw Malformed() }
                if q == "\"" {
                    if scalars.first == "\"" { scalars.removeFirst(); field.unicodeScalars.append("\"") } else { break }
                } else {
                    field.unicodeScalars.append(q)
                }
            }
        case ",":
            row.append(field)
            field = ""
        case "\r":
            guard scalars.popFirst() == "\n" else { throw Malformed() }
            row.append(field)
            rows.append(row)
            row = []
            field = ""
        default:
            field.unicodeScalars.append(c)
        }
    }
    guard row.isEmpty, field.isEmpty else { throw Malformed() }
    return rows
}
