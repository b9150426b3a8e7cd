/// Rewrites an explicit VR little endian dataset as implicit VR little endian, the DICOM
/// default transfer syntax every storage SCP must accept (PS3.5 §10.1), for a destination
/// that accepts only that. The values are the same bytes in the same byte order; only the
/// element headers change (PS3.5 §7.1.2 and §7.1.3):
///
/// - each element's VR goes, and its length becomes 32 bits;
/// - sequences and their items are written with undefined length and delimiters, so that no
///   length needs recomputing when headers shrink;
/// - group lengths (gggg,0000), retired in datasets, are dropped: they would be wrong.
///
/// Total: every length is checked against the bytes that hold it, nesting is bounded, and
/// what cannot be converted losslessly (an undefined-length value other than a sequence,
/// which only encapsulated pixel data has, or a UN of undefined length, whose content is
/// already implicit) is a `DatasetError` naming the element.
public enum ImplicitVRTranscoder {
    static let undefinedLength: UInt32 = 0xFFFF_FFFF
    static let maximumDepth = 32

    public static func transcode(_ bytes: [UInt8]) throws(DatasetError) -> [UInt8] {
        var transcoder = Transcoder(input: bytes)
        transcoder.output.reserveCapacity(bytes.count + 64)
        var index = 0
        try transcoder.elements(&index, end: bytes.count, depth: 0, untilItemDelimiter: false)
        return transcoder.output
    }

    private struct Transcoder {
        let input: [UInt8]
        var output: [UInt8] = []

        func u16(_ at: Int) -> UInt16 { UInt16(input[at]) | UInt16(input[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }

        mutating func write(group: UInt16, element: UInt16, length: UInt32) {
            for value in [UInt32(group) | UInt32(element) << 16, length] {
                output.append(contentsOf: [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 24)])
            }
        }

        func failure(_ what: String, at index: Int) -> DatasetError {
            DatasetError(message: "cannot convert to implicit VR little endian: \(what) at byte \(index)")
        }

        /// Elements until `end`, or until an item delimiter when `untilItemDelimiter`
        /// (which is consumed, not written: the caller writes its own).
        mutating func elements(_ index: inout Int, end: Int, depth: Int, untilItemDelimiter: Bool) throws(DatasetError) {
            while index < end {
                guard index + 8 <= end else { throw failure("an element header cut short", at: index) }
                let group = u16(index)
                let element = u16(index + 2)
                let tag = Tag(group, element)
                if group == 0xFFFE {
                    guard element == 0xE00D, untilItemDelimiter else { throw failure("\(tag) where an element belongs", at: index) }
                    index += 8
                    return
                }
                let vr = String(decoding: input[(index + 4)..<(index + 6)], as: UTF8.self)
                let long = DatasetReader.longVRs.contains(vr)
                guard !long || index + 12 <= end else { throw failure("the header of \(tag) cut short", at: index) }
                let length = long ? u32(index + 8) : UInt32(u16(index + 6))
                index += long ? 12 : 8
                if length == ImplicitVRTranscoder.undefinedLength {
                    guard vr == "SQ" else { throw failure("\(tag) \(vr) of undefined length", at: index) }
                    try sequence(tag, &index, end: end, definedEnd: nil, depth: depth)
                    continue
                }
                guard Int(length) <= end - index else { throw failure("\(tag) claims \(length) bytes, more than remain", at: index) }
                let valueEnd = index + Int(length)
                if vr == "SQ" {
                    try sequence(tag, &index, end: valueEnd, definedEnd: valueEnd, depth: depth)
                } else {
                    if element != 0x0000 {
                        write(group: group, element: element, length: length)
                        output.append(contentsOf: input[index..<valueEnd])
                    }
                    index = valueEnd
                }
            }
            if untilItemDelimiter { throw failure("an item without its delimiter", at: index) }
        }

        /// The items of a sequence, written with undefined lengths and delimiters.
        mutating func sequence(_ tag: Tag, _ index: inout Int, end: Int, definedEnd: Int?, depth: Int) throws(DatasetError) {
            guard depth < ImplicitVRTranscoder.maximumDepth else { throw failure("sequences nested deeper than \(ImplicitVRTranscoder.maximumDepth)", at: index) }
            write(group: tag.group, element: tag.element, length: ImplicitVRTranscoder.undefinedLength)
            while true {
                if let definedEnd, index >= definedEnd { break }
                guard index + 8 <= end else { throw failure("the items of \(tag) cut short", at: index) }
                let group = u16(index)
                let element = u16(index + 2)
                let length = u32(index + 4)
                index += 8
                if group == 0xFFFE, element == 0xE0DD, definedEnd == nil { break }
                guard group == 0xFFFE, element == 0xE000 else { throw failure("\(Tag(group, element)) inside \(tag) where an item belongs", at: index - 8) }
                write(group: 0xFFFE, element: 0xE000, length: ImplicitVRTranscoder.undefinedLength)
                if length == ImplicitVRTranscoder.undefinedLength {
                    try elements(&index, end: end, depth: depth + 1, untilItemDelimiter: true)
                } else {
                    guard Int(length) <= end - index else { throw failure("an item of \(tag) claims \(length) bytes, more than remain", at: index) }
                    try elements(&index, end: index + Int(length), depth: depth + 1, untilItemDelimiter: false)
                }
                write(group: 0xFFFE, element: 0xE00D, length: 0)
            }
            write(group: 0xFFFE, element: 0xE0DD, length: 0)
        }
    }
}
