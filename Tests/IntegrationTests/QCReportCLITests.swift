import Foundation
import NMBridgeCore
import Testing

/// `nmbridge qc report` against a daemon whose calibrator (the built-in `dosecal-demo`
/// script) measures its Cs-137 check source shortly after the start: a passing constancy
/// check. No fixed ports: tests run in parallel.
@Suite struct QCReportCLITests {
    let cli = productsDirectory + "/nmbridge"

    @Test func reportShowsTheConstancyCheck() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The script's 7.0485 MBq is what this source should read today.
        let daemon = try await DaemonProcess.start(
            directory: dir,
            config: daemonConfig(
                dir,
                devices: """
                    [[device]]
                    id = "dosecal-hotlab"
                    driver = "script"
                    builtin = "dosecal-demo"
                    """,
                extra: qcWithCheckSource(device: "dosecal-hotlab", readsTodayBq: 7.0485e6, certifiedDaysAgo: 100)))
        let socket = ["--socket", daemon.socketPath]

        // Generous: a loaded machine may take a while.
        var check: Event?
        let deadline = ContinuousClock.now + .seconds(90)
        while check == nil, ContinuousClock.now < deadline {
            check = try await daemon.allEvents(filter: "&kind=qc.dosecal.constancy").first { $0.device == "dosecal-hotlab" }
            if check == nil { try await Task.sleep(for: .milliseconds(500)) }
        }
        let constancy = try #require(check, "no qc.dosecal.constancy from dosecal-hotlab within 90 s:\n\(daemon.log.suffix(3000))")
        let localDate = try #require(constancy.data["local_date"]?.stringValue)

        let csv = try await runProgram(cli, socket + ["qc", "report", "--date", "today", "--format", "csv"])
        #expect(csv.status == 0, "\(csv.stderr)")
        let rows = csv.stdout.split(separator: "\r\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.first?.prefix(5) == ["local_date", "time", "kind", "device", "result"])
        let row = try #require(rows.first { $0.count > 6 && $0[2] == "qc.dosecal.constancy" && $0[3] == "dosecal-hotlab" }, "\(csv.stdout)")
        #expect(row[0] == localDate && row[4] == "pass" && row[6] == "%", "\(row)")
        #expect(Double(row[5]) == constancy.data["deviation_pct"]?.doubleValue, "\(row)")

        let text = try await runProgram(cli, ["qc", "report", "--format", "text"] + socket)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.hasPrefix("QC report \(localDate) — node "), "\(text.stdout)")
        let lines = text.stdout.split(separator: "\n").map(String.init)
        let section = try #require(lines.firstIndex(of: "Dose calibrators"), "\(text.stdout)")
        let hotlab = try #require(lines[section...].firstIndex(of: "  dosecal-hotlab"), "\(text.stdout)")
        #expect(lines[(hotlab + 1)...].prefix(4).contains { $0.contains("constancy") && $0.contains("PASS") && $0.contains("CS137-0042") }, "\(text.stdout)")

        let html = try await runProgram(cli, socket + ["qc", "report", "--date", localDate, "--format", "html", "--output", dir + "/r.html"])
        #expect(html.status == 0 && html.stdout.isEmpty, "\(html.stderr)")
        let page = try String(contentsOfFile: dir + "/r.html", encoding: .utf8)
        #expect(page.contains("<h3>dosecal-hotlab</h3>") && page.contains("<svg class=\"chart\""))

        let bad = try await runProgram(cli, socket + ["qc", "report", "--date", "2026-13-45"])
        #expect(bad.status == 64 && bad.stderr.contains("--date 2026-13-45: expected today, yesterday or a date YYYY-MM-DD"), "\(bad.stderr)")
        let unreachable = try await runProgram(cli, ["--socket", dir + "/nope.sock", "qc", "report"])
        #expect(unreachable.status == 1 && unreachable.stderr.contains(dir + "/nope.sock"), "\(unreachable.stderr)")
        _ = try? await daemon.stop()
    }
}
