import Foundation
import Logging
import NMBridgeCore
import TestSupport
import Testing

@testable import DicomStore

/// Real peers: DCMTK (/usr/bin/echoscu, storescu, dcmdump; called by path because pip's
/// pynetdicom installs a `storescu` of its own) and pynetdicom/pydicom
/// (Tests/Peers/dicom_peer.py in .venv-test). scripts/test installs both.
enum DicomPeers {
    static let python = testPython
    static let peer = repositoryRoot + "/Tests/Peers/dicom_peer.py"

    /// Runs a program to its end: exit status and output (DCMTK with TCP_NODELAY=1, its fast setting).
    static func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await runToEnd(executable, arguments, environment: ["TCP_NODELAY": "1"])
    }

    static func python(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await run(python, [peer] + arguments)
    }

    static func temporaryDirectory(_ name: String = #function) throws -> String { try makeTemporaryDirectory("dicom", name) }

    /// Every regular file under `directory`, recursively.
    static func files(under directory: String) -> [String] {
        (FileManager.default.enumerator(atPath: directory)?.allObjects as? [String] ?? [])
            .map { directory + "/" + $0 }
            .filter { (try? FileManager.default.attributesOfItem(atPath: $0)[.type] as? FileAttributeType) == .typeRegular }
    }
}

/// A receiver in this process on a free port, recording its events.
struct ReceiverRig: Sendable {
    let sink: RecordingSink
    let directory: String
    let storage: String
    let port: Int
    /// The DICOM TLS port, when configured.
    let tlsPort: Int?
    let task: Task<Void, any Error>
    /// What the receiver's associations share (its counters).
    let shared: ReceiverContext

    static func start(_ configure: (inout DaemonConfiguration.Dicom) -> Void = { _ in }) async throws -> ReceiverRig {
        let directory = try DicomPeers.temporaryDirectory()
        var settings = DaemonConfiguration.Dicom(storage: directory + "/dicom")
        settings.listen = "127.0.0.1"
        settings.port = 0
        settings.peers = [DaemonConfiguration.Dicom.Peer(aeTitle: "SPECTCT1", device: "spectct-1")]
        configure(&settings)
        let sink = RecordingSink(kinds: EventKindRegistry.dicomKinds)
        let (stream, continuation) = AsyncStream.makeStream(of: (Int, Int?).self)
        let receiver = DicomReceiver(settings: settings, sink: sink, logger: Logger(label: "test"), onListening: { continuation.yield(($0, $1)) })
        let task = Task { try await receiver.run() }
        var iterator = stream.makeAsyncIterator()
        guard let (port, tlsPort) = await iterator.next() else { throw DatasetError(message: "the receiver did not start") }
        return ReceiverRig(
            sink: sink, directory: directory, storage: settings.storage, port: port, tlsPort: tlsPort, task: task, shared: receiver.shared)
    }

    private init(
        sink: RecordingSink, directory: String, storage: String, port: Int, tlsPort: Int?, task: Task<Void, any Error>,
        shared: ReceiverContext
    ) {
        self.shared = shared
        self.sink = sink
        self.directory = directory
        self.storage = storage
        self.port = port
        self.tlsPort = tlsPort
        self.task = task
    }

    /// Stops the receiver and waits for it (its files stay for the test to look at).
    func stop() async {
        task.cancel()
        _ = await task.result
    }

