import Foundation
import NMBridgeCore
import TestSupport
import Testing

@testable import DicomStore

@Suite struct PDUTests {
    static let request = AssociateRequest(
        calledAE: "NMBRIDGE", callingAE: "SPECTCT1", applicationContext: DICOM.applicationContext,
        contexts: [
            ProposedContext(id: 1, abstractSyntax: DICOM.verification, transferSyntaxes: [DICOM.TransferSyntax.implicitLittle]),
            ProposedContext(
                id: 3, abstractSyntax: "1.2.840.10008.5.1.4.1.1.20",
                transferSyntaxes: [DICOM.TransferSyntax.explicitLittle, DICOM.TransferSyntax.implicitLittle]),
        ],
        maxPDULength: 16384, implementationClassUID: "1.2.3.4", implementationVersionName: nil, asyncOperations: nil, roles: [])

    @Test func anAssociationRequestSurvivesARoundTrip() throws {
        let bytes = PDU.associateRequest(Self.request).encoded()
        #expect(bytes[0] == 0x01)
        #expect(Int(bytes[2]) << 24 | Int(bytes[3]) << 16 | Int(bytes[4]) << 8 | Int(bytes[5]) == bytes.count - 6)
        #expect(try PDU.decode(type: bytes[0], body: bytes[6...]) == .associateRequest(Self.request))
    }

    @Test func anAcceptAnswersAsyncAndRolesAndSurvivesARoundTrip() throws {
        let accept = AssociateAccept(
            calledAE: "NMBRIDGE", callingAE: "SPECTCT1",
            contexts: [AcceptedContext(id: 3, result: .acceptance, transferSyntax: DICOM.TransferSyntax.explicitLittle)],
            maxPDULength: 262_144, implementationClassUID: DICOM.implementationClassUID,
            implementationVersionName: DICOM.implementationVersionName, asyncOperations: (1, 1),
            roles: [RoleSelection(sopClass: "1.2.840.10008.5.1.4.1.1.20", scu: true, scp: false)])
        let bytes = PDU.associateAccept(accept).encoded()
        #expect(try PDU.decode(type: bytes[0], body: bytes[6...]) == .associateAccept(accept))
    }

    @Test func dataFragmentsKeepTheirFlags() throws {
        let pdvs = [
            PDV(contextID: 1, isCommand: true, isLast: true, bytes: [1, 2, 3]),
            PDV(contextID: 3, isCommand: false, isLast: false, bytes: Array(repeating: 7, count: 1000)),
        ]
        let bytes = PDU.data(pdvs).encoded()
        #expect(try PDU.decode(type: 4, body: bytes[6...]) == .data(pdvs))
    }

    @Test(arguments: [
        ([UInt8](), "P-DATA-TF without any PDV"),
        ([0, 0, 0, 1, 1], "shorter than its 2-byte header"),
        ([0xFF, 0xFF, 0xFF, 0xFF, 1, 3], "claims 4294967295 bytes"),
        ([0, 0, 0, 2, 2, 3], "is even"),
    ])
    func badDataPDUsAreErrors(body: [UInt8], message: String) {
        #expect(throws: PDUError.self) { try PDU.decode(type: 4, body: body[...]) }
        do {
            _ = try PDU.decode(type: 4, body: body[...])
        } catch {
            #expect(error.message.contains(message), "\(error.message)")
        }
    }

    @Test func decodingIsTotal() {
        var generator = SeededGenerator(state: 0xD1C0)
        let valid = PDU.associateRequest(Self.request).encoded()
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0...300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            } else {
                // A valid request with a few bytes changed or cut.
                bytes = valid
                for _ in 0..<Int.random(in: 1...6, using: &generator) {
                    bytes[Int.random(in: 6..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
                bytes = Array(bytes.prefix(Int.random(in: 6...bytes.count, using: &generator)))
            }
            for type in UInt8(1)...7 { _ = try? PDU.decode(type: type, body: bytes.dropFirst(min(6, bytes.count))) }
        }
    }
}

@Suite struct CommandTests {
    @Test func aStoreResponseRoundTrips() throws {
        let response = Command(
            field: Command.cStoreResponse, respondingTo: 7, affectedSOPClass: "1.2.840.10008.5.1.4.1.1.20",
            affectedSOPInstance: "1.2.3.4.5", status: DICOM.Status.dataSetDoesNotMatchSOPClass)
        let bytes = response.encoded()
        // (0000,0000) UL group length = the bytes after it.
        #expect(bytes.count - 12 == Int(bytes[8]) | Int(bytes[9]) << 8)
        #expect(try Command.decode(bytes) == response)
    }

