import Foundation
import NMBridgeCore
import NMCatalog
import NMJournal
import Testing

@testable import NMQualityControl

/// Writes small NM Part-10 files (Explicit or Implicit VR Little Endian) for the tests.
enum Part10Writer {
    struct Element {
        var tag: UInt32
        var vr: String
        var value: [UInt8]
        /// An undefined-length sequence of items (each a list of elements).
        var items: [[Element]]? = nil
    }

    static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    static func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16((v >> 16) & 0xFFFF) }

    static func text(_ tag: UInt32, _ vr: String, _ s: String) -> Element {
        var bytes = Array(s.utf8)
        if bytes.count % 2 == 1 { bytes.append(vr == "UI" ? 0 : 0x20) }
        return Element(tag: tag, vr: vr, value: bytes)
    }
    static func us(_ tag: UInt32, _ values: [Int]) -> Element { Element(tag: tag, vr: "US", value: values.flatMap(le16)) }
    static func sequence(_ tag: UInt32, _ items: [[Element]]) -> Element { Element(tag: tag, vr: "SQ", value: [], items: items) }

    static func encode(_ e: Element, explicit: Bool) -> [UInt8] {
        var out = le16(Int(e.tag >> 16)) + le16(Int(e.tag & 0xFFFF))
        if let items = e.items {
            out += explicit ? Array("SQ".utf8) + [0, 0] + [0xFF, 0xFF, 0xFF, 0xFF] : [0xFF, 0xFF, 0xFF, 0xFF]
            for item in items {
                out += le16(0xFFFE) + le16(0xE000) + [0xFF, 0xFF, 0xFF, 0xFF]
                for sub in item { out += encode(sub, explicit: explicit) }
                out += le16(0xFFFE) + le16(0xE00D) + [0, 0, 0, 0]
            }
            return out + le16(0xFFFE) + le16(0xE0DD) + [0, 0, 0, 0]
        }
        if explicit {
            out += Array(e.vr.utf8)
            if ["OB", "OW", "SQ", "UN", "UT"].contains(e.vr) {
                out += [0, 0] + le32(e.value.count)
            } else {
                out += le16(e.value.count)
            }
        } else {
            out += le32(e.value.count)
        }
        return out + e.value
    }

    static func file(_ elements: [Element], transferSyntax: String = "1.2.840.10008.1.2.1") -> Data {
        var meta: [UInt8] = []
        for e in [text(0x0002_0001, "OB", "\0\u{1}"), text(0x0002_0002, "UI", "1.2.840.10008.5.1.4.1.1.20"), text(0x0002_0010, "UI", transferSyntax)] {
            meta += encode(e, explicit: true)
        }
        var out = [UInt8](repeating: 0, count: 128) + Array("DICM".utf8)
        out += encode(Element(tag: 0x0002_0000, vr: "UL", value: le32(meta.count)), explicit: true) + meta
        let explicit = transferSyntax != "1.2.840.10008.1.2"
        for e in elements.sorted(by: { $0.tag < $1.tag }) { out += encode(e, explicit: explicit) }
        return Data(out)
    }

    /// An NM image: `frames` of rows × columns 16-bit counts, with its Detector Vector.
    static func nm(
        frames: [[Double]], rows: Int, columns: Int, spacingMM: Double, detectors: [Int], description: String, sop: String = "1.2.3.9.1",
        imageType: String = "ORIGINAL\\PRIMARY\\STATIC\\EMISSION", angularStep: Double? = nil, transferSyntax: String = "1.2.840.10008.1.2.1"
    ) -> Data {
        var pixels: [UInt8] = []
        pixels.reserveCapacity(frames.count * rows * columns * 2)
        for frame in frames { for v in frame { pixels += le16(Int(min(max(v.rounded(), 0), 65535))) } }
        var elements = [
            text(0x0008_0008, "CS", imageType), text(0x0008_0016, "UI", "1.2.840.10008.5.1.4.1.1.20"), text(0x0008_0018, "UI", sop),
            text(0x0008_0060, "CS", "NM"), text(0x0008_103E, "LO", description), text(0x0010_0010, "PN", "QC^FLOOD"), text(0x0010_0020, "LO", "QC"),
            us(0x0028_0002, [1]), text(0x0028_0004, "CS", "MONOCHROME2"), text(0x0028_0008, "IS", "\(frames.count)"), us(0x0028_0010, [rows]),
            us(0x0028_0011, [columns]), text(0x0028_0030, "DS", "\(spacingMM)\\\(spacingMM)"), us(0x0028_0100, [16]), us(0x0028_0101, [16]),
            us(0x0028_0102, [15]), us(0x0028_0103, [0]), us(0x0054_0020, detectors), us(0x0054_0021, [Set(detectors).count]),
            Element(tag: 0x7FE0_0010, vr: "OW", value: pixels),
        ]
        elements.append(sequence(0x0054_0022, Set(detectors).sorted().map { d in [text(0x0054_0200, "DS", "\(d == 1 ? 0 : 180)")] }))
        if let angularStep {
            elements.append(
                sequence(
                    0x0054_0052,
                    [[text(0x0018_1140, "CS", "CW"), text(0x0018_1144, "DS", "\(angularStep)"), us(0x0054_0053, [frames.count / Set(detectors).count])]]))
        }
        return file(elements, transferSyntax: transferSyntax)
    }
}