    /// At the end of a test: stops it if needed and removes its files.
    func cleanUp() {
        task.cancel()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The stored instances (not the transfers in progress, not the pending-studies file).
    var storedFiles: [String] { DicomPeers.files(under: storage).filter { !$0.contains("/.incoming/") && $0.hasSuffix(".dcm") } }

    func storescu(_ files: [String], options: [String] = [], calling: String = "SPECTCT1", called: String = "NMBRIDGE") async throws
        -> (status: Int32, output: String)
    {
        try await DicomPeers.run("/usr/bin/storescu", options + ["-aet", calling, "-aec", called, "127.0.0.1", "\(port)"] + files)
    }
}

/// The dataset part of a dcmdump listing, for comparing a sent and a stored file whatever
/// their transfer syntax: tags, VRs and values, without the file meta, the syntax line and
/// dcmdump's length comments (a sequence is longer in explicit VR than in implicit).
func datasetDump(_ path: String) async throws -> [String] {
    let dump = try await DicomPeers.run("/usr/bin/dcmdump", ["+L", path]).output
    guard let start = dump.range(of: "# Dicom-Data-Set") else { return [] }
    return dump[start.upperBound...].split(separator: "\n").filter { !$0.hasPrefix("# Used TransferSyntax") }
        .map { line in String(line.split(separator: "#", maxSplits: 1).first ?? "").trimmingCharacters(in: .whitespaces) }
        .map { $0.replacingOccurrences(of: "explicit length", with: "length").replacingOccurrences(of: "undefined length", with: "length") }
}

@Suite(.serialized) struct DicomPeerTests {
    @Test func echoscuIsAnswered() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let echo = try await DicomPeers.run("/usr/bin/echoscu", ["-aet", "SPECTCT1", "-aec", "NMBRIDGE", "127.0.0.1", "\(rig.port)"])
        #expect(echo.status == 0, "\(echo.output)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.association.released").isEmpty })
        await rig.stop()
        #expect(rig.sink.events("dicom.association.accepted").first?.device == "spectct-1")
    }

