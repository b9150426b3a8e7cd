/// A data element tag: group and element.
public struct Tag: Hashable, Sendable, CustomStringConvertible {
    public let group: UInt16
    public let element: UInt16

    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }

    /// `(0054,0016)`.
    public var description: String {
        func hex(_ v: UInt16) -> String {
            let s = String(v, radix: 16, uppercase: true)
            return String(repeating: "0", count: 4 - s.count) + s
        }
        return "(\(hex(group)),\(hex(element)))"
    }

    static let item = Tag(0xFFFE, 0xE000)
    static let itemDelimitation = Tag(0xFFFE, 0xE00D)
    static let sequenceDelimitation = Tag(0xFFFE, 0xE0DD)
    static let pixelData = Tag(0x7FE0, 0x0010)
}

/// One element as read: its value bytes, and for a sequence its items.
public struct DataElement: Sendable {
    public var value: ArraySlice<UInt8>
    public var items: [Dataset]?
}

/// The elements of a dataset or of a sequence item, by tag.
public struct Dataset: Sendable {
    public var elements: [Tag: DataElement] = [:]

    public subscript(tag: Tag) -> DataElement? { elements[tag] }

    /// A text value with padding removed (trailing spaces and NUL; leading spaces too, for
    /// the VRs where they are not significant); the first of several values.
    public func string(_ tag: Tag) -> String? {
        guard let element = elements[tag], element.items == nil else { return nil }
        // Padding is trimmed on the bytes: linear, whatever the length.
        var value = element.value
        while let last = value.last, last == 0x20 || last == 0 { value = value.dropLast() }
        while value.first == 0x20 { value = value.dropFirst() }
        return value.isEmpty ? nil : String(decoding: value, as: UTF8.self)
    }

    /// The first value of a decimal or integer string (DS, IS), as a number.
    public func number(_ tag: Tag) -> Double? {
        guard let text = string(tag)?.split(separator: "\\").first else { return nil }
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else { return nil }
        return value
    }

    /// The items of a sequence (empty when absent).
    public func items(_ tag: Tag) -> [Dataset] { elements[tag]?.items ?? [] }
}

/// Why a dataset could not be read.
public struct DatasetError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Reads a dataset in implicit VR little endian, explicit VR little endian or explicit VR
/// big endian, including sequences and items of defined and undefined length, and stops
/// at pixel data (whose bytes are never looked at) or at the end of what it was given.
///
/// Total: any input gives a dataset or a ``DatasetError``; lengths come from the input but
/// are checked against what is there before anything is sliced, and nesting is limited.
public struct DatasetReader {
    public enum Encoding: Sendable {
        case implicitLittle, explicitLittle, explicitBig

        /// The encoding of a transfer syntax's dataset (for deflated: once inflated).
        public init(transferSyntax: String) {
            switch transferSyntax {
            case DICOM.TransferSyntax.implicitLittle: self = .implicitLittle
            case DICOM.TransferSyntax.explicitBig: self = .explicitBig
            default: self = .explicitLittle  // explicit LE, deflated, and every encapsulated syntax
            }
        }
    }

    public static let maximumDepth = 12

