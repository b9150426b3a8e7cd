import Foundation
import NMBridgeCore
import TestSupport
import Testing

@testable import DicomStore

/// The Radiopharmaceutical Radiation Dose SR against the standard's tools: dciodvfy
/// (dicom3tools) validates the IOD, DCMTK's dsrdump renders the content tree, and a
/// pydicom script (Tests/Peers/rrdsr_check.py) checks the TID 10021/10022 structure.
@Suite struct RRDSRTests {
    static let utc = TimeZone(identifier: "UTC")!

    static func date(_ text: String) -> Date { Timestamp.parse(text)! }

    /// Builds the report of an image written by the test peer, as the outbound service does.
    static func report(image path: String, nuclide: String, administeredBq: Double, pre: Double?, post: Double?) throws -> RadiationDoseReport {
        let header = try RadiationDoseReport.readHeader(path: path)
        let codes = RadiationDoseReport.codes(in: header, nuclide: nuclide)
        let injection = date("2026-11-29T08:00:00Z")
        var report = RadiationDoseReport(
            image: header, sopInstance: RadiationDoseReport.derivedUID("rrdsr", "test", nuclide),
            seriesInstance: RadiationDoseReport.derivedUID("rrdsr-series", header.string(Tag(0x0020, 0x000D)) ?? ""),
            administrationEventUID: RadiationDoseReport.derivedUID("administration", "test", nuclide),
            agent: try #require(codes.agent, "no agent code"), radionuclide: try #require(codes.radionuclide, "no radionuclide code"),
            halfLifeSeconds: Radionuclide.named(nuclide)!.halfLifeSeconds, administeredBq: administeredBq, injection: injection,
            procedure: RadiationDoseReport.procedure(in: header), created: date("2026-11-29T11:05:00Z"), zone: TimeZone(identifier: "Europe/Zurich")!,
            node: "spect-ws-01", aeTitle: "NMBRIDGE")
        report.route = codes.route
        if let pre {
            report.pre = .init(bq: pre, time: injection.addingTimeInterval(-300), device: "dosecal-hotlab", driver: "capintec-crc35r")
        }
        if let post { report.post = .init(bq: post, time: injection.addingTimeInterval(120), device: "dosecal-hotlab", driver: "capintec-crc35r") }
        return report
    }

    /// dciodvfy's errors (its warnings are printed but allowed), dsrdump's rendering, and the
    /// pydicom check's problems.
    static func validate(_ path: String, check: [String]) async throws -> (errors: [String], dump: String) {
        let verify = try await runToEnd("/usr/bin/dciodvfy", [path])
        let errors = verify.output.split(separator: "\n").map(String.init).filter { $0.hasPrefix("Error") }
        // dciodvfy names the IOD it checked against: the RRDSR's, not a generic SR.
        #expect(verify.output.contains("RadiopharmaceuticalRadiationDoseSR"), "dciodvfy: \(verify.output)")
        let dump = try await runToEnd("/usr/bin/dsrdump", [path])
        #expect(dump.status == 0, "dsrdump: \(dump.output)")
        let checked = try await DicomPeers.run(DicomPeers.python, [repositoryRoot + "/Tests/Peers/rrdsr_check.py", path] + check)
        #expect(checked.status == 0, "rrdsr_check.py: \(checked.output)")
        return (errors, dump.output)
    }

    @Test func aTc99mBoneScanWithCodedAgentRouteAndBothMeasurements() async throws {
        let dir = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = dir + "/nm.dcm"
        let made = try await DicomPeers.python([
            "make-nm", image, "--study-uid", "1.2.826.0.1.3680043.8.498.19.1", "--dose", "650", "--weight", "72", "--size", "1.78",
            "--agent-code", "53951001^SCT^Technetium Tc^99m^ oxidronate", "--route-code", "47625008^SCT^Intravenous route",
        ])
        #expect(made.status == 0, "\(made.output)")
        let report = try Self.report(image: image, nuclide: "Tc-99m", administeredBq: 6.5e8, pre: 7.1e8, post: 4.0e7)
        let written = try report.write(storage: dir + "/storage")
        #expect(written.path.hasPrefix(dir + "/storage/1.2.826.0.1.3680043.8.498.19.1/"), "beside the study's instances: \(written.path)")
        // Written again, the same bytes (its UIDs and dates come from the administration).
        #expect(try report.write(storage: dir + "/storage").sha256 == written.sha256)
        let (errors, dump) = try await Self.validate(
            written.path,
            check: [
                "--agent", "53951001^SCT", "--nuclide", "C-163A8^SRT", "--mbq", "650", "--study-uid", "1.2.826.0.1.3680043.8.498.19.1",
                "--patient-id", "NMB-0001", "--route", "47625008^SCT", "--pre", "--post",
            ])
        #expect(errors.isEmpty, "dciodvfy: \(errors)")
        for text in [
            "Radiopharmaceutical Radiation Dose Report", "Radiopharmaceutical Administration", "Technetium Tc^99m^ oxidronate",
            "Administered activity", "650", "Pre-Administration Measured Activity", "710", "Post-Administration Measured Activity", "40",
            "Dose Calibrator", "dosecal-hotlab", "Intravenous route", "Patient Weight", "72", "Patient Height", "178",
            "20261129090000+0100",
        ] {
            #expect(dump.contains(text), "dsrdump lacks \(text):\n\(dump)")
        }
    }

    @Test func anF18PETStudyCodedFromTheAgentsNameAndRouteText() async throws {
        let dir = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = dir + "/pt.dcm"
        // The console names the agent ("Fluorodeoxyglucose") and the route ("IV") in text only.
        let made = try await DicomPeers.python([
            "make-pt", image, "--study-uid", "1.2.826.0.1.3680043.8.498.19.2", "--dose", "250000000", "--route", "IV",
        ])
        #expect(made.status == 0, "\(made.output)")
        let report = try Self.report(image: image, nuclide: "F-18", administeredBq: 2.48e8, pre: 2.6e8, post: nil)
        let written = try report.write(storage: dir + "/storage")
        let (errors, dump) = try await Self.validate(
            written.path, check: ["--agent", "35321007^SCT", "--nuclide", "C-111A1^SRT", "--mbq", "248", "--route", "47625008^SCT", "--pre"])
        #expect(errors.isEmpty, "dciodvfy: \(errors)")
        #expect(dump.contains("Fluorodeoxyglucose F^18^") && dump.contains("248"), "\(dump)")
        #expect(!dump.contains("Post-Administration"), "no residual was measured: none is reported")
    }

    @Test func anImageWithoutAnyRadiopharmaceuticalGivesNoCodes() async throws {
        let dir = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let made = try await DicomPeers.python(["make-ct", dir + "/ct.dcm", "--rows", "16"])
        #expect(made.status == 0, "\(made.output)")
        let codes = RadiationDoseReport.codes(in: try RadiationDoseReport.readHeader(path: dir + "/ct.dcm"), nuclide: nil)
        #expect(codes.agent == nil && codes.radionuclide == nil && codes.route == nil)
        #expect(RadiationDoseReport.derivedUID("a", "b") == RadiationDoseReport.derivedUID("a", "b"))
        #expect(DICOM.isValidUID(RadiationDoseReport.derivedUID("a", "b")))
        #expect(RadiationDoseReport.decimalString(650.0) == "650" && RadiationDoseReport.decimalString(0.123456789) == "0.1235")
    }
}
