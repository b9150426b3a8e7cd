import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A stored Part-10 file, as the requester sends it: its file meta says the SOP class and
/// instance, the transfer syntax, and where the dataset starts. The dataset's bytes are
/// sent as they are on disk (never re-encoded), so the destination receives exactly what
/// was stored.
public struct StoredInstance: Sendable, Equatable {
    public var path: String
    public var sopClass: String
    public var sopInstance: String
    public var transferSyntax: String
    /// Where the dataset starts in the file (after preamble, "DICM" and group 0002).
    public var datasetOffset: Int
    /// The file's size.
    public var size: Int

    /// Reads the file meta of `path`. Total: a file that is not Part-10, or whose meta is
    /// cut short or lacks the SOP class, instance or transfer syntax, is a ``RequesterError``
    /// naming the file.
    public static func open(path: String) throws(RequesterError) -> StoredInstance {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RequesterError(.file, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw RequesterError(.file, "cannot stat \(path): \(String(cString: strerror(errno)))") }
        var head = [UInt8](repeating: 0, count: 16_384)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 144, Array(head[128..<132]) == Array("DICM".utf8) else {
            throw RequesterError(.file, "\(path) is not a DICOM Part-10 file (no DICM prefix)")
        }
        guard head[132] == 0x02, head[133] == 0x00, head[134] == 0x00, head[135] == 0x00, Array(head[136..<138]) == Array("UL".utf8) else {
            throw RequesterError(.file, "\(path): the file meta does not start with its group length (0002,0000)")
        }
        let groupLength = Int(UInt32(head[140]) | UInt32(head[141]) << 8 | UInt32(head[142]) << 16 | UInt32(head[143]) << 24)
        let end = 144 + groupLength
        guard groupLength >= 0, end <= n else { throw RequesterError(.file, "\(path): the file meta claims \(groupLength) bytes, more than the file's head holds") }
        var values: [UInt16: String] = [:]
        var index = 144
        while index + 8 <= end {
            guard head[index] == 0x02, head[index + 1] == 0x00 else { break }
            let element = UInt16(head[index + 2]) | UInt16(head[index + 3]) << 8
            let vr = String(decoding: head[(index + 4)..<(index + 6)], as: UTF8.self)
            let long = DatasetReader.longVRs.contains(vr)
            guard !long || index + 12 <= end else { break }
            let length =
                long
                ? Int(UInt32(head[index + 8]) | UInt32(head[index + 9]) << 8 | UInt32(head[index + 10]) << 16 | UInt32(head[index + 11]) << 24)
                : Int(UInt16(head[index + 6]) | UInt16(head[index + 7]) << 8)
            let start = index + (long ? 12 : 8)
            guard length >= 0, start + length <= end else {
                throw RequesterError(.file, "\(path): file meta element (0002,\(String(format: "%04X", element))) runs past the meta")
            }
            if vr == "UI" {
                values[element] = String(decoding: head[start..<(start + length)], as: UTF8.self).trimmingCharacters(in: ["\0", " "])
            }
            index = start + length
        }
        guard let sopClass = values[0x0002], !sopClass.isEmpty, let sopInstance = values[0x0003], !sopInstance.isEmpty,
            let syntax = values[0x0010], !syntax.isEmpty
        else {
            throw RequesterError(.file, "\(path): the file meta lacks the SOP class, SOP instance or transfer syntax (0002,0002/0003/0010)")
        }
        return StoredInstance(
            path: path, sopClass: sopClass, sopInstance: sopInstance, transferSyntax: syntax, datasetOffset: end, size: Int(info.st_size))
    }
}
