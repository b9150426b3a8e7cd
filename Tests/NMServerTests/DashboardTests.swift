import Foundation
import NMBridgeCore
import TestSupport
import Testing

@testable import NMServer

/// The dashboard's serving and access rules, through curl against the real router.
/// The browser itself is in IntegrationTests/DashboardBrowserTests.
@Suite(.serialized) struct DashboardTests {
    /// UIAssets.generated.swift is what scripts/embed-ui makes of ui/ (as docs/events.md
    /// is checked against the registry).
    @Test func embeddedAssetsMatchTheirSources() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [repositoryRoot + "/scripts/embed-ui", "--check"]
        let errors = Pipe()
        process.standardError = errors
        try process.runBoundToTest()
        let message = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let data = errors.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: String(decoding: data, as: UTF8.self))
            }
        }
        #expect(process.terminationStatus == 0, "\(message)")
        // Every page's script and style references resolve to an embedded, hashed asset.
        for page in ["index.html", "login.html"] {
            let html = String(buffer: UIAssets.page(page).identity)
            let references = html.matches(of: /\/ui\/assets\/([A-Za-z0-9._-]+)"/).map { String($0.1) }
            #expect(!references.isEmpty)
            for name in references { #expect(UIAssets.hashed[name] != nil, "\(page) refers to \(name), which is not embedded") }
        }
    }

    /// No inline script, style or event handler anywhere: the policy forbids them, and a
    /// page that relied on one would break silently.
    @Test func pagesHaveNothingInline() {
        for asset in UIAssets.all.values where asset.contentType.hasPrefix("text/html") {
            let html = String(buffer: asset.identity)
            #expect(html.matches(of: /<script(?![^>]*\bsrc=)[^>]*>/).isEmpty, "\(asset.name): inline <script>")
            #expect(!html.contains("<style"), "\(asset.name): inline <style>")
            #expect(html.matches(of: /\s(on[a-z]+|style)\s*=/).isEmpty, "\(asset.name): inline handler or style attribute")
        }
        let script = String(buffer: UIAssets.all.values.first { $0.name == "app.js" }!.identity)
        #expect(!script.contains("innerHTML") && !script.contains("insertAdjacentHTML") && !script.contains("outerHTML"), "app.js builds HTML from text")
    }

    @Test func overTCPTheDashboardNeedsASession() async throws {
        let token = "s3cret-token-0123456789"
        try await withAPI(token: token) { journal, port in
            try await appendSample(journal, count: 3)
            let base = "http://127.0.0.1:\(port)"
            // The page sends a browser to the login form; data answers 401.
            let page = try await curl(base + "/ui/", ["-D", "-"])
            #expect(page.status == 303 && page.body.lowercased().contains("location: /ui/login"), "\(page)")
            for path in ["/v1/events", "/v1/devices", "/ui/data/info", "/ui/data/qc", "/ui/data/studies", "/ui/data/stream", "/ui/data/recent"] {
                let response = try await curl(base + path)
                #expect(response.status == 401 && !response.body.contains("test-node"), "\(path): \(response)")
            }
            // The login form and the assets are public, under a strict policy.
            let login = try await curl(base + "/ui/login", ["-D", "-"])
            #expect(login.status == 200)
            #expect(login.body.lowercased().contains("content-security-policy: default-src 'self'"), "\(login.body)")
            #expect(!login.body.contains("unsafe-inline"))
            let asset = try #require(UIAssets.hashed.keys.first { $0.hasSuffix(".js") })
            let js = try await curl(base + "/ui/assets/\(asset)", ["-D", "-", "-H", "Accept-Encoding: gzip", "-o", "/dev/null"])
            #expect(js.status == 200 && js.body.contains("max-age=31536000, immutable") && js.body.lowercased().contains("content-encoding: gzip"), "\(js)")

            // A wrong token: 401, no cookie. The right one: an HttpOnly, SameSite=Strict session.
            let wrong = try await curl(base + "/ui/login", ["-D", "-", "--data", "token=s3cret-token-0123456780"])
            #expect(wrong.status == 401 && !wrong.body.lowercased().contains("set-cookie"), "\(wrong)")
            let right = try await curl(base + "/ui/login", ["-D", "-", "--data", "token=\(token)"])
            #expect(right.status == 303, "\(right)")
            let setCookie = try #require(right.body.split(separator: "\r\n").first { $0.lowercased().hasPrefix("set-cookie:") })
            for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/"] { #expect(setCookie.contains(attribute), "\(setCookie)") }
            let cookie = String(setCookie.dropFirst("set-cookie: ".count).split(separator: ";")[0])
            #expect(try await curl(base + "/v1/events", ["-H", "Cookie: \(cookie)"]).status == 200)
            let shell = try await curl(base + "/ui/", ["-D", "-", "-H", "Cookie: \(cookie)"])
            #expect(shell.status == 200 && shell.body.lowercased().contains("content-security-policy:"), "\(shell)")
            // The stream for EventSource carries no `event:` line (every kind is a `message`).
            let stream = try await curlStream(base + "/ui/data/stream?after=0", ["-H", "Cookie: \(cookie)"]) { $0.contains("id: 3\n") }
            #expect(stream.contains("id: 1\ndata: {") && !stream.contains("event: "), "\(stream)")

            // Logout ends the session.
            let logout = try await curl(base + "/ui/logout", ["-D", "-", "-X", "POST", "-H", "Cookie: \(cookie)"])
            #expect(logout.status == 303 && logout.body.contains("Max-Age=0"), "\(logout)")
            #expect(try await curl(base + "/v1/events", ["-H", "Cookie: \(cookie)"]).status == 401)
            // The bearer token still works as before.
            #expect(try await curl(base + "/v1/events", ["-H", "Authorization: Bearer \(token)"]).status == 200)
        }
    }

    @Test func onTheUnixSocketTheDashboardNeedsNoLogin() async throws {
        try await withAPI(token: nil) { _, port in
            let page = try await curl("http://127.0.0.1:\(port)/ui/")
            #expect(page.status == 200 && page.body.contains("<main"), "\(page)")
            #expect(try await curl("http://127.0.0.1:\(port)/ui/data/info").body.contains("\"login\":false"))
        }
    }

    @Test func sessionsSurviveARestartAndLogoutEndsThem() throws {
        let dir = try makeTemporaryDirectory("dash")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = DashboardSessions(path: dir + "/ui-sessions")
        let a = first.create()
        let b = first.create()
        #expect(a.id.count == 64 && a.id != b.id)
        let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/ui-sessions")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let second = DashboardSessions(path: dir + "/ui-sessions")
        #expect(second.isValid(a.id) && second.isValid(b.id))
        second.remove(a.id)
        let third = DashboardSessions(path: dir + "/ui-sessions")
        #expect(!third.isValid(a.id) && third.isValid(b.id))
        #expect(!third.isValid("") && !third.isValid(String(repeating: "0", count: 64)))
        // Expired sessions are not valid, nor kept.
        let brief = DashboardSessions(path: nil, lifetime: -1)
        #expect(!brief.isValid(brief.create().id))
    }
}
