import Foundation
import NMQualityControl
import TestSupport
import Testing

/// The HTML report as a browser shows it: printed to PDF by headless Chromium, read back
/// as text with pdftotext. scripts/test installs both; the test fails without them.
@Suite struct QCReportRenderingTests {
    @Test func chromiumRendersTheReportWithItsChart() async throws {
        let chromium = try #require(
            executable(named: ["chromium", "chromium-browser"]), "chromium is not installed (scripts/test installs it: apt-get install chromium)")
        let pdftotext = try #require(
            executable(named: ["pdftotext"]), "pdftotext is not installed (scripts/test installs it: apt-get install poppler-utils)")
        let dir = try makeTemporaryDirectory("qcreport")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await printToPDF(QCReportTests.report().html, chromium: chromium, in: dir)
        let (pdfStatus, text) = try await runToEnd(pdftotext, ["-layout", dir + "/r.pdf", "-"])
        try #require(pdfStatus == 0, "\(text)")

        for expected in [
            "QC report 2026-11-29", "dosecal-hotlab", "dosecal-pet", "-0.42 %", "+12.50 %", "FAIL", "MISSED", "TOO LATE",
            "Study 1.2.3", "<script>alert('x')</script>",  // hostile text shown as text
            "constancy deviation (%)", "site-local date (Europe/Berlin)", "11-29", "+10 %", "fail ±10 %", "investigate ±5 %",
        ] {
            #expect(text.contains(expected), "\(expected) not in the rendered report:\n\(text)")
        }
    }

    /// The first of `names` found on PATH (or in /usr/bin).
    /// Writes `html` to `dir/r.html` and prints it to `dir/r.pdf` in headless Chromium.
    func printToPDF(_ html: String, chromium: String, in dir: String) async throws {
        try html.write(toFile: dir + "/r.html", atomically: true, encoding: .utf8)
        let status = try await runKillingAfter(
            .seconds(120), chromium,
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=\(dir)/profile",
                "--no-pdf-header-footer", "--print-to-pdf=\(dir)/r.pdf", "file://\(dir)/r.html",
            ], log: dir + "/chromium.log")
        let log = (try? String(contentsOfFile: dir + "/chromium.log", encoding: .utf8)) ?? ""
        try #require(status == 0 && FileManager.default.fileExists(atPath: dir + "/r.pdf"), "chromium exited with \(status):\n\(log)")
    }

    func executable(named names: [String]) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/bin:/bin"
        for name in names {
            for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
                return "\(dir)/\(name)"
            }
        }
        return nil
    }

    /// Runs a program on a thread of its own (off the cooperative pool), its output to
    /// `log`, and SIGKILLs it if it has not exited after `limit` (a hang guard: a file for
    /// the output, not a pipe, so that a stray child cannot keep us waiting).
    func runKillingAfter(_ limit: Duration, _ executable: String, _ arguments: [String], log: String) async throws -> Int32 {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        return try await withCheckedThrowingContinuation { continuation in
            Thread {
                do {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: executable)
                    process.arguments = arguments
                    let output = FileHandle(forWritingAtPath: log)
                    process.standardOutput = output
                    process.standardError = output
                    process.standardInput = FileHandle.nullDevice
                    try process.runBoundToTest()
                    let deadline = ContinuousClock.now + limit
                    while process.isRunning {
                        if ContinuousClock.now > deadline { kill(-process.processIdentifier, SIGKILL) }  // Chromium's children too
                        usleep(20_000)
                    }
                    try? output?.close()
                    continuation.resume(returning: process.terminationStatus)
                } catch {
                    continuation.resume(throwing: error)
                }
            }.start()
        }
    }
}