    /// VRs with a 4-byte length in explicit VR (PS3.5 Table 7.1-1).
    static let longVRs: Set<String> = ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]

    /// Sequences the reader must recognise in implicit VR (where the stream does not say).
    static let knownSequences: Set<Tag> = [
        Tag(0x0054, 0x0016), Tag(0x0054, 0x0300), Tag(0x0054, 0x0012), Tag(0x0054, 0x0013), Tag(0x0008, 0x1115),
        Tag(0x0008, 0x1140), Tag(0x0040, 0x0275), Tag(0x0054, 0x0022), Tag(0x0054, 0x0220),
        // Codes an RRDSR copies: Administration Route, Radiopharmaceutical, Procedure Code Sequences.
        Tag(0x0054, 0x0302), Tag(0x0054, 0x0304), Tag(0x0008, 0x1032),
    ]

    let bytes: [UInt8]
    let encoding: Encoding
    /// Set when the input ended inside an element, or before an undefined-length sequence
    /// or item was closed (the caller gave only a prefix, or the dataset is cut short).
    public private(set) var truncated = false
    /// What was being read when the input ran out, for the caller's message when the
    /// input was the whole dataset.
    public private(set) var truncation: String?
    /// Where the top-level Pixel Data element starts, when reading stopped there.
    public private(set) var pixelDataOffset: Int?

    public init(bytes: [UInt8], encoding: Encoding) {
        self.bytes = bytes
        self.encoding = encoding
    }

    /// Reads until pixel data or the end. A prefix that ends inside an element gives the
    /// elements before it, with ``truncated`` set.
    public mutating func read() throws(DatasetError) -> Dataset {
        var index = 0
        return try readElements(&index, end: bytes.count, depth: 0, stopAtItemDelimiter: false)
    }

    private func u16(_ at: Int) -> UInt16 {
        encoding == .explicitBig
            ? UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) : UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }

    private func u32(_ at: Int) -> UInt32 {
        let big = encoding == .explicitBig
        let b = (UInt32(bytes[at]), UInt32(bytes[at + 1]), UInt32(bytes[at + 2]), UInt32(bytes[at + 3]))
        return big ? b.0 << 24 | b.1 << 16 | b.2 << 8 | b.3 : b.0 | b.1 << 8 | b.2 << 16 | b.3 << 24
    }

    private mutating func readElements(_ index: inout Int, end: Int, depth: Int, stopAtItemDelimiter: Bool) throws(DatasetError)
        -> Dataset
    {
        guard depth <= Self.maximumDepth else {
            throw DatasetError(message: "sequences nested deeper than \(Self.maximumDepth) levels")
        }
        var dataset = Dataset()
        while index < end {
            guard end - index >= 8 else {
                ranOut("an element header at byte \(index)")
                return dataset
            }
            let tag = Tag(u16(index), u16(index + 2))
            if tag == Tag.itemDelimitation {
                index += 8
                if stopAtItemDelimiter { return dataset }
                continue
            }
            if tag == Tag.pixelData, depth == 0 {
                pixelDataOffset = index
                return dataset
            }
            // Item tags are always implicit: (FFFE,xxxx) + 4-byte length.
            var vr: String
            var length: UInt32
            var header: Int
            if encoding == .implicitLittle || tag.group == 0xFFFE {
                vr = Self.knownSequences.contains(tag) ? "SQ" : "UN"
                length = u32(index + 4)
                header = 8
            } else {
                vr = String(decoding: bytes[(index + 4)..<(index + 6)], as: UTF8.self)
                guard vr.utf8.allSatisfy({ (0x41...0x5A).contains($0) }) else {
                    throw DatasetError(message: "element \(tag) at byte \(index) has no valid VR (\"\(vr)\")")
                }
                if Self.longVRs.contains(vr) {
                    guard end - index >= 12 else {
                        ranOut("the header of element \(tag) at byte \(index)")
                        return dataset
                    }
                    length = u32(index + 8)
                    header = 12
                } else {
                    length = UInt32(u16(index + 6))
                    header = 8
                }
            }
            index += header
            if length == 0xFFFF_FFFF {
                // Undefined length: a sequence (or, in implicit VR, an unknown one), or
                // encapsulated data, which ends with a sequence delimiter.
                let items = try readItems(&index, end: end, depth: depth + 1, definedEnd: nil)
                dataset.elements[tag] = DataElement(value: [], items: items)
                if truncated { return dataset }
                continue
            }
            let valueLength = Int(length)
            guard valueLength <= end - index else {
                ranOut("element \(tag), which claims \(length) bytes at byte \(index) where \(end - index) remain")
                return dataset
            }
            if vr == "SQ" {
                let itemsEnd = index + valueLength
                let items = try readItems(&index, end: itemsEnd, depth: depth + 1, definedEnd: itemsEnd)
                dataset.elements[tag] = DataElement(value: [], items: items)
                index = itemsEnd
            } else {
                dataset.elements[tag] = DataElement(value: bytes[index..<(index + valueLength)], items: nil)
                index += valueLength
            }
        }
        if stopAtItemDelimiter, !truncated { ranOut("an item of undefined length that is never closed") }
        return dataset
    }

    private mutating func ranOut(_ what: String) {
        truncated = true
        if truncation == nil { truncation = what }
    }

    /// Items of a sequence until its end (defined length) or its delimiter.
    private mutating func readItems(_ index: inout Int, end: Int, depth: Int, definedEnd: Int?) throws(DatasetError) -> [Dataset] {
        var items: [Dataset] = []
        while index < (definedEnd ?? end) {
            guard end - index >= 8 else {
                ranOut("an item header at byte \(index)")
                return items
            }
            let tag = Tag(u16(index), u16(index + 2))
            let length = u32(index + 4)
            index += 8
            if tag == Tag.sequenceDelimitation { return items }
            guard tag == Tag.item else { throw DatasetError(message: "expected an item in a sequence, found \(tag)") }
            if length == 0xFFFF_FFFF {
                items.append(try readElements(&index, end: end, depth: depth, stopAtItemDelimiter: true))
            } else {
                let itemLength = Int(length)
                guard itemLength <= end - index else {
                    ranOut("an item that claims \(length) bytes at byte \(index) where \(end - index) remain")
                    return items
                }
                let itemEnd = index + itemLength
                // Encapsulated pixel data fragments are items too; their content is not parsed.
                var inner = index
                items.append((try? readElements(&inner, end: itemEnd, depth: depth, stopAtItemDelimiter: false)) ?? Dataset())
                index = itemEnd
            }
            if truncated { return items }
        }
        if definedEnd == nil, !truncated { ranOut("a sequence of undefined length that is never closed") }
        return items
    }
}