    @Test func aCommandWithoutAFieldIsAnError() {
        #expect(throws: DatasetError.self) { try Command.decode([0x00, 0x00, 0x10, 0x01, 2, 0, 0, 0, 1, 0]) }
    }
}

/// Builds dataset bytes by hand, independently of the reader.
struct DatasetBuilder {
    var bytes: [UInt8] = []
    let explicit: Bool

    mutating func tag(_ g: UInt16, _ e: UInt16) { bytes += [UInt8(g & 0xFF), UInt8(g >> 8), UInt8(e & 0xFF), UInt8(e >> 8)] }
    mutating func u32(_ v: UInt32) { bytes += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)] }

    mutating func text(_ g: UInt16, _ e: UInt16, _ vr: String, _ value: String) {
        var raw = Array(value.utf8)
        if raw.count % 2 == 1 { raw.append(vr == "UI" ? 0 : 0x20) }
        tag(g, e)
        if explicit {
            bytes += Array(vr.utf8) + [UInt8(raw.count & 0xFF), UInt8(raw.count >> 8)]
        } else {
            u32(UInt32(raw.count))
        }
        bytes += raw
    }

    /// A sequence of undefined length whose items are undefined-length too.
    mutating func sequence(_ g: UInt16, _ e: UInt16, items: [[UInt8]]) {
        tag(g, e)
        if explicit { bytes += Array("SQ".utf8) + [0, 0] }
        u32(0xFFFF_FFFF)
        for item in items {
            tag(0xFFFE, 0xE000)
            u32(0xFFFF_FFFF)
            bytes += item
            tag(0xFFFE, 0xE00D)
            u32(0)
        }
        tag(0xFFFE, 0xE0DD)
        u32(0)
    }
}

@Suite struct DatasetReaderTests {
    func nmDataset(explicit: Bool, dose: String = "740", sopClass: String = "1.2.840.10008.5.1.4.1.1.20") -> [UInt8] {
        var code = DatasetBuilder(explicit: explicit)
        code.text(0x0008, 0x0100, "SH", "C-163A8")
        code.text(0x0008, 0x0104, "LO", "^99m^Technetium")
        var range = DatasetBuilder(explicit: explicit)
        range.text(0x0054, 0x0014, "DS", "126")
        range.text(0x0054, 0x0015, "DS", "154")
        var window = DatasetBuilder(explicit: explicit)
        window.sequence(0x0054, 0x0013, items: [range.bytes])
        window.text(0x0054, 0x0018, "SH", "Tc99m")
        var radiopharmaceutical = DatasetBuilder(explicit: explicit)
        radiopharmaceutical.text(0x0018, 0x0031, "LO", "Tc99m MDP")
        radiopharmaceutical.text(0x0018, 0x1072, "TM", "101500")
        radiopharmaceutical.text(0x0018, 0x1074, "DS", dose)
        radiopharmaceutical.sequence(0x0054, 0x0300, items: [code.bytes])
        var top = DatasetBuilder(explicit: explicit)
        top.text(0x0008, 0x0016, "UI", sopClass)
        top.text(0x0008, 0x0018, "UI", "1.2.3.4.5")
        top.text(0x0008, 0x0060, "CS", "NM")
        top.text(0x0010, 0x0010, "PN", "Doe^Jane")
        top.text(0x0020, 0x000D, "UI", "1.2.3")
        top.text(0x0028, 0x0008, "IS", "120")
        top.sequence(0x0054, 0x0012, items: [window.bytes])
        top.sequence(0x0054, 0x0016, items: [radiopharmaceutical.bytes])
        top.tag(0x7FE0, 0x0010)
        top.u32(0xFFFF_FFF0)  // pixel data is never looked at, whatever its length claims
        return top.bytes
    }

