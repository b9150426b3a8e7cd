import Foundation
import NMBridgeCore

extension DaemonConfiguration {
    /// `[shipper]`: ships the journal to a department-wide PostgreSQL table (docs/shipper.md).
    public struct Shipper: ConfigurationSection, Equatable {
        public static let key = "shipper"

        public enum TLSMode: String, Sendable, CaseIterable {
            /// Plain TCP (or a unix socket).
            case disable
            /// TLS if the server offers it, plain otherwise.
            case prefer
            /// TLS or no connection; the server's certificate is verified.
            case require
        }

        /// The environment variable the password is read from when `password_file` is unset.
        public static let passwordEnvironmentVariable = "NMBRIDGE_POSTGRES_PASSWORD"

        public var url: PostgresURL
        /// A file holding the password (trailing newline ignored); `nil` = the environment
        /// variable `NMBRIDGE_POSTGRES_PASSWORD`, or no password.
        public var passwordFile: String?
        public var tls: TLSMode = .disable
        /// PEM file of the CA that signed the server's certificate; default: the system's CAs.
        public var tlsCAFile: String?
        /// Events per INSERT transaction.
        public var batchSize: Int = 1000
        /// How long the first unshipped event waits for more before a partial batch goes.
        public var flushInterval: Double = 0.1
        /// Cap of the reconnect delay after a failure (doubles from 0.1 s).
        public var maxBackoff: Double = 10
        /// `shipper.lagging` when the oldest unshipped event is older than this (seconds)…
        public var lagAlertSeconds: Double = 60
        /// …or when more than this many events wait.
        public var lagAlertEvents: Int64 = 100_000
        /// Whether retention may delete events that were not shipped yet.
        public var retentionMayDropUnshipped = false

        public init(url: PostgresURL) { self.url = url }

        /// Reads `[shipper]`; `nil` when `postgres` is missing or unusable (the problem is recorded).
        public static func read(_ table: ConfigTableReader, context: ConfigurationContext) -> Shipper? {
            let resolve = table.resolvePath
            var url: PostgresURL?
            if let text = table.string("postgres", required: true) {
                do {
                    let parsed = try PostgresURL(text)
                    if parsed.password != nil {
                        table.problem(
                            "postgres",
                            "the URL contains a password; put it in password_file or the environment variable \(passwordEnvironmentVariable) instead")
                    } else {
                        url = parsed
                    }
                } catch {
                    table.problem("postgres", "not a PostgreSQL URL: \(error.message)")
                }
            }
            var shipper = Shipper(url: url ?? PostgresURL(user: "nmbridge", host: "localhost", database: "nmbridge"))
            shipper.passwordFile = table.string("password_file").map(resolve)
            if let path = shipper.passwordFile, !FileManager.default.isReadableFile(atPath: path) {
                table.problem("password_file", "cannot read \(path)")
            }
            if let tls = table.choice("tls", ["disable", "prefer", "require"]) { shipper.tls = Shipper.TLSMode(rawValue: tls)! }
            shipper.tlsCAFile = table.string("tls_ca_file").map(resolve)
            if shipper.tlsCAFile != nil, shipper.tls == .disable {
                table.problem("tls_ca_file", "has no effect with tls = \"disable\"; set tls = \"require\"")
            }
            if url?.socketDirectory != nil, shipper.tls != .disable {
                table.problem("tls", "TLS is not available over a unix socket (?host=…); use tls = \"disable\" or a TCP host")
            }
            if let v = table.int("batch_size", in: 1...50_000) { shipper.batchSize = Int(v) }
            if let v = table.int("flush_interval_ms", in: 0...600_000) { shipper.flushInterval = Double(v) / 1000 }
            if let v = table.double("max_backoff_s", in: 0.1...3600) { shipper.maxBackoff = v }
            if let v = table.double("lag_alert_s", in: 1...(86_400 * 365)) { shipper.lagAlertSeconds = v }
            if let v = table.int("lag_alert_events", in: 1...Int64.max) { shipper.lagAlertEvents = v }
            if let v = table.bool("retention_may_drop_unshipped") { shipper.retentionMayDropUnshipped = v }
            return url == nil ? nil : shipper
        }
    }

    /// `[shipper]`, when configured.
    public var shipper: Shipper? {
        get { self[Shipper.self] }
        set { self[Shipper.self] = newValue }
    }
}
