import Foundation
import NMBridgeCore
import TestSupport
import Testing

@testable import DicomStore

/// Hostile peers, from Tests/Peers/dicom_raw.py: PDUs built byte by byte with Python's
/// standard library, so that it sends what no DICOM library would.
enum RawPeer {
    static let script = repositoryRoot + "/Tests/Peers/dicom_raw.py"

    static func run(_ arguments: [String]) async throws -> JSONValue {
        let result = try await DicomPeers.run(DicomPeers.python, [script] + arguments)
        guard result.status == 0, let line = result.output.split(separator: "\n").last else {
            throw DatasetError(message: "dicom_raw.py \(arguments.joined(separator: " ")) failed: \(result.output)")
        }
        return try JSONValue.parse(String(line))
    }
}

@Suite struct DicomHardeningTests {
    /// An AE title is text a terminal may print: `ESC]0;…BEL` retitles the engineer's
    /// window, `ESC[2J` clears it. Such titles are refused (even where any calling AE is
    /// accepted), and what is journaled holds them escaped, never raw.
    @Test(arguments: [
        ("1b5d303b70776e656407", "\\x1B]0;pwned\\x07"),  // ESC ] 0 ; pwned BEL
        ("1b5b324a", "\\x1B[2J"),
        ("4142005a", "AB\\x00Z"),  // NUL inside the title
        ("415c42", "A\\x5CB"),  // backslash: the value separator
        ("c38973", "\\xC3\\x89s"),  // non-ASCII
        ("2020", ""),  // all spaces: no title at all
    ])
    func invalidCallingAETitlesAreRefusedAndJournaledEscaped(hex: String, escaped: String) async throws {
        let rig = try await ReceiverRig.start { $0.acceptAnyCallingAE = true }
        defer { rig.cleanUp() }
        let answer = try await RawPeer.run(["associate", "127.0.0.1", "\(rig.port)", "NMBRIDGE", hex])
        #expect(answer["pdu"] == .string("reject"), "\(answer)")
        #expect(answer["reason"] == .int(3), "calling AE not recognized: \(answer)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.association.rejected").isEmpty })
        let rejected = try #require(rig.sink.events("dicom.association.rejected").first)
        #expect(rejected.data["calling_ae"] == .string(escaped))
        #expect(rejected.data["why"]?.stringValue?.contains("not a valid AE title") == true, "\(rejected.data)")
        for event in rig.sink.drafts.withLock({ $0 }) {
            let text = JSONValue.object(event.data).jsonText + (event.device ?? "")
            #expect(!text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }, "\(text)")
        }
        #expect(rig.sink.events("dicom.association.accepted").isEmpty)
    }

    /// Three datasets that once got 0x0000 (and two of them files dcmdump cannot read):
    /// each is now refused with 0xC000, journaled as failed with the reason, and leaves no
    /// file behind.
    @Test(arguments: [
        ("huge-rows", "cut short"), ("pixel-short", "(7FE0,0010)"), ("unclosed-item", "never closed"),
    ])
    func malformedDatasetsAreRefusedWithC000(kind: String, reason: String) async throws {
        let rig = try await ReceiverRig.start { $0.acceptAnyCallingAE = true }
        defer { rig.cleanUp() }
        let answer = try await RawPeer.run(["store", "127.0.0.1", "\(rig.port)", "NMBRIDGE", "RAWPEER", kind])
        #expect(answer["status"] == .int(0xC000), "\(kind): \(answer)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.instance.failed").isEmpty })
        let failed = try #require(rig.sink.events("dicom.instance.failed").first)
        #expect(failed.data["status"] == .string("0xC000"))
        #expect(failed.data["error"]?.stringValue?.contains(reason) == true, "\(kind): \(failed.data)")
        #expect(rig.sink.events("dicom.instance.stored").isEmpty)
        #expect(rig.storedFiles.isEmpty)
        #expect(DicomPeers.files(under: rig.storage + "/.incoming").filter { !$0.hasSuffix(".ready") }.isEmpty, "no partial file stays")
    }