    @Test(arguments: [false, true])
    func nestedSequencesInEitherVR(explicit: Bool) throws {
        var reader = DatasetReader(bytes: nmDataset(explicit: explicit), encoding: explicit ? .explicitLittle : .implicitLittle)
        let fields = InstanceSummary.fields(of: try reader.read())
        #expect(fields["modality"] == .string("NM"))
        #expect(fields["patient_name"] == .string("Doe^Jane"))
        #expect(fields["number_of_frames"] == .int(120))
        let rp = fields["radiopharmaceutical"]?.objectValue
        #expect(rp?["nuclide"] == .string("Tc-99m"))
        #expect(rp?["total_dose_bq"] == .double(740e6))
        #expect(rp?["agent"] == .string("Tc99m MDP"))
        #expect(fields["energy_windows"] == .array([.object(["lower_kev": .double(126), "upper_kev": .double(154), "name": .string("Tc99m")])]))
        #expect(!reader.truncated)
    }

    @Test func anNMDoseThatLooksLikeBecquerelIsFlaggedNotRescaled() throws {
        var reader = DatasetReader(bytes: nmDataset(explicit: true, dose: "203000000"), encoding: .explicitLittle)
        let rp = InstanceSummary.fields(of: try reader.read())["radiopharmaceutical"]?.objectValue
        #expect(rp?["total_dose_bq"] == .double(203e12))
        #expect(rp?["total_dose_suspect"]?.stringValue?.contains("may hold Bq") == true)
    }

    @Test func aPETDoseIsInBecquerel() throws {
        var reader = DatasetReader(
            bytes: nmDataset(explicit: true, dose: "370000000", sopClass: "1.2.840.10008.5.1.4.1.1.128"), encoding: .explicitLittle)
        let rp = InstanceSummary.fields(of: try reader.read())["radiopharmaceutical"]?.objectValue
        #expect(rp?["total_dose_bq"] == .double(370e6))
        #expect(rp?["total_dose_suspect"] == nil)
        #expect(rp?["total_dose_unit_rule"]?.stringValue?.hasPrefix("PET Image: Bq") == true)
    }

    @Test func aPrefixGivesWhatItHoldsAndSaysSo() throws {
        let bytes = nmDataset(explicit: true)
        var reader = DatasetReader(bytes: Array(bytes.prefix(60)), encoding: .explicitLittle)
        let dataset = try reader.read()
        #expect(reader.truncated)
        #expect(dataset.string(Tag(0x0008, 0x0016)) == "1.2.840.10008.5.1.4.1.1.20")
    }

    @Test func nestingIsLimited() {
        var inner: [UInt8] = []
        for _ in 0..<40 {
            var level = DatasetBuilder(explicit: true)
            level.sequence(0x0040, 0x0275, items: [inner])
            inner = level.bytes
        }
        var reader = DatasetReader(bytes: inner, encoding: .explicitLittle)
        #expect(throws: DatasetError.self) { try reader.read() }
    }

