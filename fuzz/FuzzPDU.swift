// libFuzzer entry: the upper-layer PDU decoder. Input: PDU type byte + body.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPDU(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let type = bytes.first else { return 0 }
    // Whole PDUs as they come off the wire (header included) and bare bodies.
    if bytes.count >= 6 { _ = try? PDU.decode(type: type, body: bytes.dropFirst(6)) }
    _ = try? PDU.decode(type: type, body: bytes.dropFirst())
    return 0
}
