import Foundation
import Logging
import NMBridgeCore
import TestSupport
import Testing

@testable import DicomStore

/// A DCMTK storescp on a free port, bit-preserving (+B: it writes the dataset exactly as
/// received), bound to the test process.
final class StoreSCP: @unchecked Sendable {
    let process = Process()
    let port: Int
    let output: String

    /// `port`: a given one (a destination restarted on its address), else a free one.
    init(directory: String, port: Int? = nil, arguments: [String] = []) async throws {
        self.port = try port ?? freeTCPPort()
        output = directory + "/storescp-out"
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/storescp")
        process.arguments = ["--aetitle", "STORESCP", "+B", "--output-directory", output] + arguments + ["\(self.port)"]
        process.environment = ProcessInfo.processInfo.environment.merging(["TCP_NODELAY": "1"]) { _, new in new }
        let log = directory + "/storescp-\(self.port).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.runBoundToTest()
        try await waitForListener(port: self.port, what: "storescp")
    }

    func stop() { stopProcess(process) }

    /// The files storescp wrote.
    var files: [String] { DicomPeers.files(under: output) }
}

/// The dataset bytes of a Part-10 file (after its file meta).
func datasetBytes(_ path: String) throws -> [UInt8] {
    let instance = try StoredInstance.open(path: path)
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return Array(data[instance.datasetOffset...])
}

@Suite struct RequesterTests {
    static func destination(port: Int, aeTitle: String = "STORESCP") -> DaemonConfiguration.Dicom.Destination {
        var destination = DaemonConfiguration.Dicom.Destination(name: "test", aeTitle: aeTitle, host: "127.0.0.1", port: port, callingAE: "NMBRIDGE")
        destination.timeout = 30
        return destination
    }

    /// CT slices and an NM image from pydicom.
    static func makeStudy(_ directory: String, count: Int = 3) async throws -> [String] {
        let study = directory + "/study"
        try FileManager.default.createDirectory(atPath: study, withIntermediateDirectories: true)
        let ct = try await DicomPeers.python(["make-ct-series", study, "--count", "\(count)", "--rows", "32"])
        #expect(ct.status == 0, "\(ct.output)")
        let nm = try await DicomPeers.python(["make-nm", study + "/NM.dcm", "--frames", "2"])
        #expect(nm.status == 0, "\(nm.output)")
        return DicomPeers.files(under: study).sorted()
    }

    @Test func echoAndStoreToStorescpArriveByteIdentical() async throws {
        let dir = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try await Self.makeStudy(dir)
        let scp = try await StoreSCP(directory: dir)
        defer { scp.stop() }
        // An NM image over the read-ahead's 16 MiB (read as it is sent), and a file that is
        // gone by the time it is sent: its error is its own, the next instance still goes.
        let big = dir + "/big.dcm"
        #expect(try await DicomPeers.python(["make-nm", big, "--frames", "36000"]).status == 0)  // about 18 MB
        let instances = try (files + [big]).map { try StoredInstance.open(path: $0) }
        #expect(instances.last.map { $0.size - $0.datasetOffset > RequesterAssociation.readAheadLimit } == true)
        try FileManager.default.copyItem(atPath: files[0], toPath: dir + "/gone.dcm")
        let gone = try StoredInstance.open(path: dir + "/gone.dcm")
        try FileManager.default.removeItem(atPath: gone.path)
        let sequence = [instances[0], gone] + instances[1...]
        let contexts =
            PresentationContextRequest.forSending(instances)
            + [PresentationContextRequest(abstractSyntax: DICOM.verification, transferSyntaxes: [DICOM.TransferSyntax.implicitLittle])]
        let statuses = try await DicomRequester.withAssociation(to: Self.destination(port: scp.port), contexts: contexts, logger: Logger(label: "test")) {
            association in
            var statuses: [UInt16?] = [try await association.echo()]
            for (index, instance) in sequence.enumerated() {
                do {
                    let next = index + 1 < sequence.count ? sequence[index + 1] : nil
                    statuses.append(try await association.store(instance, next: next).status)
                } catch let error as RequesterError where error.code == .file && instance == gone {
                    statuses.append(nil)
                }
            }
            return statuses
        }
        #expect(statuses == [0, 0, nil] + [UInt16?](repeating: 0, count: instances.count - 1))
        // storescp names its files after the SOP instance: each arrived, with the same dataset bytes.
        let received = scp.files
        #expect(received.count == instances.count, "\(received)")
        for instance in instances {
            let copy = try #require(received.first { $0.hasSuffix(instance.sopInstance) || $0.contains(instance.sopInstance + ".") })
            #expect(try datasetBytes(copy) == datasetBytes(instance.path), "\(instance.path) arrived changed")
        }
    }

