import Foundation

/// Builds a dataset in explicit VR little endian: elements are collected by tag and written
/// in ascending order, sequences with defined lengths. Enough for the SR documents nmbridge
/// writes; values are padded to even length as PS3.5 §6.2 asks of each VR.
public struct DatasetWriter: Sendable {
    enum Value: Sendable {
        case bytes(vr: String, [UInt8])
        case sequence([DatasetWriter])
    }

    private var elements: [Tag: Value] = [:]

    public init() {}

    /// A text value (AE, AS, CS, DA, DS, DT, IS, LO, LT, PN, SH, ST, TM, UC, UT), padded with a space.
    public mutating func text(_ tag: Tag, _ vr: String, _ value: String) {
        var bytes = Array(value.utf8)
        if bytes.count % 2 == 1 { bytes.append(0x20) }
        elements[tag] = .bytes(vr: vr, bytes)
    }

    /// A UID, padded with NUL.
    public mutating func uid(_ tag: Tag, _ value: String) {
        var bytes = Array(value.utf8)
        if bytes.count % 2 == 1 { bytes.append(0) }
        elements[tag] = .bytes(vr: "UI", bytes)
    }

    /// A type 2 element present with no value.
    public mutating func empty(_ tag: Tag, _ vr: String) {
        elements[tag] = vr == "SQ" ? .sequence([]) : .bytes(vr: vr, [])
    }

    /// An unsigned short (US).
    public mutating func us(_ tag: Tag, _ value: UInt16) {
        elements[tag] = .bytes(vr: "US", [UInt8(value & 0xFF), UInt8(value >> 8)])
    }

    /// A sequence of items.
    public mutating func sequence(_ tag: Tag, _ items: [DatasetWriter]) {
        elements[tag] = .sequence(items)
    }

    /// The encoded dataset.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        for tag in elements.keys.sorted(by: { ($0.group, $0.element) < ($1.group, $1.element) }) {
            Self.header(&out, tag)
            switch elements[tag]! {
            case .bytes(let vr, let value):
                out += Array(vr.utf8)
                if DatasetReader.longVRs.contains(vr) {
                    out += [0, 0] + Self.le32(value.count)
                } else {
                    out += [UInt8(value.count & 0xFF), UInt8(value.count >> 8 & 0xFF)]
                }
                out += value
            case .sequence(let items):
                var body: [UInt8] = []
                for item in items {
                    let bytes = item.encoded()
                    Self.header(&body, Tag.item)
                    body += Self.le32(bytes.count) + bytes
                }
                out += Array("SQ".utf8) + [0, 0] + Self.le32(body.count) + body
            }
        }
        return out
    }

    private static func header(_ out: inout [UInt8], _ tag: Tag) {
        out += [UInt8(tag.group & 0xFF), UInt8(tag.group >> 8), UInt8(tag.element & 0xFF), UInt8(tag.element >> 8)]
    }

    static func le32(_ v: Int) -> [UInt8] {
        let v = UInt32(truncatingIfNeeded: v)
        return [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)]
    }

    /// A Part-10 file: preamble, "DICM", file meta (explicit VR little endian), this dataset.
    public func partTen(sopClass: String, sopInstance: String, sourceAE: String) -> [UInt8] {
        InstanceFile.fileMeta(
            sopClass: sopClass, sopInstance: sopInstance, transferSyntax: DICOM.TransferSyntax.explicitLittle, callingAE: sourceAE)
            + encoded()
    }
}
