import NIOCore

/// One PDU off the wire: its type and body, before decoding.
struct RawPDU {
    var type: UInt8
    var body: [UInt8]
}

/// Splits the byte stream into PDUs. A P-DATA-TF longer than `maximumLength` (the
/// max PDU we announce), or any other PDU longer than 64 KiB, is refused before
/// any of it is buffered beyond the header: the length on the wire is untrusted.
struct PDUFramer: ByteToMessageDecoder {
    typealias InboundOut = RawPDU

    let maximumLength: Int
    /// Association requests and the rest are small; only data PDUs may be large.
    static let maximumControlLength = 65_536

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes >= 6, let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt32.self)
        else { return .needMoreData }
        guard (1...7).contains(type) else { throw PDUError("unknown PDU type 0x\(String(type, radix: 16))") }
        let limit = type == PDU.dataType ? maximumLength : Self.maximumControlLength
        guard Int(length) <= limit else {
            throw PDUError("a PDU of type \(type) claims \(length) bytes, more than the \(limit) allowed")
        }
        guard buffer.readableBytes >= 6 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 6)
        let body = buffer.readBytes(length: Int(length)) ?? []
        context.fireChannelRead(wrapInboundOut(RawPDU(type: type, body: body)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A connection that ends inside a PDU: what was received is dropped.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}
