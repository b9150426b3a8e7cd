import Foundation

/// The header and uncompressed pixels of a stored NM Part-10 file, as camera QC needs them.
///
/// The DICOM receiver's dataset reader stops at Pixel Data (it only summarizes headers), so
/// the QC service reads the stored file itself (the `path` of `dicom.instance.stored`). This
/// reader is total: every length is checked against the bytes that are there, nesting is
/// bounded, the file is refused above `maximumBytes`, and an unsupported file gives a
/// `CameraQCError` naming the file and the reason — never a crash. It reads Implicit and
/// Explicit VR Little Endian; deflated, big-endian and compressed (encapsulated) transfer
/// syntaxes are refused with a finding. Pixels: 8, 16 or 32 bits allocated, one sample,
/// unsigned or two's complement (a negative count is read as 0).
public struct NMImageFile: Sendable {
    public var path: String
    public var transferSyntax = ""
    public var sopInstanceUID: String?
    public var modality: String?
    public var imageType: [String] = []
    public var seriesDescription: String?
    public var protocolName: String?
    public var patientID: String?
    public var patientName: String?
    public var stationName: String?
    public var rows = 0
    public var columns = 0
    public var frames = 1
    public var samplesPerPixel = 1
    public var bitsAllocated = 16
    public var pixelRepresentation = 0
    public var rowSpacingMM: Double?
    public var columnSpacingMM: Double?
    /// Detector Vector (0054,0020): the head (1-based) of each frame.
    public var detectorVector: [Int] = []
    public var numberOfDetectors: Int?
    /// Start Angle (0054,0200) of each item of the Detector Information Sequence.
    public var detectorStartAnglesDeg: [Double] = []
    /// From the first item of the Rotation Information Sequence.
    public var rotationStartAngleDeg: Double?
    public var angularStepDeg: Double?
    public var rotationDirection: String?
    var headerOnly = false
    var pixelOffset = 0
    var pixelLength = 0
    var bytes = Data()

    /// Files larger than this are not read (a two-head 1024² 16-bit flood is 4 MiB).
    public static let maximumBytes = 256 << 20
    /// At most this many pixels over all frames are decoded (each becomes a `Double`): a
    /// two-head 1024² flood has 2 M, a 2 × 128-projection COR at 128² 4 M.
    public static let maximumPixels = 32 << 20

    static let implicitLE = "1.2.840.10008.1.2"
    static let explicitLE = "1.2.840.10008.1.2.1"

    /// Reads and parses `path`. With `headerOnly`, only the first MiB is read and parsing
    /// stops at Pixel Data (for the match rules: Protocol Name, Image Type).
    public static func read(path: String, maximumBytes: Int = maximumBytes, headerOnly: Bool = false) throws(CameraQCError) -> NMImageFile {
        var info = stat()
        guard stat(path, &info) == 0 else { throw CameraQCError("\(path): cannot read: \(String(cString: strerror(errno)))") }
        guard headerOnly || Int(info.st_size) <= maximumBytes else {
            throw CameraQCError("\(path): \(info.st_size) bytes is more than the \(maximumBytes) bytes camera QC reads")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CameraQCError("\(path): cannot open the file") }
        defer { try? handle.close() }
        let data: Data
        do {
            data = try (headerOnly ? handle.read(upToCount: 1 << 20) : handle.readToEnd()) ?? Data()
        } catch {
            throw CameraQCError("\(path): cannot read the file: \(error)")
        }
        return try parse(data, path: path, headerOnly: headerOnly)
    }

    /// Parses the bytes of a Part-10 file.
    public static func parse(_ data: Data, path: String, headerOnly: Bool = false, maximumPixels: Int = maximumPixels) throws(CameraQCError)
        -> NMImageFile
    {
        var file = NMImageFile(path: path)
        file.headerOnly = headerOnly
        file.bytes = headerOnly ? Data() : data
        let bytes = [UInt8](data)
        guard bytes.count >= 132, bytes[128] == 0x44, bytes[129] == 0x49, bytes[130] == 0x43, bytes[131] == 0x4D else {
            throw CameraQCError("\(path): not a DICOM Part-10 file (no DICM prefix)")
        }
        // File meta information: always Explicit VR Little Endian.
        var meta = Cursor(bytes: bytes, position: 132, explicit: true)
        while meta.remaining >= 8, meta.peekGroup() == 0x0002 {
            guard let element = meta.next(), let length = element.length, element.valueOffset + length <= bytes.count else {
                throw CameraQCError("\(path): the file meta information is truncated")
            }
            meta.position = element.valueOffset + length
            if element.tag == 0x0002_0010 { file.transferSyntax = meta.string(element) ?? "" }
        }
        switch file.transferSyntax {
        case implicitLE, explicitLE: break
        case "": throw CameraQCError("\(path): the file meta information names no transfer syntax")
        default:
            throw CameraQCError(
                "\(path): transfer syntax \(file.transferSyntax) is not read by camera QC (uncompressed little endian only; a compressed image is not judged)")
        }
        var cursor = Cursor(bytes: bytes, position: meta.position, explicit: file.transferSyntax == explicitLE)
        try file.readDataset(&cursor, end: bytes.count, depth: 0, parent: 0, item: 0)
        if !headerOnly { try file.validate(maximumPixels: maximumPixels) }
        return file
    }

