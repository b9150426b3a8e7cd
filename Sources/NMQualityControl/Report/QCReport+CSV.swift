import NMBridgeCore

extension QCReport {
    /// The CSV columns, in order (docs/qc.md defines each).
    public static let csvColumns = [
        "local_date", "time", "kind", "device", "result", "value", "unit", "limit",
        "patient_id", "accession_number", "study_uid", "series_uid", "detail", "seq",
        // Study-level judging: the series' place in its study.
        "role", "primary_series_uid", "acquisition_time",
    ]

    /// One row per finding of the day after a header row; RFC 4180 (CRLF line ends, fields
    /// with a comma, quote or line break quoted, quotes doubled). `value` is a plain number
    /// (no sign for positives, `.` as decimal point) so a spreadsheet reads it as one.
    public var csv: String {
        var out = Self.csvColumns.joined(separator: ",") + "\r\n"
        for finding in findings {
            let fields = [
                finding.localDay.description, Timestamp.format(finding.time), finding.kind, finding.device ?? "", finding.result,
                finding.value.map(QCText.decimal) ?? "", finding.unit, finding.limit,
                Self.csvText(finding.text("patient_id")), Self.csvText(finding.text("accession_number")), finding.text("study_uid") ?? "",
                finding.text("series_uid") ?? "", Self.csvText(finding.detail), String(finding.seq),
                finding.text("role") ?? "", finding.text("primary_series_uid") ?? "", finding.text("acquisition_time") ?? "",
            ]
            out += fields.map(Self.csvField).joined(separator: ",") + "\r\n"
        }
        return out
    }

    /// Text from a DICOM header or an instrument: a leading `=`, `+`, `-`, `@` or tab would
    /// make a spreadsheet evaluate it as a formula, so such text gets a leading `'`.
    static func csvText(_ text: String?) -> String {
        guard let text, let first = text.unicodeScalars.first else { return text ?? "" }
        return "=+-@\t\r".unicodeScalars.contains(first) ? "'" + text : text
    }

    static func csvField(_ text: String) -> String {
        // By scalar: "\r\n" is one Character, equal to neither "\r" nor "\n".
        guard text.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