    @Test func wrongCalledAndUnknownCallingAETitlesAreRejectedWithTheirReasons() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let wrongCalled = try await DicomPeers.run("/usr/bin/echoscu", ["-aet", "SPECTCT1", "-aec", "OTHER", "127.0.0.1", "\(rig.port)"])
        #expect(wrongCalled.status != 0 && wrongCalled.output.contains("Called AE Title Not Recognized"), "\(wrongCalled.output)")
        let unknownCalling = try await DicomPeers.run("/usr/bin/echoscu", ["-aet", "STRANGER", "-aec", "NMBRIDGE", "127.0.0.1", "\(rig.port)"])
        #expect(unknownCalling.status != 0 && unknownCalling.output.contains("Calling AE Title Not Recognized"), "\(unknownCalling.output)")
        #expect(await rig.sink.wait { rig.sink.events("dicom.association.rejected").count == 2 })
        await rig.stop()
        #expect(rig.sink.events("dicom.association.rejected").map { $0.data["reason"] } == [.int(7), .int(3)])
    }

    @Test(arguments: [
        ("-xe", "1.2.840.10008.1.2.1"), ("-xi", "1.2.840.10008.1.2"), ("-xb", "1.2.840.10008.1.2.2"), ("-xd", "1.2.840.10008.1.2.1.99"),
    ])
    func storescuInEveryUncompressedSyntaxRoundTrips(option: String, syntax: String) async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let source = rig.directory + "/nm.dcm"
        #expect(try await DicomPeers.python(["make-nm", source, "--frames", "3"]).status == 0)
        for pdu in ["4096", "131072"] {
            let sent = try await rig.storescu([source], options: [option, "-pdu", pdu])
            #expect(sent.status == 0, "\(sent.output)")
        }
        #expect(await rig.sink.wait { rig.sink.events("dicom.association.released").count == 2 })
        await rig.stop()
        let stored = try #require(rig.storedFiles.first)
        #expect(rig.storedFiles.count == 1)
        #expect(try await datasetDump(stored) == (try await datasetDump(source)), "the stored dataset equals the sent one")
        let meta = try await DicomPeers.run("/usr/bin/dcmdump", ["-M", "-Un", "+P", "0002,0010", stored]).output
        #expect(meta.contains(syntax), "meta transfer syntax: \(meta)")
        let event = try #require(rig.sink.events("dicom.instance.stored").first)
        #expect(event.data["transfer_syntax"] == .string(syntax))
        #expect(event.data["path"] == .string(stored))
        #expect(event.data["number_of_frames"] == .int(3))
        // The second copy was the same bytes: nothing replaced.
        #expect(rig.sink.events("dicom.instance.replaced").isEmpty)
        #expect(rig.sink.events("dicom.instance.stored").last?.data["duplicate"] != nil)
    }

    @Test func aJPEGLosslessInstanceIsStoredAsReceived() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let source = rig.directory + "/ct.dcm"
        let compressed = rig.directory + "/ct-jpeg.dcm"
        #expect(try await DicomPeers.python(["make-ct", source]).status == 0)
        #expect(try await DicomPeers.run("/usr/bin/dcmcjpeg", [source, compressed]).status == 0)
        let sent = try await rig.storescu([compressed], options: ["-xs"])
        #expect(sent.status == 0, "\(sent.output)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.instance.stored").isEmpty })
        await rig.stop()
        let stored = try #require(rig.storedFiles.first)
        #expect(rig.sink.events("dicom.instance.stored").first?.data["transfer_syntax"] == .string("1.2.840.10008.1.2.4.70"))
        // The encapsulated pixel data arrives byte for byte: the datasets are identical.
        #expect(try await datasetDump(stored) == (try await datasetDump(compressed)))
    }

    @Test func aSOPClassOutsideTheListIsRefusedPerContext() async throws {
        let rig = try await ReceiverRig.start { $0.sopClasses = ["1.2.840.10008.5.1.4.1.1.2"] }  // CT only
        defer { rig.cleanUp() }
        let source = rig.directory + "/nm.dcm"
        #expect(try await DicomPeers.python(["make-nm", source]).status == 0)
        let sent = try await rig.storescu([source], options: ["-R"])  // propose only the files' SOP classes
        #expect(sent.status != 0, "no context for NM: \(sent.output)")
        await rig.stop()
        #expect(rig.storedFiles.isEmpty)
    }

    @Test func manyFilesOnOneAssociationAndTenAssociationsAtOnce() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let study = "1.2.826.0.1.3680043.8.498.1"
        var files: [String] = []
        for i in 1...20 {
            let path = rig.directory + "/ct\(i).dcm"
            #expect(try await DicomPeers.python(["make-ct", path, "--study-uid", study, "--instance", "\(i)"]).status == 0)
            files.append(path)
        }
        #expect(try await rig.storescu(files).status == 0)
        let pairs = (0..<10).map { [files[$0], files[$0 + 10]] }
        let results = try await withThrowingTaskGroup(of: Int32.self) { group in
            for pair in pairs { group.addTask { try await rig.storescu(pair).status } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results == Array(repeating: 0, count: 10))
        #expect(await rig.sink.wait { rig.sink.events("dicom.association.released").count == 11 })
        await rig.stop()
        let released = rig.sink.events("dicom.association.released").map { $0.data["instances"] }
        #expect(released.contains(.int(20)))
        #expect(rig.storedFiles.count == 20)
        #expect(rig.sink.events("dicom.instance.stored").count == 40)
    }

    @Test func pynetdicomStoresAnNMImageWithItsRadiopharmaceutical() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let source = rig.directory + "/nm.dcm"
        #expect(try await DicomPeers.python(["make-nm", source, "--dose", "555"]).status == 0)
        let sent = try await DicomPeers.python(["send", "127.0.0.1", "\(rig.port)", "NMBRIDGE", "SPECTCT1", source, "--syntax", "implicit"])
        #expect(sent.output.contains("\"statuses\": [0]"), "\(sent.output)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.instance.stored").isEmpty })
        await rig.stop()
        let data = try #require(rig.sink.events("dicom.instance.stored").first?.data)
        #expect(data["modality"] == .string("NM") && data["patient_id"] == .string("NMB-0001"))
        let rp = data["radiopharmaceutical"]?.objectValue
        #expect(rp?["nuclide"] == .string("Tc-99m"))
        #expect(rp?["total_dose_bq"] == .double(555e6))
        #expect(rp?["start_time"] == .string("101500"))
        #expect(data["energy_windows"] == .array([.object(["name": .string("Tc99m"), "lower_kev": .double(126), "upper_kev": .double(154)])]))
        #expect(data["sha256"]?.stringValue?.count == 64)
    }

    @Test func aDatasetThatContradictsItsCommandIsRefusedWithA900() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let source = rig.directory + "/nm.dcm"
        #expect(try await DicomPeers.python(["make-nm", source]).status == 0)
        let sent = try await DicomPeers.python(["send-mismatch", "127.0.0.1", "\(rig.port)", "NMBRIDGE", "SPECTCT1", source])
        #expect(sent.output.contains("\"statuses\": [43264]"), "0xA900: \(sent.output)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.instance.failed").isEmpty })
        await rig.stop()
        #expect(rig.sink.events("dicom.instance.failed").first?.data["status"] == .string("0xA900"))
        #expect(rig.storedFiles.isEmpty, "nothing stored, no partial file left")
    }

    @Test func hostileUIDsNeverLeaveTheStorageRoot() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        var statuses: [String] = []
        for (i, uid) in ["../../x", "/etc/x", ".."].enumerated() {
            let source = rig.directory + "/hostile\(i).dcm"
            #expect(try await DicomPeers.python(["make-nm", source, "--study-uid", uid]).status == 0)
            statuses.append(try await DicomPeers.python(["send", "127.0.0.1", "\(rig.port)", "NMBRIDGE", "SPECTCT1", source]).output)
        }
        #expect(statuses.allSatisfy { $0.contains("\"statuses\": [0]") }, "\(statuses)")
        #expect(await rig.sink.wait { rig.sink.events("dicom.instance.stored").count == 3 })
        await rig.stop()
        #expect(rig.storedFiles.count == 3)
        for file in rig.storedFiles {
            let relative = file.dropFirst(rig.storage.count + 1)
            #expect(relative.split(separator: "/").first?.hasPrefix("x") == true, "\(relative)")
            #expect(!relative.contains(".."))
        }
        #expect(!FileManager.default.fileExists(atPath: rig.directory + "/x"))
    }

    @Test(arguments: DaemonConfiguration.Dicom.Duplicates.allCases)
    func theSameInstanceWithOtherBytesFollowsTheDuplicatesPolicy(policy: DaemonConfiguration.Dicom.Duplicates) async throws {
        let rig = try await ReceiverRig.start { $0.duplicates = policy }
        defer { rig.cleanUp() }
        let source = rig.directory + "/nm.dcm"
        #expect(try await DicomPeers.python(["make-nm", source]).status == 0)
        #expect(try await rig.storescu([source], options: ["-xe"]).status == 0)
        #expect(await rig.sink.wait { rig.sink.events("dicom.instance.stored").count == 1 })
        let stored = try #require(rig.storedFiles.first)
        let first = try Data(contentsOf: URL(fileURLWithPath: stored))
        // The same instance in big endian: other bytes, same UIDs.
        let second = try await rig.storescu([source], options: ["-xb", "--no-halt", "-v"])
        #expect(await rig.sink.wait { rig.sink.events("dicom.association.released").count == 2 })
        await rig.stop()
        let now = try Data(contentsOf: URL(fileURLWithPath: stored))
        switch policy {
        case .replace:
            #expect(now != first)
            #expect(rig.sink.events("dicom.instance.replaced").count == 1)
        case .keep:
            #expect(now == first)
            #expect(rig.sink.events("dicom.instance.stored").last?.data["duplicate"]?.stringValue?.contains("discarded") == true)
        case .reject:
            #expect(now == first)
            #expect(rig.sink.events("dicom.instance.failed").first?.data["status"] == .string("0x0111"))
            #expect(second.output.contains("Status: 0x111"), "storescu saw 0x0111: \(second.output)")
        }
        #expect(rig.storedFiles.count == 1)
    }

    @Test func aQuietStudyIsReportedStableAlsoAcrossARestart() async throws {
        let directory = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let storage = directory + "/shared-storage"
        let study = "1.2.826.0.1.3680043.8.498.77"
        var files: [String] = []
        for i in 1...3 {
            let path = directory + "/ct\(i).dcm"
            let arguments = ["make-ct", path, "--study-uid", study, "--series-uid", study + ".1", "--instance", "\(i)"]
            #expect(try await DicomPeers.python(arguments).status == 0)
            files.append(path)
        }
        // Two instances, then the receiver stops before the study is quiet.
        let first = try await ReceiverRig.start {
            $0.storage = storage
            $0.stableAfter = 3600
        }
        #expect(try await first.storescu(Array(files.prefix(2))).status == 0)
        #expect(await first.sink.wait { first.sink.events("dicom.instance.stored").count == 2 })
        first.cleanUp()
        await first.stop()
        #expect(first.sink.events("dicom.study.stable").isEmpty)
        // After a restart: one more instance, still not quiet.
        let second = try await ReceiverRig.start {
            $0.storage = storage
            $0.stableAfter = 3600
        }
        #expect(try await second.storescu([files[2]]).status == 0)
        #expect(await second.sink.wait { second.sink.events("dicom.instance.stored").count == 1 })
        second.cleanUp()
        await second.stop()
        #expect(second.sink.events("dicom.study.stable").isEmpty)
        // After another restart with a short quiet time: one event for the whole study. (A
        // quiet time that had to outlast the restart and storescu was too short under load.)
        let third = try await ReceiverRig.start {
            $0.storage = storage
            $0.stableAfter = 1
        }
        defer { third.cleanUp() }
        #expect(await third.sink.wait { !third.sink.events("dicom.study.stable").isEmpty })
        await third.stop()
        let stable = try #require(third.sink.events("dicom.study.stable").first)
        #expect(third.sink.events("dicom.study.stable").count == 1)
        #expect(stable.data["study_uid"] == .string(study))
        #expect(stable.data["instances"] == .int(3) && stable.data["series"] == .int(1))
        #expect(stable.data["modalities"] == .array([.string("CT")]))
        #expect(stable.device == "spectct-1")
    }

    @Test func anAbortedAssociationLeavesNoPartialFile() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let source = rig.directory + "/nm.dcm"
        #expect(try await DicomPeers.python(["make-nm", source, "--frames", "200"]).status == 0)
        _ = try await rig.storescu([source], options: ["--abort"])
        #expect(await rig.sink.wait { !rig.sink.events("dicom.association.aborted").isEmpty })
        await rig.stop()
        #expect(DicomPeers.files(under: rig.storage + "/.incoming").filter { !$0.hasSuffix(".ready") }.isEmpty)
    }
}

