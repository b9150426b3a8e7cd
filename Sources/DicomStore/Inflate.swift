import CZlib

/// Raw DEFLATE (RFC 1951, no zlib header), as the Deflated Explicit VR Little Endian
/// transfer syntax carries the dataset (PS3.5 §A.5).
enum Inflate {
    /// Inflates `compressed` until it ends or `limit` bytes have come out; nil when the
    /// data is not valid DEFLATE. The output never exceeds `limit`, whatever the input claims.
    static func prefix(_ compressed: [UInt8], limit: Int) -> [UInt8]? {
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: limit)
        var input = compressed
        let status = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                stream.next_in = inBuffer.baseAddress
                stream.avail_in = uInt(inBuffer.count)
                stream.next_out = outBuffer.baseAddress
                stream.avail_out = uInt(outBuffer.count)
                return inflate(&stream, Z_SYNC_FLUSH)
            }
        }
        // Z_BUF_ERROR: the output is full or the input ended early (a prefix): both fine.
        guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else { return nil }
        return Array(output.prefix(Int(stream.total_out)))
    }
}
