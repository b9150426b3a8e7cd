/// Where the nmbridge daemon's HTTP API listens.
public enum APIEndpoint: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// A unix domain socket at an absolute filesystem path, e.g. `/run/nmbridge/api.sock`.
    case unixSocket(path: String)
    /// A TCP listener; `host` is a name or an IP address (IPv6 without brackets).
    case tcp(host: String, port: Int)

    /// The daemon's default API socket path.
    public static let defaultUnixSocketPath = "/run/nmbridge/api.sock"

    /// The daemon's default API endpoint: the unix socket at ``defaultUnixSocketPath``.
    public static let `default` = APIEndpoint.unixSocket(path: defaultUnixSocketPath)

    /// Parses an endpoint written as a URL.
    ///
    /// Accepted forms:
    /// - `http://host:port` (port defaults to 80; an optional trailing `/` is allowed; IPv6
    ///   literals in brackets, e.g. `http://[::1]:8080`),
    /// - `unix:///absolute/path/to/api.sock`,
    /// - a bare absolute path, `/absolute/path/to/api.sock`, taken as a unix socket.
    ///
    /// - Throws: ``APIError/invalidEndpointURL(url:reason:)`` naming the URL and what is wrong.
    public init(url: String) throws {
        func invalid(_ reason: String) -> APIError {
            APIError.invalidEndpointURL(url: url, reason: reason)
        }

        if url.isEmpty {
            throw invalid("the URL is empty")
        }
        if url.first == "/" {
            self = .unixSocket(path: url)
            return
        }
        guard let schemeEnd = url.range(of: "://") else {
            throw invalid("expected http://host:port or unix:///path/to/socket")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        let rest = url[schemeEnd.upperBound...]

        switch scheme {
        case "unix":
            guard rest.first == "/" else {
                throw invalid("a unix socket URL needs an absolute path, as in unix:///run/nmbridge/api.sock")
            }
            guard rest.count > 1 else {
                throw invalid("the unix socket path is empty")
            }
            self = .unixSocket(path: String(rest))

        case "http":
            let authority: Substring
            if let slash = rest.firstIndex(of: "/") {
                guard rest[slash...] == "/" else {
                    throw invalid("the URL must not have a path; the API paths are added by the client")
                }
                authority = rest[..<slash]
            } else {
                authority = rest
            }
            if let forbidden = authority.first(where: { "?#@ ".contains($0) }) {
                throw invalid("unexpected '\(forbidden)' in host:port")
            }
            let (host, port) = try Self.splitHostAndPort(authority, invalid: invalid)
            self = .tcp(host: host, port: port)

        case "https":
            throw invalid("https is not supported; the API speaks plain HTTP (use a TLS-terminating proxy)")

        default:
            throw invalid("unsupported scheme '\(scheme)'; expected http:// or unix://")
        }
    }

    private static func splitHostAndPort(
        _ authority: Substring,
        invalid: (String) -> APIError
    ) throws -> (host: String, port: Int) {
        let host: Substring
        let portText: Substring?
        if authority.first == "[" {
            guard let closing = authority.firstIndex(of: "]") else {
                throw invalid("missing ']' after the IPv6 address")
            }
            host = authority[authority.index(after: authority.startIndex)..<closing]
            let afterBracket = authority[authority.index(after: closing)...]
            if afterBracket.isEmpty {
                portText = nil
            } else if afterBracket.first == ":" {
                portText = afterBracket.dropFirst()
            } else {
                throw invalid("expected ':port' after the IPv6 address")
            }
        } else if let colon = authority.firstIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
            if portText?.contains(":") == true {
                throw invalid("IPv6 addresses must be written in brackets, as in http://[::1]:8080")
            }
        } else {
            host = authority
            portText = nil
        }
        guard !host.isEmpty else {
            throw invalid("the host is empty")
        }
        guard let portText else {
            return (String(host), 80)
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy(\.isASCIIDigit),
            let port = Int(portText), (1...65535).contains(port)
        else {
            throw invalid("the port '\(portText)' is not a number from 1 to 65535")
        }
        return (String(host), port)
    }

    /// The endpoint as a person would write it: the socket path, or `http://host:port`.
    public var description: String {
        switch self {
        case .unixSocket(let path):
            return path
        case .tcp(let host, let port):
            return "http://\(hostForURL(host)):\(port)"
        }
    }

    /// The value for the HTTP `Host` request header.
    var hostHeaderValue: String {
        switch self {
        case .unixSocket:
            return "localhost"
        case .tcp(let host, let port):
            return "\(hostForURL(host)):\(port)"
        }
    }

    private func hostForURL(_ host: String) -> String {
        host.contains(":") ? "[\(host)]" : host
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool {
        ("0"..."9").contains(self)
    }
}