    /// The control case: the same peer's well-formed dataset is stored.
    @Test func theRawPeersWellFormedDatasetIsStored() async throws {
        let rig = try await ReceiverRig.start { $0.acceptAnyCallingAE = true }
        defer { rig.cleanUp() }
        let answer = try await RawPeer.run(["store", "127.0.0.1", "\(rig.port)", "NMBRIDGE", "RAWPEER", "good"])
        #expect(answer["status"] == .int(0), "\(answer)")
        // The success follows the spool's data sync; the file is put in place and journaled
        // in the background (docs/dicom.md), so look once its event is there.
        #expect(await rig.sink.wait { !rig.sink.events("dicom.instance.stored").isEmpty })
        #expect(rig.storedFiles.count == 1)
        #expect(DicomPeers.files(under: rig.storage + "/.incoming").filter { !$0.hasSuffix(".ready") }.isEmpty, "the staging name is gone once journaled")
    }

    /// A PDU the state does not allow (an A-RELEASE-RP in Sta6: PS3.8 AA-8) is answered with
    /// A-ABORT from the service provider, reason 2 (unexpected PDU), and journaled naming it.
    @Test func anUnexpectedPDUIsAbortedAndJournaled() async throws {
        let rig = try await ReceiverRig.start { $0.acceptAnyCallingAE = true }
        defer { rig.cleanUp() }
        let answer = try await RawPeer.run(["unexpected", "127.0.0.1", "\(rig.port)", "NMBRIDGE", "RAWPEER"])
        #expect(answer == .object(["pdu": .string("abort"), "source": .int(2), "reason": .int(2)]), "\(answer)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.association.aborted").isEmpty })
        let aborted = try #require(rig.sink.events("dicom.association.aborted").first)
        #expect(aborted.data["reason"] == .string("unexpected A-RELEASE-RP in Sta6 (association established)"), "\(aborted.data)")
    }

    /// A sender that asks to release before the last fragment of its dataset (Sta8, where
    /// the table would abort) still gets its C-STORE response, then the A-RELEASE-RP: the
    /// receiver did so before it had a state machine, and keeps doing so (docs/dicom.md).
    @Test func aReleaseRequestedBeforeTheDatasetEndsStillGetsTheResponse() async throws {
        let rig = try await ReceiverRig.start { $0.acceptAnyCallingAE = true }
        defer { rig.cleanUp() }
        let answer = try await RawPeer.run(["release-early", "127.0.0.1", "\(rig.port)", "NMBRIDGE", "RAWPEER"])
        #expect(answer == .object(["status": .int(0), "then": .string("A-RELEASE-RP")]), "\(answer)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.association.released").isEmpty })
        #expect(rig.sink.events("dicom.association.aborted").isEmpty)
    }

    /// Each connection once leaked its handler (a cycle through its timer), about 3.4 KB.
    /// After 300 connections that each send one bad PDU, no handler is left.
    @Test func closedConnectionsFreeTheirHandlers() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let answer = try await RawPeer.run(["flood", "127.0.0.1", "\(rig.port)", "300"])
        #expect(answer["connections"] == .int(300))
        #expect(await rig.sink.wait { rig.shared.liveHandlers.load(ordering: .relaxed) == 0 }, "\(rig.shared.liveHandlers.load(ordering: .relaxed)) handlers still alive")
    }
}

extension DicomHardeningTests {
    /// The escaping of AE titles, byte by byte.
    @Test func aeTitlesAreTrimmedAndEscaped() {
        #expect(PDU.aeTitle(Array("  SPECTCT1      ".utf8)[...]) == "SPECTCT1")
        #expect(PDU.aeTitle(Array("SPECTCT1\0\0\0\0\0\0\0\0".utf8)[...]) == "SPECTCT1", "trailing NUL padding, as some peers send")
        #expect(PDU.aeTitle([0x1B, 0x5B, 0x32, 0x4A][...]) == "\\x1B[2J")
        #expect(PDU.isValidAETitle("SPECT CT-1"))
        for bad in ["", "\\x1B[2J", "A\\x5CB"] { #expect(!PDU.isValidAETitle(bad), "\(bad)") }
    }
}
