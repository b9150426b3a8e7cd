import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NMBridgeCore
import NMCatalog
import NMJournal
import TestSupport
import Testing

@testable import NMServer

/// `POST /v1/qc/sign` over TCP, with curl as the client: the signer is the token's name,
/// never what the client claims.
@Suite struct APIQualityControlTests {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"), "curl is installed by scripts/test"))
    func overTCPTheTokenSigns() async throws {
        let dir = FileManager.default.temporaryDirectory.path + "/nmb-apiqc-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let logger = Logger(label: "test")
        let journal = try Journal.open(JournalOptions(path: dir + "/journal.db", node: "test-node", registry: .standard, sync: .normal), logger: logger)
        var routes = APIRoutes(journal: journal, monitor: DeviceMonitor(journal: journal, devices: [], logger: logger), node: "test-node")
        routes.tokenName = "physics"
        let token = "0123456789abcdef0123456789abcdef"
        let app = Application(
            router: routes.router(token: token), configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in
            defer { journal.closeFollowers() }
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let auth = ["-H", "Authorization: Bearer \(token)", "-X", "POST"]
            let unauthorized = try await curl(base + "/v1/qc/sign?date=2026-12-07", ["-X", "POST"])
            #expect(unauthorized.status == 401)
            let bad = try await curl(base + "/v1/qc/sign?date=07.12.2026", auth)
            #expect(bad.status == 400 && bad.body.contains("YYYY-MM-DD"))
            let signed = try await curl(base + "/v1/qc/sign?date=2026-12-07&signer=mallory&comment=ok", auth)
            #expect(signed.status == 200, "\(signed.body)")
            let event = try #require(try await journal.events(EventQuery(filter: EventFilter(kinds: ["qc.review.signed"]))).events.first)
            #expect(event.data["signer"] == .string("physics") && event.data["via"] == .string("tcp"))
            #expect(event.data["local_date"] == .string("2026-12-07") && event.data["comment"] == .string("ok"))
            #expect(event.data["uid"] == nil)
            let linearity = try await curl(base + "/v1/qc/linearity/start?device=nowhere", auth)
            #expect(linearity.status == 400 && linearity.body.contains("configured device id"))
        }
    }
}