/// DICOM TLS with DCMTK's own TLS client (OpenSSL), certificates made by openssl.
@Suite(.serialized) struct DicomTLSTests {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, in `directory`.
    func makeCertificates(in directory: String) async throws {
        func openssl(_ arguments: [String]) async throws {
            let result = try await DicomPeers.run("/usr/bin/openssl", arguments)
            #expect(result.status == 0, "openssl \(arguments.joined(separator: " ")): \(result.output)")
        }
        try "subjectAltName=IP:127.0.0.1\n".write(toFile: directory + "/san.ext", atomically: true, encoding: .utf8)
        try await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", directory + "/ca.key", "-out", directory + "/ca.crt",
                           "-days", "2", "-subj", "/CN=nmbridge test CA"])
        for name in ["server", "client"] {
            try await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).csr",
                               "-subj", "/CN=\(name == "server" ? "127.0.0.1" : "SPECTCT1")"])
            try await openssl(["x509", "-req", "-in", "\(directory)/\(name).csr", "-CA", directory + "/ca.crt", "-CAkey", directory + "/ca.key",
                               "-CAcreateserial", "-out", "\(directory)/\(name).crt", "-days", "2", "-extfile", directory + "/san.ext"])
        }
    }

    @Test func echoAndStoreOverTLSWithClientCertificates() async throws {
        let certificates = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: certificates) }
        try await makeCertificates(in: certificates)
        let rig = try await ReceiverRig.start {
            $0.tls = DaemonConfiguration.Dicom.TLS(
                port: 0, certificate: certificates + "/server.crt", key: certificates + "/server.key", clientCA: certificates + "/ca.crt")
        }
        defer { rig.cleanUp() }
        let tlsPort = try #require(rig.tlsPort)
        let client = ["+tls", certificates + "/client.key", certificates + "/client.crt", "+cf", certificates + "/ca.crt"]
        let echo = try await DicomPeers.run("/usr/bin/echoscu", client + ["-aet", "SPECTCT1", "-aec", "NMBRIDGE", "127.0.0.1", "\(tlsPort)"])
        #expect(echo.status == 0, "echoscu over TLS: \(echo.output)")
        let source = rig.directory + "/nm.dcm"
        #expect(try await DicomPeers.python(["make-nm", source]).status == 0)
        let store = try await DicomPeers.run("/usr/bin/storescu", client + ["-aet", "SPECTCT1", "-aec", "NMBRIDGE", "127.0.0.1", "\(tlsPort)", source])
        #expect(store.status == 0, "storescu over TLS: \(store.output)")
        // Without a client certificate (anonymous TLS) the handshake fails; plain DICOM on the TLS port too.
        let anonymous = try await DicomPeers.run(
            "/usr/bin/echoscu", ["+tla", "+cf", certificates + "/ca.crt", "-aet", "SPECTCT1", "-aec", "NMBRIDGE", "127.0.0.1", "\(tlsPort)"])
        #expect(anonymous.status != 0)
        let plain = try await DicomPeers.run("/usr/bin/echoscu", ["-to", "5", "-aet", "SPECTCT1", "-aec", "NMBRIDGE", "127.0.0.1", "\(tlsPort)"])
        #expect(plain.status != 0)
        #expect(await rig.sink.wait { rig.sink.events("dicom.instance.stored").count == 1 })
        await rig.stop()
        #expect(rig.sink.events("dicom.association.accepted").allSatisfy { $0.data["tls"] == .bool(true) })
        #expect(rig.sink.events("dicom.association.accepted").count == 2)
    }
}