    private mutating func readDataset(_ cursor: inout Cursor, end: Int, depth: Int, parent: UInt32, item: Int) throws(CameraQCError) {
        guard depth < 12 else { throw CameraQCError("\(path): sequences nested more than 12 deep") }
        while cursor.position < end {
            guard cursor.remaining >= 8 else { throw CameraQCError("\(path): truncated element at byte \(cursor.position)") }
            if depth > 0, cursor.peekTag() == 0xFFFE_E00D {  // item delimiter
                _ = cursor.next()
                return
            }
            guard let element = cursor.next() else { throw CameraQCError("\(path): malformed element at byte \(cursor.position)") }
            if element.tag == 0x7FE0_0010, depth == 0 {
                if headerOnly { return }
                guard element.length != nil else {
                    throw CameraQCError("\(path): encapsulated (compressed) pixel data is not read by camera QC")
                }
                pixelOffset = element.valueOffset
                pixelLength = element.length ?? 0
                cursor.position = element.valueOffset + pixelLength
                continue
            }
            if element.isSequence || element.length == nil {
                try readSequence(&cursor, element, depth: depth + 1)
                if let length = element.length { cursor.position = element.valueOffset + length }
                continue
            }
            guard let length = element.length, element.valueOffset + length <= cursor.bytes.count else {
                throw CameraQCError("\(path): element (\(Self.hex(element.tag))) runs past the end of the file")
            }
            cursor.position = element.valueOffset + length
            record(element, cursor: cursor, parent: parent, item: item)
        }
    }

    private mutating func readSequence(_ cursor: inout Cursor, _ sequence: Cursor.Element, depth: Int) throws(CameraQCError) {
        guard depth < 12 else { throw CameraQCError("\(path): sequences nested more than 12 deep") }
        let end = sequence.length.map { sequence.valueOffset + $0 } ?? cursor.bytes.count
        guard end <= cursor.bytes.count else { throw CameraQCError("\(path): sequence (\(Self.hex(sequence.tag))) runs past the end of the file") }
        var index = 0
        while cursor.position < end {
            guard cursor.remaining >= 8 else { throw CameraQCError("\(path): truncated sequence (\(Self.hex(sequence.tag)))") }
            let tag = cursor.peekTag()
            let length = cursor.uint32(at: cursor.position + 4)
            cursor.position += 8
            if tag == 0xFFFE_E0DD { return }  // sequence delimiter
            guard tag == 0xFFFE_E000 else { throw CameraQCError("\(path): sequence (\(Self.hex(sequence.tag))) holds a non-item") }
            let itemEnd = length == 0xFFFF_FFFF ? end : cursor.position + Int(length)
            guard itemEnd <= end else { throw CameraQCError("\(path): an item of (\(Self.hex(sequence.tag))) runs past its sequence") }
            try readDataset(&cursor, end: itemEnd, depth: depth, parent: sequence.tag, item: index)
            if length != 0xFFFF_FFFF { cursor.position = itemEnd }
            index += 1
        }
    }

