#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// IP address text in one canonical form, so that two spellings of one address compare
/// equal: `::ffff:10.0.0.5` (how a dual-stack socket reports an IPv4 peer) is `10.0.0.5`,
/// and IPv6 is written as `inet_ntop` writes it (`fe80:0:0::1` is `fe80::1`).
public enum IPAddress {
    /// The canonical text of `text`, or `nil` if it is not an IPv4 or IPv6 address.
    public static func canonical(_ text: String) -> String? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return format(AF_INET, &v4, Int(INET_ADDRSTRLEN)) }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return bytes[12..<16].map(String.init).joined(separator: ".")
        }
        return format(AF_INET6, &v6, Int(INET6_ADDRSTRLEN))
    }

    private static func format<T>(_ family: Int32, _ address: inout T, _ size: Int) -> String? {
        var buffer = [CChar](repeating: 0, count: size)
        guard inet_ntop(family, &address, &buffer, socklen_t(size)) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