    /// +xi: storescp takes implicit VR little endian only. An explicit VR file goes converted
    /// (pydicom finds the same dataset in what arrived); an RLE-compressed one, which cannot
    /// be converted without decoding, is refused with the peer's reason.
    @Test func implicitOnlyPeersGetExplicitDatasetsConvertedAndRefuseCompressedOnes() async throws {
        let dir = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scp = try await StoreSCP(directory: dir, arguments: ["+xi"])
        defer { scp.stop() }
        // An NM image with nested sequences (pydicom, implicit VR); DCMTK's dcmconv makes an
        // explicit VR copy.
        let made = try await DicomPeers.python(["make-nm", dir + "/made.dcm", "--frames", "2"])
        #expect(made.status == 0, "\(made.output)")
        let explicit = try await DicomPeers.run("/usr/bin/dcmconv", ["+te", dir + "/made.dcm", dir + "/nm.dcm"])
        #expect(explicit.status == 0, "\(explicit.output)")
        let instance = try StoredInstance.open(path: dir + "/nm.dcm")
        #expect(instance.transferSyntax == DICOM.TransferSyntax.explicitLittle)
        let sent = try await DicomRequester.withAssociation(
            to: Self.destination(port: scp.port), contexts: PresentationContextRequest.forSending([instance]), logger: Logger(label: "test")
        ) { association in try await association.store(instance) }
        #expect(sent.status == 0 && sent.transferSyntax == DICOM.TransferSyntax.implicitLittle, "\(sent)")
        let copy = try #require(scp.files.first { $0.contains(instance.sopInstance) })
        let same = try await DicomPeers.python(["same", dir + "/nm.dcm", copy])
        #expect(same.status == 0, "what arrived is not the same dataset: \(same.output)")
        let dump = try await DicomPeers.run("/usr/bin/dcmdump", ["-M", copy])
        #expect(dump.output.contains("Little Endian Implicit"), "\(dump.output.prefix(600))")

        // DCMTK's dcmcrle makes an RLE lossless copy: no lossless path to implicit VR.
        let compressed = try await DicomPeers.run("/usr/bin/dcmcrle", [dir + "/nm.dcm", dir + "/rle.dcm"])
        #expect(compressed.status == 0, "\(compressed.output)")
        let rle = try StoredInstance.open(path: dir + "/rle.dcm")
        let error = await #expect(throws: RequesterError.self) {
            try await DicomRequester.withAssociation(
                to: Self.destination(port: scp.port), contexts: PresentationContextRequest.forSending([rle]), logger: Logger(label: "test")
            ) { association in
                _ = try await association.store(rle)
            }
        }
        #expect(error?.code == .notAccepted && error?.isTransient == false, "\(String(describing: error))")
        #expect(error?.message.contains("transfer syntax not supported") == true, "\(String(describing: error))")