    private mutating func record(_ element: Cursor.Element, cursor: Cursor, parent: UInt32, item: Int) {
        switch (parent, element.tag) {
        case (0, 0x0008_0008): imageType = (cursor.string(element) ?? "").split(separator: "\\").map { $0.trimmingCharacters(in: .whitespaces) }
        case (0, 0x0008_0018): sopInstanceUID = cursor.string(element)
        case (0, 0x0008_0060): modality = cursor.string(element)
        case (0, 0x0008_1010): stationName = cursor.string(element)
        case (0, 0x0008_103E): seriesDescription = cursor.string(element)
        case (0, 0x0018_1030): protocolName = cursor.string(element)
        case (0, 0x0010_0010): patientName = cursor.string(element)
        case (0, 0x0010_0020): patientID = cursor.string(element)
        case (0, 0x0028_0002): samplesPerPixel = cursor.uint16s(element).first ?? 1
        case (0, 0x0028_0008): frames = cursor.decimals(element).first.map { $0.clampedInt(0, 1 << 20) } ?? 1
        case (0, 0x0028_0010): rows = cursor.uint16s(element).first ?? 0
        case (0, 0x0028_0011): columns = cursor.uint16s(element).first ?? 0
        case (0, 0x0028_0030):
            let values = cursor.decimals(element)
            if values.count >= 2, values[0] > 0, values[1] > 0 {
                rowSpacingMM = values[0]
                columnSpacingMM = values[1]
            }
        case (0, 0x0028_0100): bitsAllocated = cursor.uint16s(element).first ?? 16
        case (0, 0x0028_0103): pixelRepresentation = cursor.uint16s(element).first ?? 0
        case (0, 0x0054_0020): detectorVector = cursor.uint16s(element)
        case (0, 0x0054_0021): numberOfDetectors = cursor.uint16s(element).first
        case (0x0054_0022, 0x0054_0200):
            if item == detectorStartAnglesDeg.count, let angle = cursor.decimals(element).first { detectorStartAnglesDeg.append(angle) }
        case (0x0054_0052, 0x0054_0200) where item == 0: rotationStartAngleDeg = cursor.decimals(element).first
        case (0x0054_0052, 0x0018_1144) where item == 0: angularStepDeg = cursor.decimals(element).first
        case (0x0054_0052, 0x0018_1140) where item == 0: rotationDirection = cursor.string(element)
        default: break
        }
    }

    private func validate(maximumPixels: Int) throws(CameraQCError) {
        guard rows > 0, columns > 0 else { throw CameraQCError("\(path): no Rows/Columns") }
        guard pixelLength > 0 else { throw CameraQCError("\(path): no Pixel Data") }
        guard samplesPerPixel == 1 else { throw CameraQCError("\(path): \(samplesPerPixel) samples per pixel (an NM image has 1)") }
        guard [8, 16, 32].contains(bitsAllocated) else { throw CameraQCError("\(path): \(bitsAllocated) bits allocated is not read") }
        guard frames >= 1 else { throw CameraQCError("\(path): Number of Frames is 0") }
        guard rows * columns * frames <= maximumPixels else {
            throw CameraQCError("\(path): \(frames) frame(s) of \(rows)×\(columns) are more than the \(maximumPixels) pixels camera QC decodes")
        }
        let needed = rows * columns * (bitsAllocated / 8) * frames
        guard needed <= pixelLength, pixelOffset + needed <= bytes.count else {
            throw CameraQCError("\(path): Pixel Data holds \(pixelLength) bytes; \(frames) frame(s) of \(rows)×\(columns)×\(bitsAllocated) bits need \(needed)")
        }
    }

    /// Frame `index` (0-based) as counts.
    public func frame(_ index: Int) -> CountImage {
        let n = rows * columns
        var counts = [Double](repeating: 0, count: n)
        let size = bitsAllocated / 8
        let start = pixelOffset + index * n * size
        let signed = pixelRepresentation == 1
        bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress!.advanced(by: start)
            switch bitsAllocated {
            case 8:
                for i in 0..<n {
                    let v = base.load(fromByteOffset: i, as: UInt8.self)
                    counts[i] = signed ? Double(max(0, Int8(bitPattern: v))) : Double(v)
                }
            case 16:
                for i in 0..<n {
                    let v = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
                    counts[i] = signed ? Double(max(0, Int16(bitPattern: v))) : Double(v)
                }
            default:
                for i in 0..<n {
                    let v = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                    counts[i] = signed ? Double(max(0, Int32(bitPattern: v))) : Double(v)
                }
            }
        }
        return CountImage(rows: rows, columns: columns, counts: counts, rowSpacingMM: rowSpacingMM, columnSpacingMM: columnSpacingMM)
    }

    /// The head (1-based) of each frame: Detector Vector, else frame i is head i + 1.
    public var frameHeads: [Int] {
        if detectorVector.count == frames { return detectorVector }
        return (0..<frames).map { $0 + 1 }
    }

    /// The frames of each head, summed (a flood split by Detector Vector; frames of one head
    /// in several energy windows add up).
    public func floodPerHead() -> [(head: Int, image: CountImage)] {
        var sums: [Int: CountImage] = [:]
        for (index, head) in frameHeads.enumerated() {
            let image = frame(index)
            if var sum = sums[head] {
                for i in 0..<sum.counts.count { sum.counts[i] += image.counts[i] }
                sums[head] = sum
            } else {
                sums[head] = image
            }
        }
        return sums.keys.sorted().map { ($0, sums[$0]!) }
    }

    /// The projections of each head in frame order with their angles: the head's Start Angle
    /// (Detector Information Sequence, else the rotation's) plus k × Angular Step.
    public func projectionsPerHead() throws(CameraQCError) -> [(head: Int, projections: [CenterOfRotation.Projection])] {
        guard let step = angularStepDeg, step != 0, step.isFinite else {
            throw CameraQCError("\(path): no Angular Step (0018,1144) in a Rotation Information Sequence: not a SPECT acquisition")
        }
        let sign = rotationDirection?.uppercased() == "CC" ? -1.0 : 1.0
        var out: [Int: [CenterOfRotation.Projection]] = [:]
        for (index, head) in frameHeads.enumerated() {
            let k = Double(out[head]?.count ?? 0)
            let start = (head >= 1 && head <= detectorStartAnglesDeg.count ? detectorStartAnglesDeg[head - 1] : nil) ?? rotationStartAngleDeg ?? 0
            out[head, default: []].append(.init(angleDeg: start + sign * k * step, image: frame(index)))
        }
        return out.keys.sorted().map { ($0, out[$0]!) }
    }

    static func hex(_ tag: UInt32) -> String { String(format: "%04X,%04X", tag >> 16, tag & 0xFFFF) }
}