    @Test func readingIsTotal() {
        var generator = SeededGenerator(state: 0xDA7A)
        let valid = nmDataset(explicit: true)
        for round in 0..<20_000 {
            var bytes = valid
            if round % 3 == 0 {
                bytes = (0..<Int.random(in: 0...200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            } else {
                for _ in 0..<Int.random(in: 1...8, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
            }
            for encoding in [DatasetReader.Encoding.implicitLittle, .explicitLittle, .explicitBig] {
                var reader = DatasetReader(bytes: bytes, encoding: encoding)
                _ = try? reader.read()
            }
        }
    }
}

@Suite struct StoragePathTests {
    @Test(arguments: ["../../x", "/etc/x", "..", ".", "", "1.2..3", "1.2.03", String(repeating: "1", count: 65), "1.2.3/4"])
    func anInvalidUIDIsHashed(uid: String) {
        let component = StoragePath.component(uid)
        #expect(component.hasPrefix("x") && component.count == 41 && component.allSatisfy { $0.isHexDigit || $0 == "x" })
        #expect(!DICOM.isValidUID(uid))
    }

    @Test(arguments: ["1.2.840.10008.5.1.4.1.1.20", "0", "2.25.207461862918254305372936180316153417931"])
    func aValidUIDIsKept(uid: String) {
        #expect(StoragePath.component(uid) == uid)
    }

    @Test func nuclidesFromCodeMeanings() {
        #expect(InstanceSummary.nuclide(codeMeaning: "^99m^Technetium") == "Tc-99m")
        #expect(InstanceSummary.nuclide(codeMeaning: "^18^Fluorine") == "F-18")
        #expect(InstanceSummary.nuclide(codeMeaning: "Ga-68") == "Ga-68")
        #expect(InstanceSummary.nuclide(codeMeaning: "^99m^Unobtainium") == nil)
    }
}

@Suite struct DicomConfigurationTests {
    /// `[dicom]` read by its own section alone: the module's tests need no catalog.
    func load(_ text: String) throws(ConfigurationError) -> DaemonConfiguration {
        try DaemonConfiguration.load(
            text: text, file: "nmbridge.toml", drivers: DriverCatalog([]),
            sections: ConfigurationSectionCatalog([DaemonConfiguration.Dicom.self]), defaultNode: "test")
    }

    @Test func peersMapToDevices() throws {
        let configuration = try load(
            """
            [daemon]
            state_dir = "/var/lib/nmbridge"
            [dicom]
            ae_title = "NMBRIDGE"
            port = 11112
            [[dicom.peer]]
            ae_title = "SPECTCT1"
            host = "192.0.2.31"
            device = "spectct-1"
            """)
        let dicom = try #require(configuration.dicom)
        #expect(dicom.storage == "/var/lib/nmbridge/dicom")
        #expect(dicom.peers == [DaemonConfiguration.Dicom.Peer(aeTitle: "SPECTCT1", host: "192.0.2.31", device: "spectct-1")])
    }

    @Test func problemsNameKeyAndLine() {
        do {
            _ = try load(
                """
                [dicom]
                ae_title = "A\\\\B"
                port = 0
                max_pdu = 100
                colour = "blue"
                [[dicom.peer]]
                ae_title = "SPECTCT1"
                device = "spect ct"
                """)
            Issue.record("accepted")
        } catch {
            let keys = error.problems.map { "\($0.key)@\($0.line ?? 0)" }
            #expect(keys.contains("dicom.ae_title@2"))
            #expect(keys.contains("dicom.port@3"))
            #expect(keys.contains("dicom.max_pdu@4"))
            #expect(keys.contains("dicom.colour@5"))
            #expect(keys.contains("dicom.peer[SPECTCT1].device@8"))
        }
    }

    @Test func withoutPeersOrAcceptAnyNobodyCouldSend() {
        #expect(throws: ConfigurationError.self) { try load("[dicom]\nport = 11112\n") }
    }
}

@Suite struct HostileHeaderTests {
    @Test func roleAnswersAreBoundedByTheAcceptedContexts() {
        let nm = "1.2.840.10008.5.1.4.1.1.20"
        let flood = Array(repeating: RoleSelection(sopClass: nm, scu: true, scp: true), count: 5000)
            + [RoleSelection(sopClass: "1.2.3.4", scu: true, scp: false)]
        let answers = AssociationHandler.roleAnswers(flood, accepted: [nm])
        #expect(answers == [RoleSelection(sopClass: nm, scu: true, scp: false)])
        // And an item that could not be encoded is cut, never a crash.
        var writer = ByteWriter()
        writer.item(0x50, [UInt8](repeating: 1, count: 70_000))
        #expect(writer.bytes.count == 4 + 65_535)
    }

    @Test(arguments: ["1e20", "-5", "NaN", "3.5", "99999999999999999999"])
    func anAbsurdNumberOfFramesIsLeftOutNotACrash(frames: String) throws {
        var builder = DatasetBuilder(explicit: true)
        builder.text(0x0028, 0x0008, "IS", frames)
        var reader = DatasetReader(bytes: builder.bytes, encoding: .explicitLittle)
        #expect(InstanceSummary.fields(of: try reader.read())["number_of_frames"] == nil)
    }

    @Test func aLongPaddedValueIsTrimmed() throws {
        var builder = DatasetBuilder(explicit: false)
        builder.text(0x0010, 0x0010, "PN", String(repeating: " ", count: 1 << 20) + "Doe^Jane" + String(repeating: " ", count: 1 << 20))
        var reader = DatasetReader(bytes: builder.bytes, encoding: .implicitLittle)
        #expect(try reader.read().string(Tag(0x0010, 0x0010)) == "Doe^Jane")
    }
}

@Suite struct StorageCommitTests {
    /// Two associations storing the same instance with different bytes at the same moment:
    /// with duplicates = "reject", exactly one is stored and the other is refused (0x0111).
    @Test func concurrentCommitsOfOneInstanceDecideOnce() async throws {
        let root = FileManager.default.temporaryDirectory.path + "/nmb-commit-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        for round in 0..<50 {
            let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
                for writer in 0..<2 {
                    group.addTask {
                        let file = try InstanceFile(
                            root: root, sopClass: "1.2.840.10008.5.1.4.1.1.20", sopInstance: "1.2.3.\(round)",
                            transferSyntax: "1.2.840.10008.1.2.1", callingAE: "A\(writer)")
                        try file.append([0x08, 0x00, 0x16, 0x00, 0x55, 0x49, 0x02, 0x00, 0x31, UInt8(0x30 + writer)])
                        try file.finish()
                        let sha = try file.sha256()
                        do throws(StoreError) {
                            let (_, outcome) = try StoragePath.commit(file, sha256: sha, relativePath: "s/\(round).dcm", policy: .reject)
                            return outcome == .stored(replacedSHA256: nil) ? "stored" : "\(outcome)"
                        } catch {
                            file.discard()
                            return error.status == DICOM.Status.duplicateInstance ? "rejected" : "\(error)"
                        }
                    }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(outcomes.sorted() == ["rejected", "stored"], "round \(round)")
        }
    }
}

/// Explicit → implicit VR little endian, against bytes written out by hand from PS3.5 §7.1.
@Suite struct ImplicitVRTranscoderTests {
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func le32(_ v: UInt32) -> [UInt8] { le16(Int(v & 0xFFFF)) + le16(Int(v >> 16)) }
    func tag(_ g: Int, _ e: Int) -> [UInt8] { le16(g) + le16(e) }
    let undefined: UInt32 = 0xFFFF_FFFF

    /// Explicit: short VR (2-byte length) or long VR (2 reserved bytes, 4-byte length).
    func explicit(_ g: Int, _ e: Int, _ vr: String, _ value: [UInt8], length: UInt32? = nil) -> [UInt8] {
        let long = ["OB", "OW", "SQ", "UN", "UT"].contains(vr)
        let n = length ?? UInt32(value.count)
        return tag(g, e) + Array(vr.utf8) + (long ? [0, 0] + le32(n) : le16(Int(n))) + value
    }
    func implicit(_ g: Int, _ e: Int, _ value: [UInt8], length: UInt32? = nil) -> [UInt8] {
        tag(g, e) + le32(length ?? UInt32(value.count)) + value
    }

    @Test func headersChangeValuesStaySequencesGetDelimiters() throws {
        let name = Array("DOE^JANE".utf8)
        let uid = Array("1.2.3.4".utf8) + [0]
        let pixels: [UInt8] = [1, 0, 2, 0, 3, 0, 4, 0]
        // An item of defined length and one of undefined length, in a sequence of defined length.
        let inner = explicit(0x0054, 0x0300, "SQ", [], length: undefined) + tag(0xFFFE, 0xE000) + le32(undefined)
            + explicit(0x0008, 0x0100, "SH", Array("C-163A8 ".utf8)) + tag(0xFFFE, 0xE00D) + le32(0)
            + tag(0xFFFE, 0xE0DD) + le32(0)
        let firstItem = explicit(0x0018, 0x0031, "LO", Array("Tc99m Oxidronate".utf8))
        let items = tag(0xFFFE, 0xE000) + le32(UInt32(firstItem.count)) + firstItem
            + tag(0xFFFE, 0xE000) + le32(undefined) + inner + tag(0xFFFE, 0xE00D) + le32(0)
        let input = explicit(0x0008, 0x0000, "UL", le32(99)) + explicit(0x0008, 0x0018, "UI", uid)
            + explicit(0x0010, 0x0010, "PN", name) + explicit(0x0054, 0x0016, "SQ", items)
            + explicit(0x7FE0, 0x0010, "OW", pixels)

        let expectedInner = implicit(0x0054, 0x0300, [], length: undefined) + tag(0xFFFE, 0xE000) + le32(undefined)
            + implicit(0x0008, 0x0100, Array("C-163A8 ".utf8)) + tag(0xFFFE, 0xE00D) + le32(0) + tag(0xFFFE, 0xE0DD) + le32(0)
        let expected = implicit(0x0008, 0x0018, uid) + implicit(0x0010, 0x0010, name)
            + implicit(0x0054, 0x0016, [], length: undefined)
            + tag(0xFFFE, 0xE000) + le32(undefined) + implicit(0x0018, 0x0031, Array("Tc99m Oxidronate".utf8)) + tag(0xFFFE, 0xE00D) + le32(0)
            + tag(0xFFFE, 0xE000) + le32(undefined) + expectedInner + tag(0xFFFE, 0xE00D) + le32(0)
            + tag(0xFFFE, 0xE0DD) + le32(0)
            + implicit(0x7FE0, 0x0010, pixels)
        #expect(try ImplicitVRTranscoder.transcode(input) == expected)
        // And our reader finds the same values in both.
        var explicitReader = DatasetReader(bytes: input, encoding: .explicitLittle)
        var implicitReader = DatasetReader(bytes: expected, encoding: .implicitLittle)
        let a = try explicitReader.read()
        let b = try implicitReader.read()
        #expect(a.string(Tag(0x0010, 0x0010)) == b.string(Tag(0x0010, 0x0010)))
        #expect(b.items(Tag(0x0054, 0x0016)).count == 2)
    }

    @Test func whatCannotBeConvertedIsAnErrorNamingTheElement() {
        // Encapsulated pixel data (undefined-length OB) only exists in compressed syntaxes.
        let encapsulated = explicit(0x7FE0, 0x0010, "OB", [], length: undefined) + tag(0xFFFE, 0xE0DD) + le32(0)
        #expect { try ImplicitVRTranscoder.transcode(encapsulated) } throws: { "\($0)".contains("(7FE0,0010) OB of undefined length") }
        let overlong = explicit(0x0010, 0x0010, "PN", [], length: 400) + Array("DOE".utf8)
        #expect { try ImplicitVRTranscoder.transcode(overlong) } throws: { "\($0)".contains("(0010,0010) claims 400 bytes") }
        // Deep nesting is refused, not recursed into.
        var deep = explicit(0x0010, 0x0010, "PN", Array("X ".utf8))
        for _ in 0..<40 {
            deep = explicit(0x0040, 0xA730, "SQ", [], length: undefined) + tag(0xFFFE, 0xE000) + le32(undefined)
                + deep + tag(0xFFFE, 0xE00D) + le32(0) + tag(0xFFFE, 0xE0DD) + le32(0)
        }
        #expect { try ImplicitVRTranscoder.transcode(deep) } throws: { "\($0)".contains("nested deeper") }
    }

    /// Total: every cut and many random bytes give a dataset or an error, never a crash.
    @Test func everyCutAndRandomDamageIsAnErrorOrADataset() {
        let item = explicit(0x0018, 0x0031, "LO", Array("Tc99m".utf8) + [0x20])
        let input = explicit(0x0010, 0x0010, "PN", Array("DOE^JANE".utf8))
            + explicit(0x0054, 0x0016, "SQ", tag(0xFFFE, 0xE000) + le32(UInt32(item.count)) + item)
            + explicit(0x7FE0, 0x0010, "OW", [1, 0, 2, 0])
        var generator = SystemRandomNumberGenerator()
        for cut in 0...input.count { _ = try? ImplicitVRTranscoder.transcode(Array(input[..<cut])) }
        for _ in 0..<2000 {
            var damaged = input
            for _ in 0..<3 { damaged[Int.random(in: 0..<damaged.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            if let output = try? ImplicitVRTranscoder.transcode(damaged) { #expect(output.count <= damaged.count + 64) }
        }
    }
}
