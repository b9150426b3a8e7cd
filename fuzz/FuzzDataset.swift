// libFuzzer entry: the dataset reader and the DIMSE command parser. Input: one encoding byte (0 implicit LE, 1 explicit LE, 2 explicit BE) + dataset.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDataset(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = bytes.first else { return 0 }
    let encoding: DatasetReader.Encoding = [.implicitLittle, .explicitLittle, .explicitBig][Int(first) % 3]
    var reader = DatasetReader(bytes: Array(bytes.dropFirst()), encoding: encoding)
    if let dataset = try? reader.read() { _ = dataset.elements.keys.map { (dataset.string($0), dataset.number($0)) } }
    _ = try? Command.decode(Array(bytes.dropFirst()))
    return 0
}
