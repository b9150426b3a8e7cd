import Foundation
import NMShipper
import TestSupport
import Testing

@testable import NMBridgeCore

@Suite struct ShipperConfigurationTests {
    @Test func offUnlessConfiguredAndDefaults() throws {
        #expect(try load("").shipper == nil)
        let shipper = try #require(try load("[shipper]\npostgres = \"postgres://nmb@db.example/department\"\n").shipper)
        #expect(shipper.url.host == "db.example" && shipper.url.database == "department")
        #expect(shipper.tls == .disable && shipper.batchSize == 1000 && shipper.flushInterval == 0.1)
        #expect(shipper.passwordFile == nil && !shipper.retentionMayDropUnshipped)
    }

    @Test func everyKeyIsRead() throws {
        // The password file must exist: the daemon reads it at start, so `config check` does too.
        let base = try makeTemporaryDirectory("shipper")
        defer { try? FileManager.default.removeItem(atPath: base) }
        try "secret\n".write(toFile: base + "/pg.password", atomically: true, encoding: .utf8)
        let shipper = try #require(
            try DaemonConfiguration.load(
                text: """
                [shipper]
                postgres = "postgres://nmb@db.example:6543/department"
                password_file = "pg.password"
                tls = "require"
                tls_ca_file = "/etc/ssl/department-ca.pem"
                batch_size = 500
                flush_interval_ms = 250
                max_backoff_s = 30
                lag_alert_s = 120
                lag_alert_events = 5000
                retention_may_drop_unshipped = true
                """, file: "test.toml", drivers: catalog, sections: .standard, defaultNode: "host-a", baseDirectory: base
            ).shipper)
        #expect(shipper.url.port == 6543)
        #expect(shipper.passwordFile == base + "/pg.password", "relative to the configuration file")
        #expect(shipper.tls == .require && shipper.tlsCAFile == "/etc/ssl/department-ca.pem")
        #expect(shipper.batchSize == 500 && shipper.flushInterval == 0.25 && shipper.maxBackoff == 30)
        #expect(shipper.lagAlertSeconds == 120 && shipper.lagAlertEvents == 5000 && shipper.retentionMayDropUnshipped)
    }

    @Test func everyProblemIsReportedWithKeyAndLine() {
        let error = #expect(throws: ConfigurationError.self) {
            try load(
                """
                [shipper]
                postgres = "postgres://nmb:hunter2@db.example/department"
                tls = "sometimes"
                batch_size = 0
                flush_interval_ms = "fast"
                retention_may_drop_unshiped = true
                """)
        }
        let problems = error?.problems ?? []
        func problem(_ key: String) -> ConfigProblem? { problems.first { $0.key == key } }
        #expect(problem("shipper.postgres")?.line == 2)
        #expect(problem("shipper.postgres")?.message.contains("password_file") == true)
        #expect(problem("shipper.postgres")?.message.contains("hunter2") == false, "never echo the password")
        #expect(problem("shipper.tls")?.line == 3)
        #expect(problem("shipper.batch_size")?.line == 4)
        #expect(problem("shipper.flush_interval_ms")?.line == 5)
        #expect(problem("shipper.retention_may_drop_unshiped")?.message.contains("retention_may_drop_unshipped") == true, "typo hint: \(problems)")
        #expect(problems.count == 5, "all at once: \(problems)")
    }

    @Test func missingOrMalformedURLAndTLSOverASocket() {
        let missing = #expect(throws: ConfigurationError.self) { try load("[shipper]\nbatch_size = 10\n") }
        #expect(missing?.problems.map(\.key) == ["shipper.postgres"])
        let malformed = #expect(throws: ConfigurationError.self) { try load("[shipper]\npostgres = \"db.example:5432\"\n") }
        #expect(malformed?.problems.first?.message.contains("postgres://") == true)
        let socketTLS = #expect(throws: ConfigurationError.self) {
            try load("[shipper]\npostgres = \"postgres://nmb@/db?host=/run/postgresql\"\ntls = \"require\"\n")
        }
        #expect(socketTLS?.problems.map(\.key) == ["shipper.tls"])
    }
}
