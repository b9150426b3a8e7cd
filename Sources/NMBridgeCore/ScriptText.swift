/// A duration as the simulator scripts write it: `500ms`, `8s`, `2m`, or a bare number of
/// seconds; at most a year. Nil for anything else.
public func scriptSeconds(_ text: String) -> Double? {
    let (number, scale): (Substring, Double) =
        if text.hasSuffix("ms") {
            (text.dropLast(2), 0.001)
        } else if text.hasSuffix("s") {
            (text.dropLast(), 1)
        } else if text.hasSuffix("m") {
            (text.dropLast(), 60)
        } else {
            (Substring(text), 1)
        }
    guard let value = Double(number), value.isFinite, value >= 0, value <= 86_400 * 365 else { return nil }
    return value * scale
}

/// One statement of a simulator script: its 1-based line number, the line without its
/// `#` comment, and its words. Blank and comment-only lines are left out.
public struct ScriptStatement: Sendable {
    public var lineNumber: Int
    public var text: String
    public var words: [String]
}

/// The statements of a simulator script, in order.
public func scriptStatements(_ text: String) -> [ScriptStatement] {
    text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { index, rawLine in
        let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
        return words.isEmpty ? nil : ScriptStatement(lineNumber: index + 1, text: line, words: words)
    }
}