/// Hostile or broken senders: the receiver answers with an abort or a failure status,
/// keeps serving the others, and leaves nothing half-written.
@Suite(.serialized) struct DicomRobustnessTests {
    /// Connects, sends `bytes`, and returns what the receiver sent back before closing.
    func exchange(port: Int, _ bytes: [UInt8]) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = UInt16(port).bigEndian
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                let connected = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                guard connected == 0 else { return continuation.resume(throwing: DatasetError(message: "connect failed")) }
                var timeout = timeval(tv_sec: 30, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { break }
                    received += buffer[0..<n]
                }
                continuation.resume(returning: received)
            }.start()
        }
    }

    func echoStillWorks(_ rig: ReceiverRig) async throws -> Bool {
        try await DicomPeers.run("/usr/bin/echoscu", ["-aet", "SPECTCT1", "-aec", "NMBRIDGE", "127.0.0.1", "\(rig.port)"]).status == 0
    }

    @Test func garbageAndAbsurdLengthsAreAbortedWithoutHarm() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        // A PDU type that does not exist, then an association request claiming 4 GiB.
        let unknown = try await exchange(port: rig.port, [0x09, 0, 0, 0, 0, 4, 1, 2, 3, 4])
        #expect(unknown.first == 0x07, "A-ABORT: \(unknown)")
        let absurd = try await exchange(port: rig.port, [0x01, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1])
        #expect(absurd.first == 0x07, "A-ABORT: \(absurd)")
        // A truncated association request (the header promises more than follows), then EOF.
        var truncated = PDU.associateRequest(PDUTests.request).encoded()
        truncated[5] &+= 20
        _ = try await exchange(port: rig.port, truncated)
        #expect(try await echoStillWorks(rig))
    }

    @Test func aSilentConnectionIsClosedAfterTheARTIMTimeout() async throws {
        let rig = try await ReceiverRig.start { $0.artimTimeout = 1 }
        defer { rig.cleanUp() }
        let started = ContinuousClock.now
        let answer = try await exchange(port: rig.port, [])
        #expect(answer.first == 0x07, "A-ABORT after ARTIM: \(answer)")
        #expect(started.duration(to: .now) < .seconds(25), "closed by the receiver, not by the client's 30 s timeout")
    }

    @Test func associationsBeyondTheLimitAreRejectedNotDropped() async throws {
        let rig = try await ReceiverRig.start { $0.maxAssociations = 1 }
        defer { rig.cleanUp() }
        // Hold one association open (an accepted request and nothing more) while echoscu tries.
        async let held = exchange(port: rig.port, PDU.associateRequest(PDUTests.request).encoded())
        #expect(await rig.sink.wait { !rig.sink.events("dicom.association.accepted").isEmpty })
        let second = try await DicomPeers.run("/usr/bin/echoscu", ["-aet", "SPECTCT1", "-aec", "NMBRIDGE", "127.0.0.1", "\(rig.port)"])
        #expect(second.status != 0 && second.output.contains("Local Limit Exceeded"), "\(second.output)")
        rig.cleanUp()
        _ = try? await held
        let rejected = rig.sink.events("dicom.association.rejected").first
        #expect(rejected?.data["result"] == .int(2) && rejected?.data["source"] == .int(3) && rejected?.data["reason"] == .int(2))
    }

    @Test func aFullDiskFailsTheStoreWithA700AndTheReceiverCarriesOn() async throws {
        guard getuid() == 0 else {
            Issue.record("this test mounts a small tmpfs and needs root; run the suite as root (CI does)")
            return
        }
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        try FileManager.default.createDirectory(atPath: rig.storage, withIntermediateDirectories: true)
        let mount = try await DicomPeers.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", rig.storage])
        #expect(mount.status == 0, "mount: \(mount.output)")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = ["-l", rig.storage]
            if (try? umount.runBoundToTest()) != nil { umount.waitUntilExit() }
        }
        let big = rig.directory + "/big.dcm"
        let small = rig.directory + "/small.dcm"
        #expect(try await DicomPeers.python(["make-nm", big, "--frames", "6000"]).status == 0)  // about 3 MB
        #expect(try await DicomPeers.python(["make-nm", small]).status == 0)
        let sent = try await rig.storescu([big, small], options: ["--no-halt", "-v"])
        #expect(sent.output.contains("Refused: OutOfResources"), "storescu saw 0xA700: \(sent.output)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.instance.failed").isEmpty && !rig.sink.events("dicom.association.released").isEmpty })
        let failure = rig.sink.events("dicom.instance.failed").first?.data
        #expect(failure?["status"] == .string("0xA700"))
        #expect(failure?["error"]?.stringValue?.contains(rig.storage) == true, "names the path: \(failure?["error"] ?? .null)")
        #expect(rig.sink.events("dicom.instance.stored").count == 1, "the small one still fits")
        #expect(DicomPeers.files(under: rig.storage + "/.incoming").filter { !$0.hasSuffix(".ready") }.isEmpty, "the partial file is removed")
        #expect(try await echoStillWorks(rig))
    }
}
