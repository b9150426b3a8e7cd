import NMTOML

/// One problem in a configuration file, with the key and the line it is about.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    /// The file, when the configuration came from one.
    public var file: String?
    /// The full dotted key, e.g. `journal.sync` or `device[dosecal-hotlab].poll_ms`.
    public var key: String
    /// The 1-based line of the key (or of its table when the key is missing).
    public var line: Int?
    public var message: String

    public init(file: String? = nil, key: String, line: Int?, message: String) {
        self.file = file
        self.key = key
        self.line = line
        self.message = message
    }

    /// `FILE:LINE: KEY: message`, the format editors and `grep -n` users expect.
    public var description: String {
        var out = ""
        if let file { out += file + ":" }
        if let line { out += "\(line):" }
        if !out.isEmpty { out += " " }
        return out + "\(key): \(message)"
    }
}

/// Every problem found in a configuration, reported together.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var problems: [ConfigProblem]

    public init(problems: [ConfigProblem]) { self.problems = problems }

    public var description: String {
        let count = problems.count == 1 ? "1 problem" : "\(problems.count) problems"
        return "configuration has \(count):\n" + problems.map { "  " + $0.description }.joined(separator: "\n")
    }
}

/// Reads typed values from one TOML table, collecting every problem instead of stopping
/// at the first, and reporting keys nobody asked for as unknown (usually typos).
///
/// Not `Sendable`: a reader lives for the duration of one configuration load.
public final class ConfigTableReader {
    /// The dotted path of this table, e.g. `journal` or `device[gantry-1].modbus`.
    public let path: String
    public let table: TOMLTable
    private let sink: ProblemSink
    private var usedKeys: Set<String> = []

    final class ProblemSink {
        let file: String?
        let baseDirectory: String?
        var problems: [ConfigProblem] = []
        var eventKinds = EventKindRegistry(EventKindRegistry.coreKinds)
        init(file: String?, baseDirectory: String?) {
            self.file = file
            self.baseDirectory = baseDirectory
        }
    }

    /// A reader for a whole document (the root table). Relative paths in it are taken
    /// from `baseDirectory` (the configuration file's folder).
    public convenience init(root: TOMLTable, file: String?, baseDirectory: String? = nil) {
        self.init(path: "", table: root, sink: ProblemSink(file: file, baseDirectory: baseDirectory))
    }

    /// Parses TOML text into a reader for its root table; syntax errors become a
    /// `ConfigurationError` listing each with its line.
    public static func parse(text: String, file: String?, baseDirectory: String? = nil) throws(ConfigurationError)
        -> ConfigTableReader
    {
        do {
            return ConfigTableReader(root: try TOMLParser.parse(text), file: file, baseDirectory: baseDirectory)
        } catch {
            throw ConfigurationError(
                problems: error.errors.map {
                    ConfigProblem(file: file, key: "(syntax)", line: $0.location.line, message: $0.description)
                })
        }
    }

    /// `path` made absolute against the configuration file's folder.
    public func resolvePath(_ path: String) -> String {
        guard !path.hasPrefix("/"), let base = sink.baseDirectory else { return path }
        return base + "/" + path
    }

    init(path: String, table: TOMLTable, sink: ProblemSink) {
        self.path = path
        self.table = table
        self.sink = sink
    }

    /// The event kinds this build journals, for settings that name kinds (the script
    /// driver's `emit` lines). The core's kinds unless the loader sets the build's registry
    /// (`DriverCatalog.eventKinds`); shared with the readers derived from this one.
    public var eventKinds: EventKindRegistry {
        get { sink.eventKinds }
        set { sink.eventKinds = newValue }
    }

    /// Every problem recorded by this reader and the readers derived from it.
    public var problems: [ConfigProblem] { sink.problems }

