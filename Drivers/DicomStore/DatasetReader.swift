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
    ]

    let bytes: [UInt8]
    let encoding: Encoding
    /// Set when the input ended inside an element (the caller gave only a prefix).
    public private(set) var truncated = false

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
                truncated = true
                return dataset
            }
            let tag = Tag(u16(index), u16(index + 2))
            if tag == Tag.itemDelimitation {
                index += 8
                if stopAtItemDelimiter { return dataset }
                continue
            }
            if tag == Tag.pixelData, depth == 0 { return dataset }
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
                        truncated = true
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
                truncated = true
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
        return dataset
    }

    /// Items of a sequence until its end (defined length) or its delimiter.
    private mutating func readItems(_ index: inout Int, end: Int, depth: Int, definedEnd: Int?) throws(DatasetError) -> [Dataset] {
        var items: [Dataset] = []
        while index < (definedEnd ?? end) {
            guard end - index >= 8 else {
                truncated = true
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
                    truncated = true
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
        return items
    }
}