/// The camera rules in the engine, on stored files in a temporary directory.
@Suite struct CameraEngineTests {
    func settings(heads: Int = 2) -> DaemonConfiguration.QualityControl {
        var s = qcSettings()
        var camera = DaemonConfiguration.QualityControl.Camera(id: "camera-1")
        camera.devices = ["spect-1"]
        camera.heads = heads
        s.cameras = [camera]
        return s
    }

    /// A 64 × 64 flood at 6.4 mm, field 4…59, with a cold pixel of `cold` at (30, 30).
    func floodFrame(cold: Double = 900, value: Double = 1000) -> [Double] {
        var frame = [Double](repeating: 0, count: 64 * 64)
        for r in 4...59 { for c in 4...59 { frame[r * 64 + c] = value } }
        frame[30 * 64 + 30] = cold
        return frame
    }

    @discardableResult
    func storeFile(_ fixture: QCFixture, _ data: Data, name: String, description: String, series: String, at time: String, date: String = "20261129")
        async throws -> Event
    {
        let path = fixture.directory + "/" + name + ".dcm"
        try data.write(to: URL(fileURLWithPath: path))
        var fields: [String: JSONValue] = [
            "sop_instance_uid": .string(name), "series_uid": .string(series), "study_uid": .string(series + ".0"), "modality": .string("NM"),
            "patient_id": .string("QC"), "series_description": .string(description), "transfer_syntax": .string("1.2.840.10008.1.2.1"),
            "bytes": .int(Int64(data.count)), "sha256": .string("00"), "path": .string(path), "calling_ae": .string("CONSOLE"),
            "peer": .string("127.0.0.1"), "acquisition_date": .string(date), "acquisition_time": .string("070000"),
        ]
        fields["station_name"] = .string("NM1")
        return try await fixture.journal.append(
            EventDraft(time: QCFixture.at(time), device: "spect-1", driver: "dicom", kind: "dicom.instance.stored", data: fields))
    }

