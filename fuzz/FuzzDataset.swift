// libFuzzer entry: the dataset reader and the DIMSE command parser. Input: one encoding byte (0 implicit LE, 1 explicit LE, 2 explicit BE) + dataset.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDataset(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = bytes.first else { return 0 }
    let encoding: DatasetReader.Encoding = [.implicitLittle, .explicitLittle, .explicitBig][Int(first) % 3]
    let dataset = Array(bytes.dropFirst())
    var reader = DatasetReader(bytes: dataset, encoding: encoding)
    if let read = try? reader.read() { _ = read.elements.keys.map { (read.string($0), read.number($0)) } }
    // What follows the pixel data, walked by headers as the receiver does on the stored file.
    if let pixelData = reader.pixelDataOffset {
        try? DatasetReader.checkTail(from: pixelData, end: dataset.count, encoding: encoding) { offset, count in
            offset >= 0 && offset < dataset.count ? Array(dataset[offset..<min(dataset.count, offset + count)]) : []
        }
    }
    _ = try? Command.decode(Array(bytes.dropFirst()))
    return 0
}