/// A bounds-checked little-endian reader over a dataset's bytes.
struct Cursor {
    struct Element {
        var tag: UInt32
        var vr: String?
        /// nil: undefined length.
        var length: Int?
        var valueOffset: Int
        var isSequence: Bool { vr == "SQ" || (vr == nil && Cursor.knownSequences.contains(tag)) }
    }

    static let knownSequences: Set<UInt32> = [0x0054_0022, 0x0054_0052, 0x0054_0016, 0x0054_0012, 0x0054_0013, 0x0054_0300]
    static let longVRs: Set<String> = ["OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV"]

    let bytes: [UInt8]
    var position: Int
    let explicit: Bool

    var remaining: Int { bytes.count - position }

    func uint16(at i: Int) -> Int { i + 2 <= bytes.count ? Int(bytes[i]) | Int(bytes[i + 1]) << 8 : 0 }
    func uint32(at i: Int) -> UInt32 {
        i + 4 <= bytes.count ? UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24 : 0
    }
    func peekGroup() -> Int { uint16(at: position) }
    func peekTag() -> UInt32 { UInt32(uint16(at: position)) << 16 | UInt32(uint16(at: position + 2)) }

    /// The next element's header; the cursor moves to its value. nil when truncated.
    mutating func next() -> Element? {
        guard remaining >= 8 else { return nil }
        let tag = peekTag()
        let isDelimiter = tag >> 16 == 0xFFFE
        if explicit && !isDelimiter {
            let vr = String(decoding: bytes[(position + 4)..<(position + 6)], as: UTF8.self)
            if Self.longVRs.contains(vr) {
                guard remaining >= 12 else { return nil }
                let length = uint32(at: position + 8)
                position += 12
                return Element(tag: tag, vr: vr, length: length == 0xFFFF_FFFF ? nil : Int(length), valueOffset: position)
            }
            let length = uint16(at: position + 6)
            position += 8
            return Element(tag: tag, vr: vr, length: length, valueOffset: position)
        }
        let length = uint32(at: position + 4)
        position += 8
        return Element(tag: tag, vr: nil, length: length == 0xFFFF_FFFF ? nil : Int(length), valueOffset: position)
    }

    func value(_ e: Element) -> ArraySlice<UInt8>? {
        guard let length = e.length, e.valueOffset + length <= bytes.count, length <= 1 << 20 else { return nil }
        return bytes[e.valueOffset..<(e.valueOffset + length)]
    }

    func string(_ e: Element) -> String? {
        guard let v = value(e) else { return nil }
        let text = String(decoding: v, as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: " \0"))
        return text.isEmpty ? nil : text
    }

    func uint16s(_ e: Element) -> [Int] {
        guard let v = value(e) else { return [] }
        return stride(from: v.startIndex, to: v.endIndex - 1, by: 2).map { Int(bytes[$0]) | Int(bytes[$0 + 1]) << 8 }
    }

    func decimals(_ e: Element) -> [Double] {
        (string(e) ?? "").split(separator: "\\").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }.filter(\.isFinite)
    }
}
