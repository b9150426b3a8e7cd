import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(Foundation)
import Foundation
#endif

/// Errors raised by ``APIClient``, ``APIEndpoint`` and ``ServerSentEventStream``.
///
/// `description` (and, with Foundation, `localizedDescription`) is a complete sentence-like
/// message for a person, naming the endpoint or URL involved.
public enum APIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// An endpoint URL could not be parsed; `reason` says what is wrong with `url`.
    case invalidEndpointURL(url: String, reason: String)
    /// The request could not be built (bad path or header); nothing was sent.
    case invalidRequest(reason: String)
    /// No connection could be made; `reason` includes the system's message and, where one
    /// applies, a hint such as "is nmbridged running?".
    case cannotConnect(endpoint: APIEndpoint, reason: String)
    /// The connection failed or closed before the response was complete.
    case connectionLost(endpoint: APIEndpoint, reason: String)
    /// The peer sent something that is not valid HTTP/1.1.
    case invalidResponse(endpoint: APIEndpoint, reason: String)
    /// The response body is larger than the client's limit; the connection was closed.
    case responseBodyTooLarge(limit: Int)
    /// ``APIClient/stream(_:headers:)`` got a status other than 200. The response carries the
    /// status, headers and (JSON) error body, e.g. `410` with
    /// `{"error":"cursor_expired","oldest_seq":101}`.
    case httpStatus(APIResponse)
    /// ``APIClient/stream(_:headers:)`` got a 200 response that is not `text/event-stream`.
    case unexpectedContentType(String)

    /// A message for a person.
    public var description: String {
        switch self {
        case .invalidEndpointURL(let url, let reason):
            return "invalid API URL '\(url)': \(reason)"
        case .invalidRequest(let reason):
            return "invalid API request: \(reason)"
        case .cannotConnect(let endpoint, let reason):
            return "cannot connect to \(endpoint): \(reason)"
        case .connectionLost(let endpoint, let reason):
            return "connection to \(endpoint) lost: \(reason)"
        case .invalidResponse(let endpoint, let reason):
            return "invalid HTTP response from \(endpoint): \(reason)"
        case .responseBodyTooLarge(let limit):
            return "the API response body is larger than the limit of \(limit) bytes"
        case .httpStatus(let response):
            let maxShownBytes = 4096
            var text = String(decoding: response.body.prefix(maxShownBytes), as: UTF8.self)
            if response.body.count > maxShownBytes {
                text += "…"
            }
            let reason = HTTPResponseStatus(statusCode: response.status).reasonPhrase
            let status = reason.isEmpty ? "\(response.status)" : "\(response.status) \(reason)"
            return text.isEmpty ? "HTTP \(status)" : "HTTP \(status): \(text)"
        case .unexpectedContentType(let contentType):
            return "expected an event stream (text/event-stream) but the API answered with '\(contentType)'"
        }
    }
}

#if canImport(Foundation)
extension APIError: LocalizedError {
    /// The same text as ``description``, so Foundation-based callers print a useful message.
    public var errorDescription: String? { description }
}
#endif

// MARK: - From AsyncHTTPClient's and NIO's errors

extension APIError {
    /// How far an exchange had got when it failed.
    enum ExchangePhase {
        /// Connecting, sending the request or waiting for the response head.
        case request
        /// Reading the response body.
        case responseBody
    }

    /// Maps a failure of AsyncHTTPClient (or of NIO beneath it) to an ``APIError`` naming the
    /// endpoint, with a hint for the common cases. ``APIError``, parser errors and
    /// cancellation pass through as they are.
    static func from(
        _ error: any Error,
        endpoint: APIEndpoint,
        phase: ExchangePhase
    ) -> any Error {
        func cannotConnect(_ reason: String) -> APIError { .cannotConnect(endpoint: endpoint, reason: reason) }
        func connectionLost(_ reason: String) -> APIError { .connectionLost(endpoint: endpoint, reason: reason) }
        let closedEarly = "the connection closed before the response was complete"

        switch error {
        case is APIError, is ServerSentEventParserError, is CancellationError:
            return error
        case let error as HTTPClientError:
            switch error {
            case .cancelled:
                return CancellationError()
            case .connectTimeout:
                let milliseconds = TimeAmount(APIClient.connectTimeout).nanoseconds / 1_000_000
                return cannotConnect("timed out after \(milliseconds) ms — is nmbridged running and reachable?")
            case .remoteConnectionClosed:
                return connectionLost(closedEarly)
            case .invalidURL, .emptyHost, .missingSocketPath:
                // The client checks targets and headers itself first; this is the backstop.
                return APIError.invalidRequest(reason: String(describing: error))
            default:
                return phase == .request ? cannotConnect(String(describing: error)) : connectionLost(String(describing: error))
            }
        case HTTPParserError.invalidEOFState:
            return connectionLost(closedEarly)
        case let error as HTTPParserError:
            return APIError.invalidResponse(endpoint: endpoint, reason: String(describing: error))
        case let error as NIOConnectionError:
            if let failure = error.connectionErrors.first {
                return from(failure.error, endpoint: endpoint, phase: phase)
            }
            if let dnsError = error.dnsAError ?? error.dnsAAAAError {
                return cannotConnect("cannot resolve host '\(error.host)': \(dnsError)")
            }
            return cannotConnect("cannot resolve host '\(error.host)'")
        case ChannelError.connectTimeout(_):
            return from(HTTPClientError.connectTimeout, endpoint: endpoint, phase: phase)
        case SocketAddressError.unixDomainSocketPathTooLong:
            return cannotConnect("the socket path is too long for a unix socket address")
        case let error as IOError:
            // The pool does not retry a failed connection (see `APIClient.httpClientConfiguration`),
            // so a connect(2) failure reaches the request as it is.
            if phase == .request, Self.connectErrnos.contains(error.errnoCode) {
                return cannotConnect(describeSystemError(error.errnoCode))
            }
            return connectionLost(String(cString: strerror(error.errnoCode)))
        default:
            return phase == .request ? cannotConnect(String(describing: error)) : connectionLost(String(describing: error))
        }
    }

    /// The `errno` values with which connect(2) fails when nothing can be reached.
    private static let connectErrnos: Set<CInt> = [
        ENOENT, ECONNREFUSED, EACCES, EPERM, ENOTDIR, ENOTSOCK, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL, ENAMETOOLONG,
    ]

    private static func describeSystemError(_ code: CInt) -> String {
        let message = String(cString: strerror(code))
        switch code {
        case ENOENT, ECONNREFUSED:
            return "\(message) — is nmbridged running?"
        case EACCES, EPERM:
            return "\(message) — check the permissions of the socket and its directory"
        default:
            return message
        }
    }
}
