import Foundation

/// Parses TOML 1.0 documents into ``TOMLTable`` values that remember where every key and
/// value was written, so configuration errors can name the line.
///
/// The parser reads the UTF-8 bytes of the text. It is meant for files edited by hand and
/// never traps: recursion is bounded by ``maximumNestingDepth``, and documents larger than
/// ``maximumDocumentBytes`` are refused unread. Columns in every ``SourceLocation`` count
/// Unicode scalars, not bytes.
public enum TOMLParser {
    /// Documents larger than this many UTF-8 bytes (4 MiB) are refused without being parsed.
    public static let maximumDocumentBytes = 4 * 1024 * 1024
    /// How deep arrays and inline tables may nest inside one value, and separately how deep
    /// tables may nest through headers and dotted keys. Deeper input is reported as an error
    /// instead of exhausting the stack.
    public static let maximumNestingDepth = 64
    /// Parsing stops once this many errors have been found.
    public static let maximumErrorCount = 50

    /// Parses `text` as a TOML 1.0 document and returns its root table (located at 1:1).
    ///
    /// After a syntax error the parser skips to the next line that starts a key or a table
    /// header and carries on, so independent mistakes are all reported in one pass (up to
    /// ``maximumErrorCount``). A leading UTF-8 byte order mark is ignored.
    ///
    /// - Throws: ``TOMLParseFailure`` with every error found, in line order.
    public static func parse(_ text: String) throws(TOMLParseFailure) -> TOMLTable {
        let size = text.utf8.count
        guard size <= maximumDocumentBytes else {
            throw TOMLParseFailure(errors: [
                TOMLSyntaxError(
                    location: SourceLocation(line: 1, column: 1),
                    message: "document is \(size) bytes; the limit is \(maximumDocumentBytes) bytes (4 MiB)"
                ),
            ])
        }
        var parser = TOMLDocumentParser(bytes: Array(text.utf8))
        return try parser.parseDocument()
    }
}

// MARK: - Bytes

/// The bytes TOML's grammar is written in terms of.
private enum TOMLByte {
    static let tab: UInt8 = 0x09
    static let lineFeed: UInt8 = 0x0A
    static let carriageReturn: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let hash: UInt8 = 0x23
    static let apostrophe: UInt8 = 0x27
    static let plus: UInt8 = 0x2B
    static let comma: UInt8 = 0x2C
    static let minus: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let zero: UInt8 = 0x30
    static let colon: UInt8 = 0x3A
    static let equals: UInt8 = 0x3D
    static let leftBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let rightBracket: UInt8 = 0x5D
    static let underscore: UInt8 = 0x5F
    static let leftBrace: UInt8 = 0x7B
    static let rightBrace: UInt8 = 0x7D
    static let delete: UInt8 = 0x7F

    static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    static func isLetter(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
    }

    static func isBareKey(_ byte: UInt8) -> Bool {
        isLetter(byte) || isDigit(byte) || byte == underscore || byte == minus
    }

    /// Control characters TOML allows in no comment or string: all below U+0020 except tab, and DEL.
    static func isForbiddenControl(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != tab) || byte == delete
    }

    /// Where a bare value (number, boolean, date-time) ends. Anything else is read into the
    /// token so that a message can quote the whole malformed word.
    static func endsBareValue(_ byte: UInt8) -> Bool {
        byte <= space || byte == delete || byte == comma || byte == rightBracket
            || byte == rightBrace || byte == hash
    }

    static func digitValue(_ byte: UInt8, radix: Int) -> Int? {
        let value: Int
        switch byte {
        case 0x30...0x39: value = Int(byte - 0x30)
        case 0x41...0x46: value = Int(byte - 0x41) + 10
        case 0x61...0x66: value = Int(byte - 0x61) + 10
        default: return nil
        }
        return value < radix ? value : nil
    }
}

// MARK: - Errors inside the parser

/// An error found while parsing, located by byte offset; converted to a ``TOMLSyntaxError``
/// (line and column) only when it is reported, so speculative parses stay cheap.
private struct TOMLParseError: Error {
    var offset: Int
    var message: String
    /// A later line start where parsing may resume, set when an unclosed array swallowed
    /// the line after it (`ports = [1, 2` followed by `[next]`).
    var resumeAt: Int?
}

/// What a string belongs to, for messages; spelled out only when there is an error.
private enum TextOwner {
    case quotedKey
    case value(key: [String])

    var phrase: String {
        switch self {
        case .quotedKey: "in a quoted key"
        case .value(let key): "for key \(quoted(displayKey(key)))"
        }
    }
}

/// Why a bare value (number, date-time) is malformed; the caller adds the token and key.
private struct TOMLValueProblem: Error {
    var reason: String
}

// MARK: - Tables under construction

/// A table while the document is being read. Tables are reference types here because
/// headers reach back into tables created earlier; the finished document is all values.
private final class TOMLTableBuilder {
    /// How the table came into existence, which decides how it may still be extended.
    enum Origin: Equatable {
        case root
        /// Created only as the parent in a header such as `[a.b]` (for `a`); may still be
        /// defined by its own header or extended by dotted keys.
        case implicit
        /// Defined by a `[x]` header.
        case header
        /// One element of an array of tables, created by a `[[x]]` header.
        case arrayElement
        /// Created by a dotted key in the given section; only that section may add to it.
        case dotted(section: Int)
        /// An inline table being read; closed once its `}` is reached.
        case inline
    }

    enum Child {
        case value(TOMLNode)
        case table(TOMLTableBuilder, keyLocation: SourceLocation)
        case tableArray(TOMLTableArrayBuilder, keyLocation: SourceLocation)
    }

    var origin: Origin
    var location: SourceLocation
    /// How many tables enclose this one (root is 0); bounded so freezing cannot recurse deeply.
    let depth: Int
    /// The key path used in messages.
    let path: [String]
    private var names: [String] = []
    private var children: [Child] = []
    private var indexByName: [String: Int] = [:]

    init(origin: Origin, location: SourceLocation, depth: Int, path: [String]) {
        self.origin = origin
        self.location = location
        self.depth = depth
        self.path = path
    }

    func child(named name: String) -> Child? {
        guard let index = indexByName[name] else { return nil }
        return children[index]
    }

    func add(_ child: Child, named name: String) {
        indexByName[name] = children.count
        names.append(name)
        children.append(child)
    }

    func replace(_ child: Child, named name: String) {
        guard let index = indexByName[name] else { return }
        children[index] = child
    }

    func freeze() -> TOMLTable {
        var entries: [TOMLTable.Entry] = []
        entries.reserveCapacity(children.count)
        for (name, child) in zip(names, children) {
            let node: TOMLNode
            switch child {
            case .value(let value):
                node = value
            case .table(let table, let keyLocation):
                node = TOMLNode(value: .table(table.freeze()), location: keyLocation)
            case .tableArray(let array, let keyLocation):
                let elements = array.elements.map {
                    TOMLNode(value: .table($0.freeze()), location: $0.location)
                }
                node = TOMLNode(value: .array(elements), location: keyLocation)
            }
            entries.append(TOMLTable.Entry(key: name, node: node))
        }
        return TOMLTable(location: location, entries: entries)
    }
}

/// An array of tables under construction; `[[x]]` headers append to it.
private final class TOMLTableArrayBuilder {
    var elements: [TOMLTableBuilder]

    init(first: TOMLTableBuilder) {
        elements = [first]
    }
}

// MARK: - The parser

