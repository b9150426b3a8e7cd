import Crypto
import Foundation
import Logging
import NMBridgeCore
import TestSupport
import Testing

@testable import DicomStore

/// The write-ahead spool (issue 14): C-STORE success after a data sync of the spool,
/// files put in place and journaled by the materializer, records recovered at start.
@Suite(.serialized) struct SpoolTests {
    @Test func spooledInstancesArePutInPlaceJournaledInOrderAndReleased() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let series = rig.directory + "/series"
        try FileManager.default.createDirectory(atPath: series, withIntermediateDirectories: true)
        #expect(try await DicomPeers.python(["make-ct-series", series, "--count", "12", "--rows", "64"]).status == 0)
        let files = (1...12).map { String(format: "\(series)/CT%04d.dcm", $0) }
        let sent = try await rig.storescu(files)
        #expect(sent.status == 0, "\(sent.output)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.association.released").isEmpty })
        let stored = rig.sink.events("dicom.instance.stored")
        #expect(stored.count == 12)
        // The association's closing event comes after its instances' events.
        let kinds = rig.sink.drafts.withLock { $0.map(\.kind) }.filter { $0.hasPrefix("dicom.") }
        #expect(kinds.first == "dicom.association.accepted" && kinds.last == "dicom.association.released", "\(kinds)")
        for event in stored {
            let path = try #require(event.data["path"]?.stringValue)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(event.data["sha256"]?.stringValue == Hex.encode(SHA256.hash(data: bytes)), "\(path) has the bytes its event names")
            #expect(event.data["recovered"] == nil)
        }
        // Every record went through a data sync before its answer, then was released.
        let counts = try #require(rig.shared.spool?.syncer.counts)
        #expect(counts.records == 12)
        #expect(counts.syncs >= 1 && counts.syncs <= 12)
        #expect(await rig.sink.wait { rig.shared.spool?.usage.records == 0 })
        #expect(rig.shared.spool?.usage.bypassed == 0)
        #expect(DicomPeers.files(under: rig.storage + "/.incoming").filter { !$0.hasSuffix(".ready") }.isEmpty, "no .part name stays")
    }

    @Test func anInstanceLargerThanASegmentIsStoredWithoutTheSpool() async throws {
        let rig = try await ReceiverRig.start { $0.spoolMB = 16 }  // segments of 4 MiB
        defer { rig.cleanUp() }
        let big = rig.directory + "/big.dcm"
        #expect(try await DicomPeers.python(["make-nm", big, "--frames", "12000"]).status == 0)  // about 6 MB
        let sent = try await rig.storescu([big])
        #expect(sent.status == 0, "\(sent.output)")
        #expect(await rig.sink.wait { !rig.sink.events("dicom.association.released").isEmpty })
        #expect(rig.sink.events("dicom.instance.stored").count == 1)
        #expect(rig.shared.spool?.usage.bypassed == 1)
        #expect(rig.shared.spool?.syncer.counts.records == 0)
        #expect(try await datasetDump(big) == datasetDump(try #require(rig.storedFiles.first)))
    }

    /// The state a kill leaves: two records synced (acknowledged) but not put in place, and
    /// a third cut short (its payload does not match its checksum: never acknowledged).
    @Test func recoveryPutsWholeRecordsInPlaceAndDiscardsTornOnes() async throws {
        let directory = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let storage = directory + "/dicom"
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        var sources: [String] = []
        for index in 1...3 {
            let path = directory + "/ct\(index).dcm"
            #expect(try await DicomPeers.python(["make-ct", path, "--instance", "\(index)"]).status == 0)
            sources.append(path)
        }
        do {
            let spool = InstanceSpool(storage: storage, megabytes: 64, logger: Logger(label: "test"))
            #expect(try spool.open().records.isEmpty)
            spool.recovered()
            for (index, source) in sources.enumerated() {
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: source)))
                let writer = SpoolWriter(spool: spool)
                writer.begin()
                writer.append(Array(bytes.prefix(100)))
                writer.append(Array(bytes.dropFirst(100)))
                let record = try #require(writer.seal(association: 7, peer: "192.0.2.7"))
                if index == 1 {
                    // A record of the first version (SHA-256 instead of CRC-32C), as an earlier
                    // release left it: recovered all the same.
                    var header = InstanceSpool.read(record.fd, offset: record.offset, count: 138)
                    header.replaceSubrange(0..<8, with: InstanceSpool.recordMagicSHA256)
                    header.replaceSubrange(32..<64, with: Array(SHA256.hash(data: bytes)))
                    #expect(InstanceSpool.pwriteAll(record.fd, header, at: record.offset))
                }
                if index == 2 {
                    // The last record's payload never reached the disk whole.
                    let garbage = [UInt8](repeating: 0xEE, count: 64)
                    #expect(InstanceSpool.pwriteAll(record.fd, garbage, at: record.offset + InstanceSpool.page + 200))
                }
                fdatasync(record.fd)
            }
        }
        let rig = try await ReceiverRig.start { $0.storage = storage }
        defer { rig.cleanUp() }
        let recovered = try #require(rig.sink.events("dicom.spool.recovered").first)
        #expect(recovered.data["recovered_instances"] == .int(2))
        #expect(recovered.data["torn"] == .int(1))
        let stored = rig.sink.events("dicom.instance.stored")
        #expect(stored.count == 2)
        #expect(stored.allSatisfy { $0.data["recovered"] == .bool(true) && $0.data["peer"] == .string("192.0.2.7") })
        for (event, source) in zip(stored, sources) {
            let path = try #require(event.data["path"]?.stringValue)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(contentsOf: URL(fileURLWithPath: source)), "\(path) is the record's bytes")
        }
        #expect(rig.storedFiles.count == 2, "the torn record left nothing")
        #expect(rig.shared.spool?.usage.records == 0)
        // The spool works on after recovery.
        let sent = try await rig.storescu([sources[2]])
        #expect(sent.status == 0, "\(sent.output)")
        #expect(await rig.sink.wait { rig.sink.events("dicom.instance.stored").count == 3 })
    }

    /// An instance acknowledged from the spool that cannot be put in place (here a file
    /// stands where its study's folder goes; a full disk does the same) stays in the spool:
    /// the fault is shown, nothing is journaled as stored, and the batch is retried until
    /// it goes in, with the bytes that were acknowledged.
    @Test func anInstanceThatCannotBePutInPlaceStaysInTheSpoolAndIsRetried() async throws {
        let rig = try await ReceiverRig.start()
        defer { rig.cleanUp() }
        let study = "1.2.826.0.1.3680043.8.498.14001"
        let source = rig.directory + "/nm.dcm"
        #expect(try await DicomPeers.python(["make-nm", source, "--study-uid", study]).status == 0)
        let blocker = rig.storage + "/" + study
        try FileManager.default.createDirectory(atPath: rig.storage, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: blocker, contents: Data("not a folder".utf8)))
        let sent = try await rig.storescu([source])
        #expect(sent.status == 0, "acknowledged from the spool: \(sent.output)")
        let status = DicomReceiverStatus()
        status.attach(rig.shared)
        #expect(await rig.sink.wait { status.snapshot?.materializerFault != nil })
        let fault = try #require(status.snapshot?.materializerFault)
        #expect(fault.contains(blocker), "the fault names the path: \(fault)")
        #expect(rig.sink.events("dicom.instance.stored").isEmpty)
        #expect(rig.shared.spool?.usage.records == 1, "the record stays until the file is in place")
        try? await Task.sleep(for: .seconds(2.5))  // two retries or more, still blocked
        // The instance waits, and the association's closing event behind it (journal order).
        #expect(rig.sink.events("dicom.instance.stored").isEmpty && (status.snapshot?.materializerPending ?? 0) >= 1)
        #expect(rig.sink.events("dicom.association.released").isEmpty)

        try FileManager.default.removeItem(atPath: blocker)
        #expect(await rig.sink.wait { rig.sink.events("dicom.instance.stored").count == 1 })
        let stored = try #require(rig.sink.events("dicom.instance.stored").first)
        let path = try #require(stored.data["path"]?.stringValue)
        #expect(path.hasPrefix(blocker + "/"))
        #expect(stored.data["sha256"]?.stringValue == Hex.encode(SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path)))))
        #expect(try await datasetDump(source) == datasetDump(path))
        #expect(await rig.sink.wait { rig.shared.spool?.usage.records == 0 && status.snapshot?.materializerFault == nil })
        #expect(rig.sink.events("dicom.instance.failed").isEmpty)
    }

    /// `duplicates = "reject"` is checked before the answer, against what is in place. Two
    /// associations sending different bytes of one instance before either is in place are
    /// both acknowledged; the materializer keeps the first and journals the second as failed,
    /// saying its sender heard success. (Held back here by a file where the study's folder
    /// goes, so that the race is not left to timing.)
    @Test func rejectedDuplicatesRacingThroughTheSpoolKeepTheFirstAndJournalTheSecond() async throws {
        let rig = try await ReceiverRig.start { $0.duplicates = .reject }
        defer { rig.cleanUp() }
        let study = "1.2.826.0.1.3680043.8.498.14002"
        let uids = ["--study-uid", study, "--series-uid", study + ".1", "--instance-uid", study + ".1.1"]
        let first = rig.directory + "/first.dcm"
        let second = rig.directory + "/second.dcm"
        #expect(try await DicomPeers.python(["make-nm", first, "--dose", "740"] + uids).status == 0)
        #expect(try await DicomPeers.python(["make-nm", second, "--dose", "555"] + uids).status == 0)
        let blocker = rig.storage + "/" + study
        try FileManager.default.createDirectory(atPath: rig.storage, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: blocker, contents: Data()))
        #expect(try await rig.storescu([first]).status == 0)
        #expect(try await rig.storescu([second]).status == 0, "nothing in place yet: both are acknowledged")
        #expect(rig.sink.events("dicom.instance.stored").isEmpty)

        try FileManager.default.removeItem(atPath: blocker)
        #expect(await rig.sink.wait { rig.sink.events("dicom.association.released").count == 2 })
        #expect(rig.sink.events("dicom.instance.stored").count == 1 && rig.sink.events("dicom.instance.failed").count == 1)
        let stored = try #require(rig.sink.events("dicom.instance.stored").first?.data["path"]?.stringValue)
        #expect(try await datasetDump(first) == datasetDump(stored), "the first one received is kept")
        let failed = try #require(rig.sink.events("dicom.instance.failed").first?.data)
        #expect(failed["status"] == .string("0x0111"))
        #expect(failed["error"]?.stringValue?.contains("after its sender was answered success") == true, "\(failed)")
        #expect(await rig.sink.wait { rig.shared.spool?.usage.records == 0 })
        #expect(DicomPeers.files(under: rig.storage + "/.incoming").filter { !$0.hasSuffix(".ready") }.isEmpty, "the second's file is gone")
    }

    /// The record checksum: CRC-32C's check value, and the same in pieces as whole.
    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(InstanceSpool.crc32c(Array("123456789".utf8)) == 0xE306_9283)
        let bytes = (0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole = InstanceSpool.crc32c(bytes)
        var pieces: UInt32 = 0
        for start in stride(from: 0, to: bytes.count, by: 4097) {
            pieces = InstanceSpool.crc32c(Array(bytes[start..<min(bytes.count, start + 4097)]), continuing: pieces)
        }
        #expect(pieces == whole)
        #expect(InstanceSpool.crc32c([]) == 0)
    }

    /// Files made ahead: taken, refilled in the background, removed on close.
    @Test func readyFilesAreMadeAheadAndRemovedOnClose() async throws {
        let directory = try DicomPeers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory + "/.incoming", withIntermediateDirectories: true)
        let ready = ReadyFiles(storage: directory)
        #expect(ready.take() == nil, "none before the first refill")
        func count() -> Int { DicomPeers.files(under: directory + "/.incoming").filter { $0.hasSuffix(ReadyFiles.suffix) }.count }
        for _ in 0..<3000 where count() < ReadyFiles.target { try await Task.sleep(for: .milliseconds(10)) }
        #expect(count() == ReadyFiles.target)
        let taken = try #require(ready.take())
        #expect(taken.fd >= 0 && FileManager.default.fileExists(atPath: taken.path))
        close(taken.fd)
        ready.close()
        #expect(count() == 1, "only the taken one stays (its taker renames it)")
        #expect(ready.take() == nil)
    }
}