extension DatasetReader {
    /// Checks what the header reader does not read: from the top-level Pixel Data element
    /// at `offset` to `end`, every element's length must fit in what is there, and
    /// encapsulated data, undefined-length sequences and their items must be closed. Reads
    /// element and item headers only (through `read(offset, count)`, which may return
    /// fewer bytes at the end), so a 500 MB image costs a few reads.
    public static func checkTail(
        from offset: Int, end: Int, encoding: Encoding, read: (Int, Int) -> [UInt8]
    ) throws(DatasetError) {
        try withoutActuallyEscaping(read) { read throws(DatasetError) in
            let walker = TailWalker(end: end, big: encoding == .explicitBig, implicit: encoding == .implicitLittle, read: read)
            var index = offset
            try walker.elements(&index, depth: 0, untilItemDelimiter: false)
        }
    }
}

/// The walk behind `DatasetReader.checkTail`.
private struct TailWalker {
    let end: Int
    let big: Bool
    let implicit: Bool
    let read: (Int, Int) -> [UInt8]

    func u16(_ b: [UInt8], _ at: Int) -> UInt32 {
        big ? UInt32(b[at]) << 8 | UInt32(b[at + 1]) : UInt32(b[at]) | UInt32(b[at + 1]) << 8
    }

    func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
        big ? u16(b, at) << 16 | u16(b, at + 2) : u16(b, at) | u16(b, at + 2) << 16
    }

    /// The 8 (or 12) header bytes at `index`, or an error saying the data ends there.
    func header(_ index: Int, _ count: Int, _ what: String) throws(DatasetError) -> [UInt8] {
        let bytes = end - index >= count ? read(index, count) : []
        guard bytes.count == count else {
            throw DatasetError(message: "the dataset ends inside \(what) at byte \(index)")
        }
        return bytes
    }

    /// Elements until the end (top level) or an item delimiter (inside an item).
    func elements(_ index: inout Int, depth: Int, untilItemDelimiter: Bool) throws(DatasetError) {
        guard depth <= DatasetReader.maximumDepth else {
            throw DatasetError(message: "sequences nested deeper than \(DatasetReader.maximumDepth) levels")
        }
        while index < end {
            var bytes = try header(index, 8, "an element header")
            let tag = Tag(UInt16(u16(bytes, 0)), UInt16(u16(bytes, 2)))
            if tag == Tag.itemDelimitation, untilItemDelimiter {
                index += 8
                return
            }
            var length = u32(bytes, 4)
            var size = 8
            if !implicit, tag.group != 0xFFFE {
                let vr = String(decoding: bytes[4..<6], as: UTF8.self)
                guard vr.utf8.allSatisfy({ (0x41...0x5A).contains($0) }) else {
                    throw DatasetError(message: "element \(tag) at byte \(index) has no valid VR (\"\(vr)\")")
                }
                if DatasetReader.longVRs.contains(vr) {
                    bytes = try header(index, 12, "the header of element \(tag)")
                    length = u32(bytes, 8)
                    size = 12
                } else {
                    length = u16(bytes, 6)
                }
            }
            let start = index
            index += size
            if length == 0xFFFF_FFFF {
                try items(&index, depth: depth + 1, of: tag)
            } else {
                guard Int(length) <= end - index else {
                    throw DatasetError(
                        message: "element \(tag) at byte \(start) claims \(length) bytes but \(end - index) follow (the dataset is cut short)")
                }
                index += Int(length)
            }
        }
        if untilItemDelimiter { throw DatasetError(message: "an item of undefined length is never closed") }
    }

    /// Items (encapsulated fragments or sequence items) until the sequence delimiter.
    func items(_ index: inout Int, depth: Int, of tag: Tag) throws(DatasetError) {
        while index < end {
            let bytes = try header(index, 8, "an item header of \(tag)")
            let itemTag = Tag(UInt16(u16(bytes, 0)), UInt16(u16(bytes, 2)))
            let length = u32(bytes, 4)
            let start = index
            index += 8
            if itemTag == Tag.sequenceDelimitation { return }
            guard itemTag == Tag.item else {
                throw DatasetError(message: "expected an item of \(tag) at byte \(start), found \(itemTag)")
            }
            if length == 0xFFFF_FFFF {
                try elements(&index, depth: depth, untilItemDelimiter: true)
            } else {
                guard Int(length) <= end - index else {
                    throw DatasetError(
                        message: "an item of \(tag) at byte \(start) claims \(length) bytes but \(end - index) follow (the dataset is cut short)")
                }
                index += Int(length)
            }
        }
        throw DatasetError(message: "\(tag) of undefined length is never closed by a sequence delimiter")
    }
}