        // Nothing listens: a transient connection error naming the peer.
        let closed = try freeTCPPort()
        let unreachable = await #expect(throws: RequesterError.self) {
            try await DicomRequester.withAssociation(to: Self.destination(port: closed), contexts: [], logger: Logger(label: "test")) { _ in }
        }
        #expect(unreachable?.code == .connection && unreachable?.isTransient == true)
        #expect(unreachable?.message.contains("STORESCP@127.0.0.1:\(closed)") == true, "\(String(describing: unreachable))")

        // A file that is not Part-10 is a file error, which no retry mends.
        try Data("not dicom".utf8).write(to: URL(fileURLWithPath: dir + "/x.dcm"))
        #expect(throws: RequesterError.self) { try StoredInstance.open(path: dir + "/x.dcm") }
    }

    @Test func storesOverTLSWithAClientCertificateToStorescp() async throws {
        let dir = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await DicomTLSTests().makeCertificates(in: dir)
        let files = try await Self.makeStudy(dir, count: 1)
        // storescp over TLS (OpenSSL), requiring a client certificate issued by the CA.
        let scp = try await StoreSCP(
            directory: dir, arguments: ["+tls", dir + "/server.key", dir + "/server.crt", "+cf", dir + "/ca.crt"])
        defer { scp.stop() }
        var destination = Self.destination(port: scp.port)
        var tls = DaemonConfiguration.Dicom.Destination.TLS(ca: dir + "/ca.crt", certificate: dir + "/client.crt", key: dir + "/client.key")
        tls.verifyHostname = false
        destination.tls = tls
        let instances = try files.map { try StoredInstance.open(path: $0) }
        let statuses = try await DicomRequester.withAssociation(
            to: destination, contexts: PresentationContextRequest.forSending(instances), logger: Logger(label: "test")
        ) { association in
            var statuses: [UInt16] = []
            for instance in instances { statuses.append(try await association.store(instance).status) }
            return statuses
        }
        #expect(statuses == [0, 0])
        #expect(scp.files.count == 2)
        // Without our certificate the peer refuses the handshake: a connection error, retried later.
        destination.tls = DaemonConfiguration.Dicom.Destination.TLS(ca: dir + "/ca.crt")
        let refused = await #expect(throws: RequesterError.self) {
            try await DicomRequester.withAssociation(
                to: destination, contexts: PresentationContextRequest.forSending(instances), logger: Logger(label: "test")) { association in
                _ = try await association.store(instances[0])
            }
        }
        #expect(refused?.isTransient == true, "\(String(describing: refused))")
    }

    @Test func storesToOrthanc() async throws {
        let dir = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try await Self.makeStudy(dir)
        let port = try freeTCPPort()
        let orthanc = try await startOrthanc(directory: dir, aeTitle: "ORTHANC", port: port)
        defer { stopProcess(orthanc) }
        let instances = try files.map { try StoredInstance.open(path: $0) }
        let statuses = try await DicomRequester.withAssociation(
            to: Self.destination(port: port, aeTitle: "ORTHANC"), contexts: PresentationContextRequest.forSending(instances), logger: Logger(label: "test")
        ) { association in
            var statuses: [UInt16] = []
            for instance in instances { statuses.append(try await association.store(instance).status) }
            return statuses
        }
        #expect(statuses == [UInt16](repeating: 0, count: files.count))
        // Orthanc holds each instance, with the same dataset (its own file meta).
        for instance in instances {
            let stored = DicomPeers.files(under: dir + "/orthanc-storage").filter { !$0.hasSuffix(".json") }
            let match = stored.first { (try? StoredInstance.open(path: $0))?.sopInstance == instance.sopInstance }
            let copy = try #require(match, "Orthanc did not store \(instance.sopInstance)")
            let same = try await DicomPeers.python(["same", copy, instance.path])
            #expect(same.status == 0, "\(copy) differs from \(instance.path)")
        }
        // A called AE that Orthanc does not answer to: the association is rejected (transient).
        let rejected = await #expect(throws: RequesterError.self) {
            try await DicomRequester.withAssociation(
                to: Self.destination(port: port, aeTitle: "NOTORTHANC"), contexts: PresentationContextRequest.forSending(instances),
                logger: Logger(label: "test")) { _ in }
        }
        #expect(rejected?.code == .associationRejected, "\(String(describing: rejected))")
    }
}

/// The requester's protocol state against a peer that does what storescp never does
/// (Tests/Peers/dicom_raw.py scp): the rows of the state table it drives.
extension RequesterTests {
    static let verification = [PresentationContextRequest(abstractSyntax: DICOM.verification, transferSyntaxes: [DICOM.TransferSyntax.implicitLittle])]

    /// A release collision: the peer answers our A-RELEASE-RQ with one of its own (Sta7 +
    /// Evt12, AR-8). We answer it (AR-9, Sta11), take its A-RELEASE-RP (AR-3) and close: the
    /// association ends released, not in an error.
    @Test func aReleaseCollisionEndsInARelease() async throws {
        let port = try freeTCPPort()
        async let seen = RawPeer.run(["scp", "\(port)", "collide"])
        try await waitForListener(port: port, what: "dicom_raw.py scp")
        let status = try await DicomRequester.withAssociation(
            to: Self.destination(port: port), contexts: Self.verification, logger: Logger(label: "test")
        ) { association in
            try await association.echo()
        }
        #expect(status == 0)
        let answer = try await seen
        #expect(answer["echoes"] == .int(1), "\(answer)")
        #expect(answer["got"] == .array([.string("A-RELEASE-RP"), .string("closed")]), "our A-RELEASE-RP, then the close: \(answer)")
    }

    /// A peer that answers the A-ASSOCIATE-RQ with a P-DATA-TF (Sta5 + Evt10, AA-8): A-ABORT
    /// from the service provider, reason 2 (unexpected PDU), and a protocol error naming it.
    @Test func anUnexpectedAnswerToTheAssociationRequestIsAborted() async throws {
        let port = try freeTCPPort()
        async let seen = RawPeer.run(["scp", "\(port)", "data-for-accept"])
        try await waitForListener(port: port, what: "dicom_raw.py scp")
        let error = await #expect(throws: RequesterError.self) {
            try await DicomRequester.withAssociation(to: Self.destination(port: port), contexts: Self.verification, logger: Logger(label: "test")) {
                association in
                try await association.echo()
            }
        }
        #expect(error?.code == .protocolError && error?.message.contains("P-DATA-TF") == true, "\(String(describing: error))")
        let answer = try await seen
        #expect(answer == .object(["pdu": .string("abort"), "source": .int(2), "reason": .int(2)]), "\(answer)")
    }
}