    private func fullKey(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Records a problem about `key` (at the key's line, or the table's when absent).
    /// A key still holding a placeholder of the example configuration gets one problem
    /// saying so, instead of whatever its reader found wrong with the placeholder text.
    public func problem(_ key: String, _ message: String) {
        let line = table[key]?.location.line ?? table.location.line
        var message = message
        if let text = table[key]?.string, Self.isPlaceholder(text) {
            guard !sink.problems.contains(where: { $0.key == fullKey(key) && $0.line == line }) else { return }
            message = Self.placeholderMessage(text)
        }
        sink.problems.append(ConfigProblem(file: sink.file, key: fullKey(key), line: line, message: message))
    }

    /// Whether a string value is a placeholder that the shipped example configuration
    /// (/etc/nmbridge/nmbridge.toml) asks the administrator to replace: `"<FILL IN: …>"`.
    /// No configuration with one passes, so that the daemon never journals under an
    /// example's made-up serial number or address.
    public static func isPlaceholder(_ text: String) -> Bool {
        text.hasPrefix("<FILL IN") && text.hasSuffix(">")
    }

    static func placeholderMessage(_ text: String) -> String {
        "still the example's placeholder \"\(text)\": put in this site's value (or remove the key where it is optional)"
    }

    /// Records problems found in another file this table refers to (a Modbus profile);
    /// they keep their own file and line.
    public func adopt(_ problems: [ConfigProblem]) {
        sink.problems.append(contentsOf: problems)
    }

    /// Records a problem about this table as a whole.
    public func tableProblem(_ message: String) {
        sink.problems.append(
            ConfigProblem(file: sink.file, key: path.isEmpty ? "(top level)" : path, line: table.location.line, message: message))
    }

    /// Whether the key is present.
    public func has(_ key: String) -> Bool {
        usedKeys.insert(key)
        return table[key] != nil
    }

    /// The line a key is on, if present.
    public func line(of key: String) -> Int? { table[key]?.location.line }

    private func node(_ key: String) -> TOMLNode? {
        usedKeys.insert(key)
        return table[key]
    }

    private func typeProblem(_ key: String, expected: String, got node: TOMLNode) {
        problem(key, "expected \(expected), found \(node.typeName)")
    }

    /// A string value; records a problem if present with another type, or absent and required.
    public func string(_ key: String, required: Bool = false) -> String? {
        guard let node = node(key) else {
            if required { problem(key, "is required") }
            return nil
        }
        guard let value = node.string else {
            typeProblem(key, expected: "a string", got: node)
            return nil
        }
        // Returned all the same: the key is present, so a reader does not go on to report
        // it missing (what it finds wrong with the text is folded into this problem).
        if Self.isPlaceholder(value) { problem(key, Self.placeholderMessage(value)) }
        return value
    }

    /// An array of strings (`["a", "b"]`); a problem names the first element of another type.
    public func strings(_ key: String, required: Bool = false) -> [String]? {
        guard let node = node(key) else {
            if required { problem(key, "is required") }
            return nil
        }
        guard let items = node.array else {
            typeProblem(key, expected: "an array of strings", got: node)
            return nil
        }
        var values: [String] = []
        for (index, item) in items.enumerated() {
            guard let text = item.string else {
                problem(key, "element \(index + 1) is \(item.typeName), expected a string")
                return nil
            }
            values.append(text)
        }
        return values
    }

    /// One of `choices`; the message lists the valid values.
    public func choice(_ key: String, _ choices: [String], required: Bool = false) -> String? {
        guard let value = string(key, required: required) else { return nil }
        guard choices.contains(value) else {
            problem(key, "\"\(value)\" is not one of " + choices.map { "\"\($0)\"" }.joined(separator: ", "))
            return nil
        }
        return value
    }

    /// An integer within `range`.
    public func int(_ key: String, in range: ClosedRange<Int64>? = nil, required: Bool = false) -> Int64? {
        guard let node = node(key) else {
            if required { problem(key, "is required") }
            return nil
        }
        guard let value = node.int else {
            typeProblem(key, expected: "an integer", got: node)
            return nil
        }
        if let range, !range.contains(value) {
            problem(key, "\(value) is out of range \(range.lowerBound)…\(range.upperBound)")
            return nil
        }
        return value
    }

    /// A number (integer or float) within `range`.
    public func double(_ key: String, in range: ClosedRange<Double>? = nil, required: Bool = false) -> Double? {
        guard let node = node(key) else {
            if required { problem(key, "is required") }
            return nil
        }
        guard let value = node.double, value.isFinite else {
            typeProblem(key, expected: "a number", got: node)
            return nil
        }
        if let range, !range.contains(value) {
            problem(key, "\(value) is out of range \(range.lowerBound)…\(range.upperBound)")
            return nil
        }
        return value
    }

    /// A boolean.
    public func bool(_ key: String) -> Bool? {
        guard let node = node(key) else { return nil }
        guard let value = node.bool else {
            typeProblem(key, expected: "true or false", got: node)
            return nil
        }
        return value
    }

    /// A sub-table (`[a.b]` or an inline table), as a reader with the same problem list.
    public func table(_ key: String, pathName: String? = nil) -> ConfigTableReader? {
        guard let node = node(key) else { return nil }
        guard let sub = node.table else {
            typeProblem(key, expected: "a table", got: node)
            return nil
        }
        return ConfigTableReader(path: fullKey(pathName ?? key), table: sub, sink: sink)
    }

    /// An array of tables (`[[device]]`), each as a reader. `name` builds each path.
    public func tables(_ key: String, name: (Int, TOMLTable) -> String) -> [ConfigTableReader] {
        guard let node = node(key) else { return [] }
        guard let items = node.array else {
            typeProblem(key, expected: "an array of tables", got: node)
            return []
        }
        var readers: [ConfigTableReader] = []
        for (index, item) in items.enumerated() {
            guard let sub = item.table else {
                sink.problems.append(
                    ConfigProblem(
                        file: sink.file, key: fullKey(key), line: item.location.line,
                        message: "element \(index + 1) is \(item.typeName), expected a table"))
                continue
            }
            readers.append(ConfigTableReader(path: fullKey(name(index, sub)), table: sub, sink: sink))
        }
        return readers
    }

    /// Marks keys as known without reading them (read elsewhere).
    public func markUsed(_ keys: String...) {
        usedKeys.formUnion(keys)
    }

    /// Reports every key of this table that no one read: usually a typo.
    public func reportUnknownKeys(known: [String] = []) {
        for key in table.keys where !usedKeys.contains(key) {
            var message = "unknown key"
            let candidates = Array(usedKeys) + known
            if let close = candidates.min(by: { editDistance($0, key) < editDistance($1, key) }),
                editDistance(close, key) <= 2
            {
                message += " (did you mean \"\(close)\"?)"
            }
            problem(key, message)
        }
    }
}

/// Levenshtein distance, for "did you mean" hints on short keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8)
    let b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
