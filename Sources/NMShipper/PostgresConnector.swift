import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NMBridgeCore
import PostgresNIO
import Synchronization

/// Everything needed to open connections to one PostgreSQL server: the URL, the password
/// (read once, from a file or the environment) and the TLS mode.
public struct PostgresConnector: Sendable, CustomStringConvertible {
    public let url: PostgresURL
    let password: String?
    let tls: DaemonConfiguration.Shipper.TLSMode
    let tlsCAFile: String?

    /// - Parameters:
    ///   - password: wins over the URL's own password.
    public init(url: PostgresURL, password: String? = nil, tls: DaemonConfiguration.Shipper.TLSMode = .disable, tlsCAFile: String? = nil) {
        self.url = url
        self.password = password ?? url.password
        self.tls = tls
        self.tlsCAFile = tlsCAFile
    }

    /// The connector of a `[shipper]` section: the password from `password_file`, else from
    /// `NMBRIDGE_POSTGRES_PASSWORD` in `environment`, else none.
    public init(_ settings: DaemonConfiguration.Shipper, environment: [String: String]) throws {
        let password = try Self.password(file: settings.passwordFile, environment: environment)
        self.init(url: settings.url, password: password, tls: settings.tls, tlsCAFile: settings.tlsCAFile)
    }

    /// Reads a password file (first line, surrounding white space removed) or the environment.
    public static func password(file: String?, environment: [String: String]) throws -> String? {
        if let file {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw NMBridgeError(.invalidConfiguration, "shipper.password_file: cannot read \(file) (missing, or no permission?)")
            }
            let password = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
                .trimmingCharacters(in: .whitespaces)
            guard !password.isEmpty else {
                throw NMBridgeError(.invalidConfiguration, "shipper.password_file: \(file) is empty")
            }
            return password
        }
        return environment[DaemonConfiguration.Shipper.passwordEnvironmentVariable].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The server, without password, for messages.
    public var description: String { url.description }

    func configuration() throws -> PostgresConnection.Configuration {
        if let socketPath = url.socketPath {
            return PostgresConnection.Configuration(unixSocketPath: socketPath, username: url.user, password: password, database: url.database)
        }
        let tlsConfiguration: PostgresConnection.Configuration.TLS
        switch tls {
        case .disable:
            tlsConfiguration = .disable
        case .prefer, .require:
            var settings = TLSConfiguration.makeClientConfiguration()
            if let tlsCAFile {
                do {
                    settings.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(tlsCAFile))
                } catch {
                    throw NMBridgeError(.invalidConfiguration, "shipper.tls_ca_file: cannot read PEM certificates from \(tlsCAFile)", underlying: error)
                }
            }
            let context: NIOSSLContext
            do {
                context = try NIOSSLContext(configuration: settings)
            } catch {
                throw NMBridgeError(.invalidConfiguration, "cannot set up TLS for \(url)", underlying: error)
            }
            tlsConfiguration = tls == .require ? .require(context) : .prefer(context)
        }
        var configuration = PostgresConnection.Configuration(
            host: url.host ?? "localhost", port: url.port, username: url.user, password: password, database: url.database,
            tls: tlsConfiguration)
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    /// Opens one connection; errors name the server (never the password).
    public func connect(logger: Logger) async throws -> PostgresConnection {
        let configuration = try configuration()
        do {
            return try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration, id: Self.nextID(), logger: logger)
        } catch {
            throw PostgresFailure("cannot connect to \(url)", error)
        }
    }

    private static let counter = Atomic<Int>(0)
    private static func nextID() -> Int { counter.wrappingAdd(1, ordering: .relaxed).newValue }
}

/// A PostgreSQL operation failed; the message names the server and what was being done,
/// and keeps the server's own message (PSQLError hides it from `description`).
public struct PostgresFailure: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var cause: String

    public init(_ message: String, _ error: any Error) {
        self.message = message
        self.cause = Self.explain(error)
    }

    public var description: String { "\(message): \(cause)" }

    /// The server's message for a `PSQLError` (its `description` is deliberately vague).
    static func explain(_ error: any Error) -> String {
        if let failure = error as? PostgresFailure { return failure.description }
        if let error = error as? PSQLError {
            if let server = error.serverInfo, let message = server[.message] {
                let code = server[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
                return message + code
            }
            if let underlying = error.underlying { return "\(error.code): \(underlying)" }
            return "\(error.code)"
        }
        return "\(error)"
    }
}