private struct TOMLDocumentParser {
    let bytes: [UInt8]
    var pos: Int
    /// Byte offset at which each line starts; index 0 is line 1.
    let lineStarts: [Int]
    /// The last location computed. Locations are mostly asked for in increasing order, so
    /// counting columns on from here keeps one very long line from costing quadratic time.
    var columnCache: (offset: Int, lineIndex: Int, column: Int)
    var errors: [TOMLSyntaxError] = []
    let root: TOMLTableBuilder
    /// The table that key/value lines go into: the last header's table, or the root.
    var currentTable: TOMLTableBuilder
    /// Identifies the current header section (and each inline table), for dotted-key rules.
    var currentSection = 0
    var sectionCounter = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
        // A UTF-8 byte order mark is not part of TOML, but some editors write one.
        let bomLength = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        pos = bomLength
        var starts = [bomLength]
        for index in bytes.indices where bytes[index] == TOMLByte.lineFeed {
            starts.append(index + 1)
        }
        lineStarts = starts
        columnCache = (bomLength, 0, 1)
        root = TOMLTableBuilder(
            origin: .root, location: SourceLocation(line: 1, column: 1), depth: 0, path: []
        )
        currentTable = root
    }

    var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    func byte(at offset: Int) -> UInt8? {
        offset >= 0 && offset < bytes.count ? bytes[offset] : nil
    }

    // MARK: Document and lines

    mutating func parseDocument() throws(TOMLParseFailure) -> TOMLTable {
        while pos < bytes.count, errors.count < TOMLParser.maximumErrorCount {
            let lineStart = pos
            do {
                try parseLine()
            } catch {
                report(error)
                recover(from: error, lineStart: lineStart)
            }
        }
        guard errors.isEmpty else {
            let ordered = errors.enumerated().sorted { lhs, rhs in
                (lhs.element.location.line, lhs.element.location.column, lhs.offset)
                    < (rhs.element.location.line, rhs.element.location.column, rhs.offset)
            }
            throw TOMLParseFailure(errors: ordered.map(\.element))
        }
        return root.freeze()
    }

    /// Parses one line-level expression: blank, comment, table header or key/value.
    mutating func parseLine() throws(TOMLParseError) {
        skipWhitespace()
        guard let first = peek else { return }
        let construct: String
        switch first {
        case TOMLByte.hash, TOMLByte.lineFeed, TOMLByte.carriageReturn:
            construct = "a comment"
        case TOMLByte.leftBracket:
            construct = try parseTableHeader()
        default:
            let key = try parseKeyValue(into: currentTable, section: currentSection, messagePrefix: [])
            construct = "the value of key \(quoted(key))"
        }
        try finishLine(after: construct)
    }

    /// Expects optional whitespace and comment, then a line ending or the end of the file.
    mutating func finishLine(after construct: String) throws(TOMLParseError) {
        skipWhitespace()
        if peek == TOMLByte.hash { try skipComment() }
        guard let next = peek else { return }
        if next == TOMLByte.lineFeed {
            pos += 1
            return
        }
        if next == TOMLByte.carriageReturn {
            try consumeCarriageReturnLineFeed()
            return
        }
        throw TOMLParseError(
            offset: pos,
            message: "expected the end of the line after \(construct), found \(describe(at: pos))"
        )
    }

    /// Moves to where parsing can sensibly continue after `error`: the next line that
    /// starts a key/value or a table header. Blank lines and lines that look like the rest of
    /// a broken multi-line construct are skipped so one mistake yields one error.
    mutating func recover(from error: TOMLParseError, lineStart: Int) {
        let errorOffset = min(max(error.offset, 0), bytes.count)
        if let resumeAt = error.resumeAt, resumeAt > lineStart, resumeAt <= bytes.count {
            pos = resumeAt
            return
        }
        pos = offsetAfterLineFeed(from: max(pos, errorOffset))
        while pos < bytes.count, !looksLikeStatement(at: pos, strict: false) {
            pos = offsetAfterLineFeed(from: pos)
        }
    }

    func offsetAfterLineFeed(from offset: Int) -> Int {
        var index = offset
        while index < bytes.count {
            if bytes[index] == TOMLByte.lineFeed { return index + 1 }
            index += 1
        }
        return bytes.count
    }

    func firstNonBlank(from offset: Int) -> Int {
        var index = offset
        while let current = byte(at: index), current == TOMLByte.space || current == TOMLByte.tab {
            index += 1
        }
        return index
    }

    /// Whether the line at `lineStart` starts a key/value or a table header (or is the end
    /// of the file). Parses speculatively and restores `pos`.
    ///
    /// Strictly, that means a complete header or `key =`. Leniently, as used to resume after
    /// an error, it also means a broken header (`[daemon`) or a line that starts with a word
    /// (`sync full`), so each broken line gets its own error; but not lines that read like
    /// the rest of a broken multi-line array (`  42,` or `"text",` or `]`), which would
    /// only repeat the error already reported.
    mutating func looksLikeStatement(at lineStart: Int, strict: Bool) -> Bool {
        let saved = pos
        defer { pos = saved }
        pos = firstNonBlank(from: lineStart)
        guard let first = peek else { return true }
        do {
            if first == TOMLByte.leftBracket {
                pos += 1
                let isArray = peek == TOMLByte.leftBracket
                if isArray { pos += 1 }
                _ = try parseKey(role: .tableHeader)
                if !strict {
                    guard let next = peek else { return true }
                    return next == TOMLByte.rightBracket || next == TOMLByte.hash
                        || next == TOMLByte.lineFeed || next == TOMLByte.carriageReturn
                }
                guard peek == TOMLByte.rightBracket else { return false }
                pos += 1
                if isArray {
                    guard peek == TOMLByte.rightBracket else { return false }
                    pos += 1
                }
                skipWhitespace()
                guard let next = peek else { return true }
                return next == TOMLByte.hash || next == TOMLByte.lineFeed || next == TOMLByte.carriageReturn
            }
            if first == TOMLByte.hash || first == TOMLByte.lineFeed || first == TOMLByte.carriageReturn {
                return false
            }
            let parts = try parseKey(role: .statement)
            if peek == TOMLByte.equals { return true }
            guard !strict, TOMLByte.isLetter(first), let word = parts.first?.name,
                  !["true", "false", "inf", "nan"].contains(word)
            else { return false }
            guard let next = peek else { return true }
            return next != TOMLByte.comma && next != TOMLByte.rightBracket && next != TOMLByte.rightBrace
        } catch {
            return false
        }
    }

    // MARK: Whitespace, comments, line endings

    mutating func skipWhitespace() {
        while let current = peek, current == TOMLByte.space || current == TOMLByte.tab {
            pos += 1
        }
    }

    /// Skips a comment up to (not including) its line ending.
    mutating func skipComment() throws(TOMLParseError) {
        pos += 1
        while let current = peek, current != TOMLByte.lineFeed {
            if current == TOMLByte.carriageReturn {
                if byte(at: pos + 1) == TOMLByte.lineFeed { return }
                throw bareCarriageReturn(at: pos)
            }
            if TOMLByte.isForbiddenControl(current) {
                throw TOMLParseError(
                    offset: pos, message: "\(controlName(current)) is not allowed in a comment"
                )
            }
            pos += 1
        }
    }

    mutating func consumeCarriageReturnLineFeed() throws(TOMLParseError) {
        guard byte(at: pos + 1) == TOMLByte.lineFeed else { throw bareCarriageReturn(at: pos) }
        pos += 2
    }

    func bareCarriageReturn(at offset: Int) -> TOMLParseError {
        TOMLParseError(
            offset: offset,
            message: "carriage return (U+000D) without a following line feed; lines must end in LF or CR LF"
        )
    }

    /// Skips what may separate array elements: whitespace, line endings and comments.
    mutating func skipArrayTrivia() throws(TOMLParseError) {
        while let current = peek {
            switch current {
            case TOMLByte.space, TOMLByte.tab, TOMLByte.lineFeed:
                pos += 1
            case TOMLByte.carriageReturn:
                try consumeCarriageReturnLineFeed()
            case TOMLByte.hash:
                try skipComment()
            default:
                return
            }
        }
    }

    // MARK: Keys

    enum KeyRole {
        case statement, inlineTable, tableHeader, arrayTableHeader
    }

    struct KeyPart {
        var name: String
        var offset: Int
    }

    /// Parses a simple or dotted key, with the whitespace around it and its dots.
    mutating func parseKey(role: KeyRole) throws(TOMLParseError) -> [KeyPart] {
        var parts: [KeyPart] = []
        while true {
            skipWhitespace()
            let start = pos
            guard let first = peek else { throw missingKey(after: parts, role: role) }
            let name: String
            switch first {
            case TOMLByte.quote:
                if byte(at: pos + 1) == TOMLByte.quote, byte(at: pos + 2) == TOMLByte.quote {
                    throw TOMLParseError(offset: pos, message: "a multi-line string cannot be used as a key")
                }
                name = try parseBasicString(owner: .quotedKey)
            case TOMLByte.apostrophe:
                if byte(at: pos + 1) == TOMLByte.apostrophe, byte(at: pos + 2) == TOMLByte.apostrophe {
                    throw TOMLParseError(offset: pos, message: "a multi-line string cannot be used as a key")
                }
                name = try parseLiteralString(owner: .quotedKey)
            default:
                guard TOMLByte.isBareKey(first) else { throw missingKey(after: parts, role: role) }
                while let current = peek, TOMLByte.isBareKey(current) { pos += 1 }
                name = String(decoding: bytes[start..<pos], as: UTF8.self)
            }
            parts.append(KeyPart(name: name, offset: start))
            skipWhitespace()
            guard peek == TOMLByte.dot else { return parts }
            pos += 1
        }
    }

    func missingKey(after parts: [KeyPart], role: KeyRole) -> TOMLParseError {
        let found = describe(at: pos)
        var message: String
        if !parts.isEmpty {
            message = "expected a key after '\(displayKey(parts.map(\.name))).', found \(found)"
        } else {
            switch role {
            case .statement:
                message = peek == TOMLByte.equals
                    ? "missing key before '='"
                    : "expected a key or a table header, found \(found)"
            case .inlineTable:
                message = "expected a key, found \(found)"
            case .tableHeader:
                message = "expected a table name after '[', found \(found)"
            case .arrayTableHeader:
                message = "expected a table name after '[[', found \(found)"
            }
        }
        if let current = peek, current >= 0x80 {
            message += " (keys other than A-Z a-z 0-9 _ - must be quoted)"
        }
        return TOMLParseError(offset: pos, message: message)
    }

    // MARK: Table headers

    /// Parses `[a.b]` or `[[a.b]]` and makes its table current. Returns how to name it in messages.
    mutating func parseTableHeader() throws(TOMLParseError) -> String {
        let open = pos
        // Until the header is known good, keys go to a table nobody sees, so the keys under a
        // broken header cannot cause duplicate-key errors in some other table.
        sectionCounter += 1
        currentSection = sectionCounter
        currentTable = TOMLTableBuilder(
            origin: .header, location: location(at: open), depth: 0, path: []
        )
        pos += 1
        let isArray = peek == TOMLByte.leftBracket
        if isArray { pos += 1 }
        let parts = try parseKey(role: isArray ? .arrayTableHeader : .tableHeader)
        let name = displayKey(parts.map(\.name))
        let header = isArray ? "[[\(name)]]" : "[\(name)]"
        guard peek == TOMLByte.rightBracket else {
            throw TOMLParseError(
                offset: pos,
                message: "expected '\(isArray ? "]]" : "]")' after table name \(quoted(name)), found \(describe(at: pos))"
            )
        }
        pos += 1
        if isArray {
            guard peek == TOMLByte.rightBracket else {
                throw TOMLParseError(
                    offset: pos,
                    message: "expected ']]' to close array-of-tables header [[\(name)], found \(describe(at: pos))"
                )
            }
            pos += 1
        }
        if let table = defineTable(parts, isArray: isArray, headerOffset: open) {
            currentTable = table
        }
        return "table header \(header)"
    }

    /// Finds or creates the table a header names, applying TOML's rules on defining tables
    /// once. Reports and returns nil when the header is not allowed.
    mutating func defineTable(_ parts: [KeyPart], isArray: Bool, headerOffset: Int) -> TOMLTableBuilder? {
        guard let last = parts.last else { return nil }
        let headerLocation = location(at: headerOffset)
        let names = parts.map(\.name)
        let header = isArray ? "[[\(displayKey(names))]]" : "[\(displayKey(names))]"
        var table = root
        for (index, part) in parts.dropLast().enumerated() {
            var prefix: String { displayKey(Array(names[...index])) }
            switch table.child(named: part.name) {
            case nil:
                guard let child = makeChild(
                    of: table, named: part.name, origin: .implicit, tableLocation: headerLocation,
                    keyOffset: part.offset, tooDeepMessage: "table \(header) is nested more than \(TOMLParser.maximumNestingDepth) levels deep"
                ) else { return nil }
                table = child
            case .table(let child, _):
                table = child
            case .tableArray(let array, _):
                guard let element = array.elements.last else { return nil }
                table = element
            case .value(let node):
                report(
                    "cannot define table \(header): \(quoted(prefix)) is \(describeDefinition(of: node))",
                    at: part.offset
                )
                return nil
            }
        }
        let name = displayKey(names)
        switch table.child(named: last.name) {
        case nil:
            if isArray {
                guard table.depth < TOMLParser.maximumNestingDepth else {
                    report("table \(header) is nested more than \(TOMLParser.maximumNestingDepth) levels deep", at: last.offset)
                    return nil
                }
                let element = TOMLTableBuilder(
                    origin: .arrayElement, location: headerLocation, depth: table.depth + 1, path: names
                )
                table.add(
                    .tableArray(TOMLTableArrayBuilder(first: element), keyLocation: location(at: last.offset)),
                    named: last.name
                )
                return element
            }
            return makeChild(
                of: table, named: last.name, origin: .header, tableLocation: headerLocation,
                keyOffset: last.offset, tooDeepMessage: "table \(header) is nested more than \(TOMLParser.maximumNestingDepth) levels deep"
            )
        case .tableArray(let array, _):
            if isArray {
                let element = TOMLTableBuilder(
                    origin: .arrayElement, location: headerLocation, depth: table.depth + 1, path: names
                )
                array.elements.append(element)
                return element
            }
            let firstLine = array.elements.first?.location.line ?? headerLocation.line
            report(
                "cannot define table \(header): \(quoted(name)) is already an array of tables (first [[\(name)]] on line \(firstLine))",
                at: last.offset
            )
            return nil
        case .table(let existing, _):
            if isArray {
                report(
                    "cannot define array of tables \(header): \(quoted(name)) is already a table (line \(existing.location.line))",
                    at: last.offset
                )
                return nil
            }
            switch existing.origin {
            case .implicit:
                // `[a.b]` created `a` in passing; `[a]` may still define it, once.
                existing.origin = .header
                existing.location = headerLocation
                table.replace(.table(existing, keyLocation: location(at: last.offset)), named: last.name)
                return existing
            case .dotted:
                report(
                    "table \(header) was already defined by dotted keys on line \(existing.location.line)",
                    at: last.offset
                )
            case .root, .header, .arrayElement, .inline:
                report("table \(header) is already defined on line \(existing.location.line)", at: last.offset)
            }
            return nil
        case .value(let node):
            if isArray, case .array = node.value {
                report(
                    "cannot append to \(quoted(name)) with \(header): it is a static array defined on line \(node.location.line)",
                    at: last.offset
                )
            } else {
                report("cannot define table \(header): \(quoted(name)) is \(describeDefinition(of: node))", at: last.offset)
            }
            return nil
        }
    }

    /// Adds a new empty table under `parent`, unless that would nest too deep.
    mutating func makeChild(
        of parent: TOMLTableBuilder, named name: String, origin: TOMLTableBuilder.Origin,
        tableLocation: SourceLocation?, keyOffset: Int, tooDeepMessage: @autoclosure () -> String
    ) -> TOMLTableBuilder? {
        guard parent.depth < TOMLParser.maximumNestingDepth else {
            report(tooDeepMessage(), at: keyOffset)
            return nil
        }
        let keyLocation = location(at: keyOffset)
        let child = TOMLTableBuilder(
            origin: origin, location: tableLocation ?? keyLocation, depth: parent.depth + 1,
            path: parent.path + [name]
        )
        parent.add(.table(child, keyLocation: keyLocation), named: name)
        return child
    }

    func describeDefinition(of node: TOMLNode) -> String {
        switch node.value {
        case .table:
            "an inline table defined on line \(node.location.line); inline tables cannot be extended"
        case .array:
            "a static array defined on line \(node.location.line)"
        default:
            "\(article(node.typeName)) \(node.typeName) defined on line \(node.location.line), not a table"
        }
    }

    // MARK: Key/value pairs

    /// Parses `key = value` and stores it. Returns the key as named in messages.
    ///
    /// `messagePrefix` is the key of the enclosing inline table, so an error inside
    /// `serial = { baud = x }` names "serial.baud".
    mutating func parseKeyValue(
        into table: TOMLTableBuilder, section: Int, messagePrefix: [String]
    ) throws(TOMLParseError) -> String {
        let parts = try parseKey(role: messagePrefix.isEmpty ? .statement : .inlineTable)
        let keyPath = messagePrefix + parts.map(\.name)
        let keyName = displayKey(keyPath)
        guard peek == TOMLByte.equals else {
            let atLineEnd = peek == nil || peek == TOMLByte.lineFeed || peek == TOMLByte.carriageReturn
            throw TOMLParseError(
                offset: pos,
                message: "expected '=' after key \(quoted(keyName))" + (atLineEnd ? "" : ", found \(describe(at: pos))")
            )
        }
        pos += 1
        skipWhitespace()
        // Tables that dotted keys create inside an inline table count towards its nesting.
        let nesting = table.origin == .inline ? table.depth + parts.count - 1 : 0
        let value = try parseValue(key: keyPath, nesting: nesting)
        insert(value, at: parts, into: table, section: section)
        return keyName
    }

    /// Stores a parsed value under a (possibly dotted) key, creating intermediate tables and
    /// enforcing TOML's rules; violations are reported, and the value dropped.
    mutating func insert(
        _ value: TOMLValue, at parts: [KeyPart], into start: TOMLTableBuilder, section: Int
    ) {
        guard let last = parts.last else { return }
        // Names for messages are built only when needed: keys may have thousands of parts.
        var fullName: String { displayKey(start.path + parts.map(\.name)) }
        var table = start
        for (index, part) in parts.dropLast().enumerated() {
            var prefix: String { displayKey(start.path + parts[...index].map(\.name)) }
            switch table.child(named: part.name) {
            case nil:
                guard let child = makeChild(
                    of: table, named: part.name, origin: .dotted(section: section), tableLocation: nil,
                    keyOffset: part.offset,
                    tooDeepMessage: "key \(quoted(fullName)) is nested more than \(TOMLParser.maximumNestingDepth) levels deep"
                ) else { return }
                table = child
            case .table(let child, _):
                switch child.origin {
                case .dotted(let owner) where owner == section:
                    table = child
                case .implicit:
                    // Created in passing by a header like [a.b.c]; dotted keys may define it,
                    // which then closes it to a later [a.b] header.
                    child.origin = .dotted(section: section)
                    child.location = location(at: part.offset)
                    table = child
                case .dotted:
                    report(
                        "cannot add key \(quoted(fullName)): table \(quoted(prefix)) was defined by dotted keys on line \(child.location.line) in another section",
                        at: part.offset
                    )
                    return
                case .root, .header, .arrayElement, .inline:
                    report(
                        "cannot add key \(quoted(fullName)) with a dotted key: table [\(prefix)] is defined by its header on line \(child.location.line); add the key under that header",
                        at: part.offset
                    )
                    return
                }
            case .tableArray(_, let keyLocation):
                report(
                    "cannot add key \(quoted(fullName)): \(quoted(prefix)) is an array of tables (line \(keyLocation.line))",
                    at: part.offset
                )
                return
            case .value(let node):
                report("cannot add key \(quoted(fullName)): \(quoted(prefix)) is \(describeDefinition(of: node))", at: part.offset)
                return
            }
        }
        if let existing = table.child(named: last.name) {
            let firstLine: Int
            switch existing {
            case .value(let node): firstLine = node.location.line
            case .table(_, let keyLocation), .tableArray(_, let keyLocation): firstLine = keyLocation.line
            }
            report("duplicate key \(quoted(fullName)) (first defined on line \(firstLine))", at: last.offset)
            return
        }
        table.add(.value(TOMLNode(value: value, location: location(at: last.offset))), named: last.name)
    }

    // MARK: Values

    /// Parses the value that starts at `pos`. `key` names it in messages; `nesting` counts
    /// the arrays and inline tables around it.
    mutating func parseValue(key: [String], nesting: Int) throws(TOMLParseError) -> TOMLValue {
        guard let first = peek else {
            throw TOMLParseError(offset: pos, message: "missing value for key \(quoted(displayKey(key)))")
        }
        let owner = TextOwner.value(key: key)
        switch first {
        case TOMLByte.quote:
            if byte(at: pos + 1) == TOMLByte.quote, byte(at: pos + 2) == TOMLByte.quote {
                return .string(try parseMultilineString(delimiter: TOMLByte.quote, owner: owner))
            }
            return .string(try parseBasicString(owner: owner))
        case TOMLByte.apostrophe:
            if byte(at: pos + 1) == TOMLByte.apostrophe, byte(at: pos + 2) == TOMLByte.apostrophe {
                return .string(try parseMultilineString(delimiter: TOMLByte.apostrophe, owner: owner))
            }
            return .string(try parseLiteralString(owner: owner))
        case TOMLByte.leftBracket:
            return try parseArray(key: key, nesting: nesting + 1)
        case TOMLByte.leftBrace:
            return try parseInlineTable(key: key, nesting: nesting + 1)
        case TOMLByte.lineFeed, TOMLByte.carriageReturn, TOMLByte.hash:
            throw TOMLParseError(offset: pos, message: "missing value for key \(quoted(displayKey(key)))")
        default:
            return try parseBareValue(key: key)
        }
    }

    mutating func parseArray(key: [String], nesting: Int) throws(TOMLParseError) -> TOMLValue {
        let open = pos
        var name: String { quoted(displayKey(key)) }
        guard nesting <= TOMLParser.maximumNestingDepth else {
            throw TOMLParseError(
                offset: open,
                message: "value of key \(name) nests arrays and inline tables more than \(TOMLParser.maximumNestingDepth) levels deep"
            )
        }
        pos += 1
        var elements: [TOMLNode] = []
        while true {
            try skipArrayTrivia()
            guard let current = peek else { throw unclosedArray(at: open, name: name) }
            if current == TOMLByte.rightBracket {
                pos += 1
                return .array(elements)
            }
            let start = pos
            var value: TOMLValue
            do {
                value = try parseValue(key: key, nesting: nesting)
            } catch {
                if error.resumeAt == nil, error.offset == start,
                   let unclosed = unclosedArray(open: open, name: name, before: start)
                {
                    throw unclosed
                }
                throw error
            }
            elements.append(TOMLNode(value: value, location: location(at: start)))
            try skipArrayTrivia()
            guard let separator = peek else { throw unclosedArray(at: open, name: name) }
            switch separator {
            case TOMLByte.comma:
                pos += 1
            case TOMLByte.rightBracket:
                pos += 1
                return .array(elements)
            default:
                if let unclosed = unclosedArray(open: open, name: name, before: pos) { throw unclosed }
                throw TOMLParseError(
                    offset: pos,
                    message: "expected ',' or ']' after an element of the array for key \(name), found \(describe(at: pos))"
                )
            }
        }
    }

    func unclosedArray(at open: Int, name: String) -> TOMLParseError {
        TOMLParseError(offset: open, message: "array for key \(name) is never closed with ']'")
    }

    /// When an array element or separator is due but the line at `offset` reads like a new
    /// key or table header, the array was almost certainly left unclosed: say so at the
    /// array, and let recovery resume on that line instead of skipping it.
    mutating func unclosedArray(open: Int, name: String, before offset: Int) -> TOMLParseError? {
        let lineStart = lineStarts[lineIndex(of: offset)]
        guard lineStart > open, firstNonBlank(from: lineStart) == offset, looksLikeStatement(at: lineStart, strict: true) else {
            return nil
        }
        return TOMLParseError(
            offset: open,
            message: "array for key \(name) is not closed: expected ']' before line \(lineIndex(of: offset) + 1)",
            resumeAt: lineStart
        )
    }

    mutating func parseInlineTable(key: [String], nesting: Int) throws(TOMLParseError) -> TOMLValue {
        let open = pos
        var name: String { quoted(displayKey(key)) }
        guard nesting <= TOMLParser.maximumNestingDepth else {
            throw TOMLParseError(
                offset: open,
                message: "value of key \(name) nests arrays and inline tables more than \(TOMLParser.maximumNestingDepth) levels deep"
            )
        }
        pos += 1
        sectionCounter += 1
        let section = sectionCounter
        let table = TOMLTableBuilder(origin: .inline, location: location(at: open), depth: nesting, path: key)
        skipWhitespace()
        if peek == TOMLByte.rightBrace {
            pos += 1
            return .table(table.freeze())
        }
        while true {
            skipWhitespace()
            try rejectLineBreakInInlineTable(name: name)
            _ = try parseKeyValue(into: table, section: section, messagePrefix: key)
            skipWhitespace()
            guard let separator = peek else {
                throw TOMLParseError(offset: open, message: "inline table for key \(name) is never closed with '}'")
            }
            switch separator {
            case TOMLByte.comma:
                pos += 1
                skipWhitespace()
                if peek == TOMLByte.rightBrace {
                    throw TOMLParseError(
                        offset: pos, message: "trailing comma before '}' in the inline table for key \(name) (not allowed in TOML 1.0)"
                    )
                }
            case TOMLByte.rightBrace:
                pos += 1
                return .table(table.freeze())
            case TOMLByte.lineFeed, TOMLByte.carriageReturn:
                try rejectLineBreakInInlineTable(name: name)
            default:
                throw TOMLParseError(
                    offset: pos,
                    message: "expected ',' or '}' in the inline table for key \(name), found \(describe(at: pos))"
                )
            }
        }
    }

    func rejectLineBreakInInlineTable(name: @autoclosure () -> String) throws(TOMLParseError) {
        guard peek == TOMLByte.lineFeed || peek == TOMLByte.carriageReturn else { return }
        throw TOMLParseError(
            offset: pos,
            message: "inline table for key \(name()) must be closed with '}' on the same line (TOML 1.0 allows no line breaks in inline tables)"
        )
    }

    // MARK: Strings

    /// Parses `"..."`, decoding escapes.
    mutating func parseBasicString(owner: TextOwner) throws(TOMLParseError) -> String {
        let open = pos
        pos += 1
        var buffer: [UInt8] = []
        while true {
            guard let current = peek else {
                throw TOMLParseError(offset: open, message: "unterminated string \(owner.phrase): missing closing '\"'")
            }
            switch current {
            case TOMLByte.quote:
                pos += 1
                return String(decoding: buffer, as: UTF8.self)
            case TOMLByte.backslash:
                try parseEscape(into: &buffer, owner: owner)
            case TOMLByte.lineFeed, TOMLByte.carriageReturn:
                throw TOMLParseError(
                    offset: open,
                    message: "unterminated string \(owner.phrase): missing closing '\"' before the end of the line (use \"\"\" for multi-line strings)"
                )
            default:
                if TOMLByte.isForbiddenControl(current) {
                    throw TOMLParseError(
                        offset: pos, message: "\(controlName(current)) must be escaped in a string \(owner.phrase)"
                    )
                }
                buffer.append(current)
                pos += 1
            }
        }
    }

    /// Parses `'...'`: no escapes.
    mutating func parseLiteralString(owner: TextOwner) throws(TOMLParseError) -> String {
        let open = pos
        pos += 1
        let start = pos
        while true {
            guard let current = peek else {
                throw TOMLParseError(offset: open, message: "unterminated literal string \(owner.phrase): missing closing \"'\"")
            }
            switch current {
            case TOMLByte.apostrophe:
                let text = String(decoding: bytes[start..<pos], as: UTF8.self)
                pos += 1
                return text
            case TOMLByte.lineFeed, TOMLByte.carriageReturn:
                throw TOMLParseError(
                    offset: open,
                    message: "unterminated literal string \(owner.phrase): missing closing \"'\" before the end of the line (use ''' for multi-line strings)"
                )
            default:
                if TOMLByte.isForbiddenControl(current) {
                    throw TOMLParseError(
                        offset: pos, message: "\(controlName(current)) is not allowed in a literal string \(owner.phrase)"
                    )
                }
                pos += 1
            }
        }
    }

    /// Parses `"""..."""` (with escapes and line-ending backslashes) or `'''...'''`.
    ///
    /// Problems inside the string are remembered while reading on to the closing delimiter,
    /// so that recovery resumes after the string rather than inside its text.
    mutating func parseMultilineString(delimiter: UInt8, owner: TextOwner) throws(TOMLParseError) -> String {
        let open = pos
        let isBasic = delimiter == TOMLByte.quote
        let kind = isBasic ? "multi-line string" : "multi-line literal string"
        pos += 3
        // A line ending right after the opening delimiter is not part of the string.
        if peek == TOMLByte.lineFeed {
            pos += 1
        } else if peek == TOMLByte.carriageReturn, byte(at: pos + 1) == TOMLByte.lineFeed {
            pos += 2
        }
        var buffer: [UInt8] = []
        var firstProblem: TOMLParseError?
        while true {
            guard let current = peek else {
                let closing = isBasic ? "\"\"\"" : "'''"
                throw TOMLParseError(offset: open, message: "unterminated \(kind) \(owner.phrase): missing closing \(closing)")
            }
            switch current {
            case delimiter:
                var run = 0
                while byte(at: pos + run) == delimiter { run += 1 }
                if run < 3 {
                    buffer.append(contentsOf: repeatElement(delimiter, count: run))
                    pos += run
                    continue
                }
                // Up to two quotes right before the closing delimiter belong to the string.
                let quotesInString = min(run - 3, 2)
                buffer.append(contentsOf: repeatElement(delimiter, count: quotesInString))
                pos += quotesInString + 3
                if let firstProblem { throw firstProblem }
                return String(decoding: buffer, as: UTF8.self)
            case TOMLByte.backslash where isBasic:
                if skipLineEndingBackslash() { continue }
                do {
                    try parseEscape(into: &buffer, owner: owner)
                } catch {
                    if firstProblem == nil { firstProblem = error }
                    pos += 1
                }
            case TOMLByte.lineFeed:
                buffer.append(TOMLByte.lineFeed)
                pos += 1
            case TOMLByte.carriageReturn:
                if byte(at: pos + 1) == TOMLByte.lineFeed {
                    buffer.append(TOMLByte.lineFeed)
                    pos += 2
                } else {
                    if firstProblem == nil { firstProblem = bareCarriageReturn(at: pos) }
                    pos += 1
                }
            default:
                if TOMLByte.isForbiddenControl(current), firstProblem == nil {
                    firstProblem = TOMLParseError(
                        offset: pos, message: "\(controlName(current)) is not allowed in a \(kind) \(owner.phrase)"
                    )
                }
                buffer.append(current)
                pos += 1
            }
        }
    }

    /// At a backslash in a multi-line basic string: if only whitespace follows it on its
    /// line, skips the backslash, the line ending and all whitespace and line endings after
    /// it, and returns true.
    mutating func skipLineEndingBackslash() -> Bool {
        var index = pos + 1
        while let current = byte(at: index), current == TOMLByte.space || current == TOMLByte.tab {
            index += 1
        }
        let endsLine = byte(at: index) == TOMLByte.lineFeed
            || (byte(at: index) == TOMLByte.carriageReturn && byte(at: index + 1) == TOMLByte.lineFeed)
        guard endsLine else { return false }
        pos = index
        while let current = peek {
            if current == TOMLByte.space || current == TOMLByte.tab || current == TOMLByte.lineFeed {
                pos += 1
            } else if current == TOMLByte.carriageReturn, byte(at: pos + 1) == TOMLByte.lineFeed {
                pos += 2
            } else {
                break
            }
        }
        return true
    }

    /// Decodes the escape sequence at `pos` (a backslash) into `buffer`. Leaves `pos` alone
    /// when it throws.
    mutating func parseEscape(into buffer: inout [UInt8], owner: TextOwner) throws(TOMLParseError) {
        guard let letter = byte(at: pos + 1) else {
            throw TOMLParseError(offset: pos, message: "unterminated escape sequence \(owner.phrase)")
        }
        let simple: UInt8?
        switch letter {
        case 0x62: simple = 0x08 // \b
        case 0x74: simple = 0x09 // \t
        case 0x6E: simple = 0x0A // \n
        case 0x66: simple = 0x0C // \f
        case 0x72: simple = 0x0D // \r
        case TOMLByte.quote: simple = TOMLByte.quote
        case TOMLByte.backslash: simple = TOMLByte.backslash
        case 0x75, 0x55: simple = nil // \u, \U
        default:
            let shown: String
            if letter == TOMLByte.lineFeed || letter == TOMLByte.carriageReturn || TOMLByte.isForbiddenControl(letter) {
                shown = "a backslash followed by \(describe(at: pos + 1))"
            } else {
                shown = "\\" + scalarText(at: pos + 1)
            }
            throw TOMLParseError(
                offset: pos,
                message: "invalid escape sequence \(shown) \(owner.phrase); valid escapes are \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX"
            )
        }
        if let simple {
            buffer.append(simple)
            pos += 2
            return
        }
        let digitCount = letter == 0x75 ? 4 : 8
        var scalarValue: UInt32 = 0
        for index in 0..<digitCount {
            guard let digitByte = byte(at: pos + 2 + index),
                  let digit = TOMLByte.digitValue(digitByte, radix: 16)
            else {
                throw TOMLParseError(
                    offset: pos,
                    message: "escape \\\(letter == 0x75 ? "u" : "U") \(owner.phrase) must be followed by \(digitCount) hexadecimal digits"
                )
            }
            scalarValue = scalarValue << 4 | UInt32(digit)
        }
        guard let scalar = Unicode.Scalar(scalarValue) else {
            let hex = String(scalarValue, radix: 16, uppercase: true)
            throw TOMLParseError(
                offset: pos,
                message: "escape \\\(letter == 0x75 ? "u" : "U")\(String(repeating: "0", count: max(0, digitCount - hex.count)))\(hex) \(owner.phrase) is not a Unicode scalar value (surrogates and values above 10FFFF are not allowed)"
            )
        }
        UTF8.encode(scalar) { buffer.append($0) }
        pos += 2 + digitCount
    }

    // MARK: Numbers, booleans, date-times

    /// Parses an unquoted value: boolean, integer, float or date-time.
    mutating func parseBareValue(key: [String]) throws(TOMLParseError) -> TOMLValue {
        let start = pos
        scanBareToken()
        // `1979-05-27 07:32:00`: the space may separate date from time, if a time follows.
        if pos - start == 10, isDatePrefix(from: start, to: pos), byte(at: pos) == TOMLByte.space,
           let hourTens = byte(at: pos + 1), TOMLByte.isDigit(hourTens),
           let hourOnes = byte(at: pos + 2), TOMLByte.isDigit(hourOnes),
           byte(at: pos + 3) == TOMLByte.colon
        {
            pos += 1
            scanBareToken()
        }
        let token = Array(bytes[start..<pos])
        let name = quoted(displayKey(key))
        guard let first = token.first else {
            throw TOMLParseError(offset: start, message: "expected a value for key \(name), found \(describe(at: start))")
        }
        let text = String(decoding: token, as: UTF8.self)
        switch text {
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan": return .float(.nan)
        case "-nan": return .float(-.nan)
        default: break
        }
        let shown = abbreviated(text)
        if !TOMLByte.isDigit(first), first != TOMLByte.plus, first != TOMLByte.minus {
            let isWord = TOMLByte.isLetter(first) || first >= 0x80
            var message = "expected a value for key \(name), found \(isWord ? shown : "'\(shown)'")"
            let lowered = text.lowercased()
            if lowered == "true" || lowered == "false" {
                message += " (booleans are written in lowercase: true or false)"
            } else if isWord {
                message += " (strings must be in quotes)"
            }
            throw TOMLParseError(offset: start, message: message)
        }
        do {
            if token.count >= 5, isDatePrefix(from: start, to: start + 5) {
                return .dateTime(try Self.dateTime(from: token, text: text))
            }
            if token.count >= 3, TOMLByte.isDigit(token[0]), TOMLByte.isDigit(token[1]), token[2] == TOMLByte.colon {
                return .dateTime(try Self.localTime(from: token, text: text))
            }
            return try Self.number(from: token)
        } catch {
            let kind = token.contains(TOMLByte.colon) || (token.count >= 5 && isDatePrefix(from: start, to: start + 5))
                ? "date-time" : "number"
            throw TOMLParseError(offset: start, message: "invalid \(kind) \(shown) for key \(name): \(error.reason)")
        }
    }

    mutating func scanBareToken() {
        while let current = peek, !TOMLByte.endsBareValue(current) { pos += 1 }
    }

    /// Whether bytes[start..<end] begin like a date: four digits and '-' (checks at most 10 bytes).
    func isDatePrefix(from start: Int, to end: Int) -> Bool {
        guard end - start >= 5 else { return false }
        for index in start..<(start + 4) {
            guard let digit = byte(at: index), TOMLByte.isDigit(digit) else { return false }
        }
        return byte(at: start + 4) == TOMLByte.minus
    }

    /// Reads a run of digits of `radix` in which each '_' must sit between two digits.
    static func digitRun(
        _ token: [UInt8], from start: Int, radix: Int, missing: String
    ) throws(TOMLValueProblem) -> Int {
        guard start < token.count, TOMLByte.digitValue(token[start], radix: radix) != nil else {
            throw TOMLValueProblem(reason: missing)
        }
        var index = start + 1
        while index < token.count {
            let current = token[index]
            if TOMLByte.digitValue(current, radix: radix) != nil {
                index += 1
            } else if current == TOMLByte.underscore {
                guard index + 1 < token.count, TOMLByte.digitValue(token[index + 1], radix: radix) != nil else {
                    throw TOMLValueProblem(reason: "each '_' must sit between two digits")
                }
                index += 2
            } else {
                break
            }
        }
        return index
    }

    static func number(from token: [UInt8]) throws(TOMLValueProblem) -> TOMLValue {
        if token.count >= 2, token[0] == TOMLByte.zero, let radix = radixOfPrefix(token[1]) {
            return .integer(try prefixedInteger(token, radix: radix))
        }
        var index = 0
        var negative = false
        if token.first == TOMLByte.plus || token.first == TOMLByte.minus {
            negative = token.first == TOMLByte.minus
            index = 1
            if token.count >= 3, token[1] == TOMLByte.zero, radixOfPrefix(token[2]) != nil {
                throw TOMLValueProblem(reason: "hexadecimal, octal and binary integers cannot have a sign")
            }
        }
        let integerStart = index
        index = try digitRun(token, from: index, radix: 10, missing: "expected a digit")
        if token[integerStart] == TOMLByte.zero, index - integerStart > 1 {
            throw TOMLValueProblem(reason: "leading zeros are not allowed")
        }
        var isFloat = false
        if index < token.count, token[index] == TOMLByte.dot {
            isFloat = true
            index = try digitRun(token, from: index + 1, radix: 10, missing: "expected digits after the decimal point")
        }
        if index < token.count, token[index] == 0x65 || token[index] == 0x45 {
            isFloat = true
            index += 1
            if index < token.count, token[index] == TOMLByte.plus || token[index] == TOMLByte.minus { index += 1 }
            index = try digitRun(token, from: index, radix: 10, missing: "expected digits in the exponent")
        }
        if index < token.count {
            throw TOMLValueProblem(reason: "unexpected \(quotedCharacter(token, at: index))")
        }
        if isFloat {
            let digits = String(decoding: token.lazy.filter { $0 != TOMLByte.underscore }, as: UTF8.self)
            guard let value = Double(digits), value.isFinite else {
                throw TOMLValueProblem(reason: "out of range for a 64-bit float")
            }
            return .float(value)
        }
        var value: Int64 = 0
        for digitByte in token[integerStart...] where digitByte != TOMLByte.underscore {
            let digit = Int64(digitByte - TOMLByte.zero)
            let (shifted, shiftOverflow) = value.multipliedReportingOverflow(by: 10)
            let (next, addOverflow) = negative
                ? shifted.subtractingReportingOverflow(digit)
                : shifted.addingReportingOverflow(digit)
            guard !shiftOverflow, !addOverflow else {
                throw TOMLValueProblem(reason: "out of range for a 64-bit integer (\(Int64.min) to \(Int64.max))")
            }
            value = next
        }
        return .integer(value)
    }

    static func radixOfPrefix(_ letter: UInt8) -> Int? {
        switch letter {
        case 0x78: 16 // x
        case 0x6F: 8 // o
        case 0x62: 2 // b
        default: nil
        }
    }

    static func prefixedInteger(_ token: [UInt8], radix: Int) throws(TOMLValueProblem) -> Int64 {
        let radixName = radix == 16 ? "hexadecimal" : radix == 8 ? "octal" : "binary"
        let end = try digitRun(token, from: 2, radix: radix, missing: "expected \(radixName) digits after the prefix")
        if end < token.count {
            throw TOMLValueProblem(reason: "\(quotedCharacter(token, at: end)) is not a \(radixName) digit")
        }
        var value: Int64 = 0
        for digitByte in token[2...] where digitByte != TOMLByte.underscore {
            guard let digit = TOMLByte.digitValue(digitByte, radix: radix) else { continue }
            let (shifted, shiftOverflow) = value.multipliedReportingOverflow(by: Int64(radix))
            let (next, addOverflow) = shifted.addingReportingOverflow(Int64(digit))
            guard !shiftOverflow, !addOverflow else {
                throw TOMLValueProblem(reason: "out of range for a 64-bit integer (at most \(Int64.max))")
            }
            value = next
        }
        return value
    }

    static func quotedCharacter(_ token: [UInt8], at index: Int) -> String {
        guard index < token.count else { return "end of value" }
        let length = utf8SequenceLength(token[index])
        let end = min(index + length, token.count)
        return "'" + String(decoding: token[index..<end], as: UTF8.self) + "'"
    }

    // Date-times follow RFC 3339 as TOML 1.0 restricts it: seconds are required; 'T', 't'
    // or a space separates date and time; 'Z', 'z' or ±hh:mm is the offset.

    static func dateTime(from token: [UInt8], text: String) throws(TOMLValueProblem) -> TOMLDateTime {
        guard token.count >= 10,
              let year = fixedDigits(token, at: 0, count: 4), token[4] == TOMLByte.minus,
              let month = fixedDigits(token, at: 5, count: 2), token[7] == TOMLByte.minus,
              let day = fixedDigits(token, at: 8, count: 2)
        else {
            throw TOMLValueProblem(reason: "expected a date written YYYY-MM-DD")
        }
        guard (1...12).contains(month) else {
            throw TOMLValueProblem(reason: "month \(month) does not exist")
        }
        guard day >= 1, day <= daysInMonth(month, year: year) else {
            throw TOMLValueProblem(reason: "day \(day) does not exist in \(monthNames[month - 1]) \(year)")
        }
        var result = TOMLDateTime(kind: .localDate, text: text, year: year, month: month, day: day)
        if token.count == 10 { return result }
        guard token[10] == 0x54 || token[10] == 0x74 || token[10] == TOMLByte.space else {
            throw TOMLValueProblem(reason: "expected 'T' or a space between the date and the time")
        }
        let time = try timeOfDay(token, at: 11)
        result.hour = time.hour
        result.minute = time.minute
        result.second = time.second
        result.nanosecond = time.nanosecond
        var index = time.end
        if index == token.count {
            result.kind = .localDateTime
            return result
        }
        let offsetSeconds: Int
        switch token[index] {
        case 0x5A, 0x7A: // Z, z
            offsetSeconds = 0
            index += 1
        case TOMLByte.plus, TOMLByte.minus:
            guard let offsetHour = fixedDigits(token, at: index + 1, count: 2),
                  index + 3 < token.count, token[index + 3] == TOMLByte.colon,
                  let offsetMinute = fixedDigits(token, at: index + 4, count: 2)
            else {
                throw TOMLValueProblem(reason: "expected a UTC offset written Z or ±HH:MM")
            }
            guard offsetHour <= 23, offsetMinute <= 59 else {
                throw TOMLValueProblem(reason: "UTC offset hour must be 00–23 and minute 00–59")
            }
            let magnitude = offsetHour * 3600 + offsetMinute * 60
            offsetSeconds = token[index] == TOMLByte.minus ? -magnitude : magnitude
            index += 6
        default:
            throw TOMLValueProblem(reason: "unexpected \(quotedCharacter(token, at: index)) after the time")
        }
        guard index == token.count else {
            throw TOMLValueProblem(reason: "unexpected \(quotedCharacter(token, at: index)) after the UTC offset")
        }
        result.kind = .offsetDateTime
        result.utcOffsetSeconds = offsetSeconds
        let days = daysSinceUnixEpoch(year: year, month: month, day: day)
        let wholeSeconds = days * 86_400 + time.hour * 3_600 + time.minute * 60 + time.second - offsetSeconds
        // Counting from the reference date directly keeps the integral part exact in the Double.
        let sinceReferenceDate = Double(wholeSeconds - 978_307_200) + Double(time.nanosecond) / 1_000_000_000
        result.date = Date(timeIntervalSinceReferenceDate: sinceReferenceDate)
        return result
    }

    static func localTime(from token: [UInt8], text: String) throws(TOMLValueProblem) -> TOMLDateTime {
        let time = try timeOfDay(token, at: 0)
        guard time.end == token.count else {
            throw TOMLValueProblem(reason: "unexpected \(quotedCharacter(token, at: time.end)) after the time")
        }
        return TOMLDateTime(
            kind: .localTime, text: text, hour: time.hour, minute: time.minute, second: time.second,
            nanosecond: time.nanosecond
        )
    }

    static func timeOfDay(
        _ token: [UInt8], at start: Int
    ) throws(TOMLValueProblem) -> (hour: Int, minute: Int, second: Int, nanosecond: Int, end: Int) {
        guard let hour = fixedDigits(token, at: start, count: 2),
              start + 2 < token.count, token[start + 2] == TOMLByte.colon,
              let minute = fixedDigits(token, at: start + 3, count: 2),
              start + 5 < token.count, token[start + 5] == TOMLByte.colon,
              let second = fixedDigits(token, at: start + 6, count: 2)
        else {
            throw TOMLValueProblem(reason: "expected a time written HH:MM:SS (seconds are required)")
        }
        guard hour <= 23, minute <= 59, second <= 60 else {
            throw TOMLValueProblem(reason: "hour must be 00–23, minute 00–59 and second 00–60")
        }
        var index = start + 8
        var nanosecond = 0
        if index < token.count, token[index] == TOMLByte.dot {
            index += 1
            let fractionStart = index
            while index < token.count, TOMLByte.isDigit(token[index]) {
                // Digits past nanoseconds are read and dropped, as TOML allows.
                if index - fractionStart < 9 { nanosecond = nanosecond * 10 + Int(token[index] - TOMLByte.zero) }
                index += 1
            }
            let digits = index - fractionStart
            guard digits > 0 else {
                throw TOMLValueProblem(reason: "expected digits after the decimal point in the seconds")
            }
            for _ in min(digits, 9)..<9 { nanosecond *= 10 }
        }
        return (hour, minute, second, nanosecond, index)
    }

    static func fixedDigits(_ token: [UInt8], at start: Int, count: Int) -> Int? {
        guard start >= 0, start + count <= token.count else { return nil }
        var value = 0
        for index in start..<(start + count) {
            guard TOMLByte.isDigit(token[index]) else { return nil }
            value = value * 10 + Int(token[index] - TOMLByte.zero)
        }
        return value
    }

    static let monthNames = [
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ]

    static func isLeapYear(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    static func daysInMonth(_ month: Int, year: Int) -> Int {
        switch month {
        case 2: isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days from 1970-01-01 in the proleptic Gregorian calendar, for years 0 through 9999.
    static func daysSinceUnixEpoch(year: Int, month: Int, day: Int) -> Int {
        func daysBefore(year: Int) -> Int {
            // Year 0 is a leap year; for later years count leap years in 0...(year - 1).
            guard year > 0 else { return 0 }
            let previous = year - 1
            return year * 365 + previous / 4 - previous / 100 + previous / 400 + 1
        }
        var days = daysBefore(year: year) - daysBefore(year: 1970)
        for earlierMonth in 1..<month { days += daysInMonth(earlierMonth, year: year) }
        return days + day - 1
    }

    // MARK: Locations and messages

    func lineIndex(of offset: Int) -> Int {
        var low = 0
        var high = lineStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if lineStarts[middle] <= offset { low = middle } else { high = middle - 1 }
        }
        return low
    }

    /// The line and column of a byte offset.
    ///
    /// Columns are counted from the nearest known point: the start of the line, or the last
    /// location computed when it is on the same line, counting forwards or backwards. A key's
    /// location is taken after its value has been read, so on one long line (a large inline
    /// table, say) counting from the line start each time would take quadratic time.
    mutating func location(at rawOffset: Int) -> SourceLocation {
        let offset = min(max(rawOffset, 0), bytes.count)
        let line = lineIndex(of: offset)
        let lineStart = min(lineStarts[line], offset)
        // Every byte that is not a UTF-8 continuation byte starts a scalar.
        func scalarCount(_ range: Range<Int>) -> Int {
            var count = 0
            for index in range where bytes[index] & 0xC0 != 0x80 { count += 1 }
            return count
        }
        let column: Int
        if columnCache.lineIndex == line, columnCache.offset >= lineStart {
            if columnCache.offset <= offset {
                column = columnCache.column + scalarCount(columnCache.offset..<offset)
            } else if columnCache.offset - offset < offset - lineStart {
                column = columnCache.column - scalarCount(offset..<columnCache.offset)
            } else {
                column = 1 + scalarCount(lineStart..<offset)
            }
        } else {
            column = 1 + scalarCount(lineStart..<offset)
        }
        columnCache = (offset, line, column)
        return SourceLocation(line: line + 1, column: column)
    }

    mutating func report(_ message: String, at offset: Int) {
        guard errors.count < TOMLParser.maximumErrorCount else { return }
        errors.append(TOMLSyntaxError(location: location(at: offset), message: message))
    }

    mutating func report(_ error: TOMLParseError) {
        report(error.message, at: error.offset)
    }

    /// Names what is at `offset` for "found ..." in messages.
    func describe(at offset: Int) -> String {
        guard let current = byte(at: offset) else { return "the end of the file" }
        if current == TOMLByte.lineFeed
            || (current == TOMLByte.carriageReturn && byte(at: offset + 1) == TOMLByte.lineFeed)
        {
            return "the end of the line"
        }
        if current == TOMLByte.carriageReturn { return "a carriage return (U+000D)" }
        if TOMLByte.isForbiddenControl(current) { return controlName(current) }
        return "'" + scalarText(at: offset) + "'"
    }

    func scalarText(at offset: Int) -> String {
        guard let current = byte(at: offset) else { return "" }
        let end = min(offset + utf8SequenceLength(current), bytes.count)
        return String(decoding: bytes[offset..<end], as: UTF8.self)
    }
}

// MARK: - Message helpers

private func utf8SequenceLength(_ leadByte: UInt8) -> Int {
    switch leadByte {
    case 0..<0xC0: 1
    case 0xC0..<0xE0: 2
    case 0xE0..<0xF0: 3
    default: 4
    }
}

private func controlName(_ byte: UInt8) -> String {
    let hex = String(byte, radix: 16, uppercase: true)
    return "control character U+" + String(repeating: "0", count: 4 - hex.count) + hex
}

private func article(_ noun: String) -> String {
    guard let first = noun.first else { return "a" }
    return "aeiou".contains(first) ? "an" : "a"
}

/// Wraps a key or name in double quotes for a message.
private func quoted(_ text: String) -> String { "\"" + text + "\"" }

/// Shortens long text quoted in messages; a 4 MiB token should not become a 4 MiB message.
private func abbreviated(_ text: String, limit: Int = 60) -> String {
    guard text.unicodeScalars.count > limit else { return text }
    var shortened = ""
    shortened.unicodeScalars.append(contentsOf: text.unicodeScalars.prefix(limit))
    return shortened + "…"
}

/// Writes a key path the way it would be written in TOML: bare parts as they are, others quoted.
private func displayKey(_ parts: [String]) -> String {
    var result = ""
    for (index, part) in parts.enumerated() {
        if index > 0 { result += "." }
        if !part.isEmpty, part.utf8.allSatisfy(TOMLByte.isBareKey) {
            result += part
        } else if !part.contains("'"), part.utf8.allSatisfy({ !TOMLByte.isForbiddenControl($0) && $0 != TOMLByte.tab }) {
            result += "'" + part + "'"
        } else {
            result += "\""
            for scalar in part.unicodeScalars {
                switch scalar {
                case "\"": result += "\\\""
                case "\\": result += "\\\\"
                case "\n": result += "\\n"
                case "\t": result += "\\t"
                default:
                    if scalar.value < 0x20 || scalar.value == 0x7F {
                        let hex = String(scalar.value, radix: 16, uppercase: true)
                        result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    } else {
                        result.unicodeScalars.append(scalar)
                    }
                }
            }
            result += "\""
        }
        if result.utf8.count > 120 { return abbreviated(result, limit: 100) }
    }
    return result
}