    @Test func twoHeadMultiFrameFloodGivesOneFindingPerHead() async throws {
        let fixture = try QCFixture()
        let file = Part10Writer.nm(
            frames: [floodFrame(cold: 900), floodFrame(cold: 800)], rows: 64, columns: 64, spacingMM: 6.4, detectors: [1, 2], description: "Daily FLOOD Co57")
        try await storeFile(fixture, file, name: "flood1", description: "Daily FLOOD Co57", series: "9.1", at: "2026-11-29T07:00:00Z")
        let events = try await fixture.judgeAll(settings())
        let floods = events.filter { $0.kind == "qc.camera.uniformity" }
        #expect(floods.count == 2)
        #expect(!events.contains { $0.kind.hasPrefix("qc.administration") || $0.kind.hasPrefix("qc.protocol") })
        let h1 = try #require(floods.first { $0.data["head"]?.intValue == 1 })
        let h2 = try #require(floods.first { $0.data["head"]?.intValue == 2 })
        // Head 1: cold pixel 900 → 975 smoothed: 1.27 %; head 2: 800 → 950: 100·50/1950 = 2.56 %.
        #expect(h1.data["ufov"]?["integral_pct"]?.doubleValue == 1.27)
        #expect(h2.data["ufov"]?["integral_pct"]?.doubleValue == 2.56)
        #expect(h1.device == "camera-1" && h1.data["camera"]?.stringValue == "camera-1")
        #expect(h1.data["sop_instance_uid"]?.stringValue == "flood1")
        #expect(h1.data["local_date"]?.stringValue == "2026-11-29")
        #expect(h1.data["pixel_mm"]?.doubleValue == 6.4)
        #expect(h1.data["total_counts"]?.doubleValue == 3_135_900, "\(String(describing: h1.data["total_counts"]))")
        // 1000 counts per pixel: noise alone about 4 %, at least 75 % of the 5 % limit.
        #expect(h1.data["low_counts"] == .bool(true))
        #expect(h1.data["result"]?.stringValue == "pass")
        #expect(h1.data["map"]?["rows"]?.intValue == 64)
        for event in floods { #expect(EventKindRegistry.standard.problems(kind: event.kind, data: event.data).isEmpty) }
    }

    @Test func beyondALimitWithFewCountsIsLowCountsWithManyCountsInvestigate() async throws {
        let fixture = try QCFixture()
        // A cold pixel at 60 % smooths to 90 %: IU = DU = 100·10/190 = 5.26 %, beyond the UFOV
        // investigate limit and the CFOV DU fail limit (5 %). At 1000 counts a pixel the noise
        // alone gives about 4 %: low_counts; at 60 000 counts a pixel (0.5 %): fail.
        let low = Part10Writer.nm(frames: [floodFrame(cold: 600)], rows: 64, columns: 64, spacingMM: 6.4, detectors: [1], description: "FLOOD", sop: "a")
        let high = Part10Writer.nm(
            frames: [floodFrame(cold: 36000, value: 60000)], rows: 64, columns: 64, spacingMM: 6.4, detectors: [1], description: "FLOOD", sop: "b")
        try await storeFile(fixture, low, name: "low", description: "FLOOD", series: "9.2", at: "2026-11-29T07:00:00Z")
        try await storeFile(fixture, high, name: "high", description: "FLOOD", series: "9.3", at: "2026-11-29T07:10:00Z")
        let floods = try await fixture.judgeAll(settings(heads: 1)).filter { $0.kind == "qc.camera.uniformity" }
        #expect(floods.map { $0.data["result"]?.stringValue } == ["low_counts", "fail"])
        #expect(floods[0].severity == .notice && floods[1].severity == .error)
    }

    @Test func patientStudyWithoutAPassingFloodThatDayIsQCMissing() async throws {
        let fixture = try QCFixture()
        // 08:00 a patient study, no flood yet → missing; 09:00 a flood of both heads (pass);
        // 10:00 another patient study → nothing; 10:05 a second instance of the first series → nothing.
        try await fixture.store(study: "5", series: "5.1", at: "2026-11-29T08:00:00Z", pharma: tcMDP)
        let flood = Part10Writer.nm(
            frames: [floodFrame(cold: 19_900, value: 20000), floodFrame(cold: 19_900, value: 20000)], rows: 64, columns: 64,
            spacingMM: 6.4, detectors: [1, 2], description: "Daily flood")
        try await storeFile(fixture, flood, name: "flood", description: "Daily flood", series: "9.4", at: "2026-11-29T09:00:00Z")
        try await fixture.store(study: "6", series: "5.2", at: "2026-11-29T10:00:00Z", pharma: tcMDP)
        try await fixture.store(study: "5", series: "5.1", at: "2026-11-29T10:05:00Z", pharma: tcMDP)
        // Patient studies are judged when the receiver reports them stable.
        try await fixture.stable("5", at: "2026-11-29T10:10:00Z")
        try await fixture.stable("6", at: "2026-11-29T10:11:00Z")
        let events = try await fixture.judgeAll(settings())
        let missing = events.filter { $0.kind == "qc.camera.qc_missing" }
        #expect(missing.count == 1)
        #expect(missing.first?.data["series_uid"]?.stringValue == "5.1")
        #expect(missing.first?.data["heads_missing"] == .array([.int(1), .int(2)]))
        #expect(events.filter { $0.kind == "qc.camera.uniformity" }.allSatisfy { $0.data["result"]?.stringValue == "pass" })
        // The patient studies are still judged as patient studies (once each, when stable).
        #expect(events.filter { $0.kind == "qc.administration.reconciled" }.map { $0.data["study_uid"]?.stringValue } == ["5", "6"])
        for event in missing { #expect(EventKindRegistry.standard.problems(kind: event.kind, data: event.data).isEmpty) }
    }

    @Test func judgingAgainGivesTheSameFindings() async throws {
        let fixture = try QCFixture()
        for day in 1...3 {
            let file = Part10Writer.nm(
                frames: [floodFrame(cold: 10000 - Double(day) * 100, value: 10000)], rows: 64, columns: 64,
                spacingMM: 6.4, detectors: [1], description: "FLOOD", sop: "s\(day)")
            try await storeFile(
                fixture, file, name: "f\(day)", description: "FLOOD", series: "9.\(day)", at: "2026-11-2\(day)T07:00:00Z", date: "2026112\(day)")
        }
        try await fixture.store(series: "5.9", at: "2026-11-23T08:00:00Z", pharma: tcMDP, acquisition: ("20261123", "080000"))
        let first = try await fixture.judgeAll(settings(heads: 1))
        // A second engine judging every event again (as after a crash before the cursor was saved).
        var engine = QCEngine(settings: settings(heads: 1), zone: TimeZone(identifier: "UTC")!, journal: fixture.journal)
        let inputs = try await fixture.journal.events(EventQuery(filter: EventFilter(kinds: QCEngine.inputKinds), limit: 1000)).events
        var again: [EventDraft] = []
        for event in inputs { again += try await engine.judge(event) }
        #expect(again.count == first.count)
        for (a, b) in zip(again, first) {
            #expect(a.kind == b.kind && a.time == b.time && a.device == b.device)
            // Compared as journaled: a whole double comes back from the journal as an integer.
            let journaled = try JSONValue.parse(JSONValue.object(a.data).jsonText)
            #expect(journaled == .object(b.data), "\(a.kind)")
        }
        // The third flood has a baseline of the two before it.
        let third = try #require(first.last { $0.kind == "qc.camera.uniformity" })
        #expect(third.data["baseline_floods"]?.intValue == 2)
    }

    @Test func compressedAndHostileFilesAreFindingsNotCrashes() async throws {
        let fixture = try QCFixture()
        let compressed = Part10Writer.nm(
            frames: [floodFrame()], rows: 64, columns: 64, spacingMM: 6.4, detectors: [1], description: "FLOOD", transferSyntax: "1.2.840.10008.1.2.4.70")
        try await storeFile(fixture, compressed, name: "jpeg", description: "FLOOD", series: "9.5", at: "2026-11-29T07:00:00Z")
        let events = try await fixture.judgeAll(settings(heads: 1))
        #expect(events.count == 1)
        #expect(events[0].data["result"]?.stringValue == "not_judged")
        #expect(events[0].data["finding"]?.stringValue?.contains("1.2.840.10008.1.2.4.70") == true)
        // Every truncation and a flipped byte of a good file: an error or a value, never a crash.
        let good = Part10Writer.nm(frames: [floodFrame()], rows: 64, columns: 64, spacingMM: 6.4, detectors: [1], description: "FLOOD")
        let bytes = [UInt8](good)
        for cut in stride(from: 0, to: 600, by: 1) { _ = try? NMImageFile.parse(Data(bytes.prefix(cut)), path: "cut") }
        var random = TestRandom(seed: 3)
        for _ in 0..<300 {
            var mutated = bytes
            for _ in 0..<4 { mutated[132 + Int(random.next() % 500)] = UInt8(random.next() & 0xFF) }
            if let file = try? NMImageFile.parse(Data(mutated), path: "fuzz") { _ = file.floodPerHead() }
        }
        #expect(throws: CameraQCError.self) { try NMImageFile.parse(Data(bytes.prefix(bytes.count - 10)), path: "short") }
        // More pixels than camera QC decodes: refused before anything is allocated.
        #expect(throws: CameraQCError.self) { try NMImageFile.parse(Data(bytes), path: "big", maximumPixels: 64 * 64 - 1) }
        #expect(try NMImageFile.parse(Data(bytes), path: "fits", maximumPixels: 64 * 64).frames == 1)
    }

    @Test func implicitVRFileReadsLikeExplicit() throws {
        let explicit = try NMImageFile.parse(
            Part10Writer.nm(frames: [floodFrame(), floodFrame(cold: 800)], rows: 64, columns: 64, spacingMM: 3.2, detectors: [2, 1], description: "FLOOD"),
            path: "e")
        let implicit = try NMImageFile.parse(
            Part10Writer.nm(
                frames: [floodFrame(), floodFrame(cold: 800)], rows: 64, columns: 64, spacingMM: 3.2, detectors: [2, 1], description: "FLOOD",
                transferSyntax: "1.2.840.10008.1.2"), path: "i")
        for file in [explicit, implicit] {
            #expect(file.rows == 64 && file.frames == 2 && file.detectorVector == [2, 1] && file.columnSpacingMM == 3.2)
            #expect(file.seriesDescription == "FLOOD" && file.imageType == ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"])
            let heads = file.floodPerHead()
            #expect(heads.map(\.head) == [1, 2])
            #expect(heads[0].image[30, 30] == 800 && heads[1].image[30, 30] == 900)
            #expect(file.detectorStartAnglesDeg == [0, 180])
        }
    }

    @Test func corAcquisitionOfTwoHeads() async throws {
        let fixture = try QCFixture()
        var random = TestRandom(seed: 11)
        // 32 projections per head over 360° (step 11.25°), head 2 opposite; head 1 offset +0.8 px, head 2 −0.4 px.
        var frames: [[Double]] = []
        var detectors: [Int] = []
        for (head, offset, start) in [(1, 0.8, 0.0), (2, -0.4, 180.0)] {
            for k in 0..<32 {
                let t = (start + Double(k) * 11.25) * Double.pi / 180
                let x = 31.5 + offset + 12 * cos(t + 0.3), y = 28.0
                frames.append(
                    (0..<(64 * 64)).map { i in
                        let d2 = pow(Double(i % 64) - x, 2) + pow(Double(i / 64) - y, 2)
                        return random.poisson(3000 * exp(-d2 / 3) + 1)
                    })
                detectors.append(head)
            }
        }
        let file = Part10Writer.nm(
            frames: frames, rows: 64, columns: 64, spacingMM: 6.8, detectors: detectors, description: "COR point source",
            imageType: "ORIGINAL\\PRIMARY\\TOMO\\EMISSION", angularStep: 11.25)
        try await storeFile(fixture, file, name: "cor", description: "COR point source", series: "9.6", at: "2026-11-29T07:30:00Z")
        let events = try await fixture.judgeAll(settings())
        let cors = events.filter { $0.kind == "qc.camera.cor" }
        #expect(cors.count == 2)
        let h1 = try #require(cors.first { $0.data["head"]?.intValue == 1 }), h2 = try #require(cors.first { $0.data["head"]?.intValue == 2 })
        #expect(abs((h1.data["offset_px"]?.doubleValue ?? 0) - 0.8) < 0.05)
        #expect(abs((h2.data["offset_px"]?.doubleValue ?? 0) + 0.4) < 0.05)
        #expect(abs((h1.data["offset_mm"]?.doubleValue ?? 0) - 0.8 * 6.8) < 0.05 * 6.8)
        #expect(h1.data["result"]?.stringValue == "investigate" && h2.data["result"]?.stringValue == "pass")
        #expect(!events.contains { $0.kind == "qc.camera.qc_missing" })  // a QC acquisition is not a patient study
        for event in cors { #expect(EventKindRegistry.standard.problems(kind: event.kind, data: event.data).isEmpty) }
    }
}
