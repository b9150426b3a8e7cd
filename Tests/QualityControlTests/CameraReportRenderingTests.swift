import Foundation
import NMBridgeCore
import NMJournal
import TestSupport
import Testing

@testable import NMQualityControl

/// The report's camera section as a browser shows it: floods and a COR acquisition judged
/// by the engine, the HTML printed to PDF by headless Chromium, read back with pdftotext
/// (the text) and pdfimages (the flood pictures, inline PNGs the page's security policy
/// must let through).
@Suite struct CameraReportRenderingTests {
    /// Floods of both heads on three days (head 2 with a deepening cold pixel) and a COR
    /// acquisition on the last, judged; the report of the last day.
    static func report() async throws -> (QCReport, [Event]) {
        let fixture = try QCFixture()
        let engineTests = CameraEngineTests()
        for day in 1...3 {
            let file = Part10Writer.nm(
                frames: [engineTests.floodFrame(cold: 9_950, value: 10_000), engineTests.floodFrame(cold: 10_000 - Double(day) * 400, value: 10_000)],
                rows: 64, columns: 64, spacingMM: 6.4, detectors: [1, 2], description: "Daily flood", sop: "f\(day)")
            try await engineTests.storeFile(
                fixture, file, name: "f\(day)", description: "Daily flood", series: "9.\(day)", at: "2026-11-2\(day)T07:00:00Z", date: "2026112\(day)")
        }
        var random = TestRandom(seed: 1)
        var frames: [[Double]] = []
        for head in 0..<2 {
            for k in 0..<16 {
                let t = (Double(head) * 180 + Double(k) * 22.5) * Double.pi / 180
                let x = 31.5 + 0.3 + 12 * cos(t)
                frames.append((0..<4096).map { i in random.poisson(2000 * exp(-(pow(Double(i % 64) - x, 2) + pow(Double(i / 64) - 30, 2)) / 3) + 1) })
            }
        }
        let cor = Part10Writer.nm(
            frames: frames, rows: 64, columns: 64, spacingMM: 6.8, detectors: [Int](repeating: 1, count: 16) + [Int](repeating: 2, count: 16),
            description: "COR", sop: "c1", imageType: "ORIGINAL\\PRIMARY\\TOMO\\EMISSION", angularStep: 22.5)
        try await engineTests.storeFile(fixture, cor, name: "c1", description: "COR", series: "9.9", at: "2026-11-23T07:30:00Z", date: "20261123")
        var settings = qcSettings()
        var camera = DaemonConfiguration.QualityControl.Camera(id: "camera-1")
        camera.devices = ["spect-1"]
        settings.cameras = [camera]
        let events = try await fixture.judgeAll(settings)
        let report = QCReport(
            events: events, day: LocalDay("2026-11-23")!, node: "nm-1", generated: QCFixture.at("2026-11-23T17:00:00Z"), zone: TimeZone(identifier: "UTC")!)
        return (report, events)
    }

    @Test func textAndCSVCarryTheNumbers() async throws {
        let (report, events) = try await Self.report()
        let text = report.text
        #expect(text.contains("\nCameras\n  camera-1\n"), "\(text)")
        #expect(text.contains("head 2: uniformity 2026-10-25 … 2026-11-23: 3, UFOV IU"), "\(text)")
        let day = events.filter { $0.kind.hasPrefix("qc.camera.") && $0.data["local_date"]?.stringValue == "2026-11-23" }
        #expect(day.count == 4)
        let csvRows = report.csv.split(separator: "\r\n").filter { $0.contains("qc.camera.") }
        #expect(csvRows.count == 4)
        // Head 2 on the last day: cold pixel 8 800 → smoothed 9 700: IU = 100·300/19 700 = 1.52 %.
        #expect(csvRows.contains { $0.contains(",qc.camera.uniformity,camera-1,pass,1.52,%,5/7 %,") }, "\(report.csv)")
        #expect(csvRows.contains { $0.contains(",qc.camera.cor,camera-1,pass,0.") && $0.contains(",px,±0.5/±1 px,") }, "\(report.csv)")
    }

    @Test func chromiumRendersTheCameraSection() async throws {
        let rendering = QCReportRenderingTests()
        let chromium = try #require(rendering.executable(named: ["chromium", "chromium-browser"]), "chromium is not installed (apt-get install chromium)")
        let pdftotext = try #require(rendering.executable(named: ["pdftotext"]), "pdftotext is not installed (apt-get install poppler-utils)")
        let pdfimages = try #require(rendering.executable(named: ["pdfimages"]), "pdfimages is not installed (apt-get install poppler-utils)")
        let dir = try makeTemporaryDirectory("camerareport")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let html = try await Self.report().0.html
        #expect(!html.contains("<script") && html.contains("img-src data:"))
        try await rendering.printToPDF(html, chromium: chromium, in: dir)
        let (textStatus, text) = try await runToEnd(pdftotext, ["-layout", dir + "/r.pdf", "-"])
        try #require(textStatus == 0, "\(text)")
        for expected in [
            "Cameras", "camera-1", "Head 1", "Head 2", "Integral uniformity, head 2 (%)", "COR offset, head 1 (pixels)", "UFOV solid, CFOV dashed",
            "UFOV blue, CFOV dashed yellow", "camera.uniformity", "PASS",
        ] {
            #expect(text.contains(expected), "\(expected) not in the rendered report:\n\(text)")
        }
        // The two flood pictures of the day reach the PDF as 64 × 64 grey images (not blocked).
        let (imagesStatus, images) = try await runToEnd(pdfimages, ["-list", dir + "/r.pdf"])
        try #require(imagesStatus == 0, "\(images)")
        let pictures = images.split(separator: "\n").filter { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return fields.count > 5 && fields[3] == "64" && fields[4] == "64"
        }
        #expect(pictures.count == 2, "\(images)")
    }
}
