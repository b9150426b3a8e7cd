import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// Forwarding through the daemon (docs/dicom.md, "Forwarding"): DCMTK's storescu sends to
/// nmbridged, whose outbound queue sends on to DCMTK's storescp (bit-preserving, so that
/// what arrives can be compared byte for byte), across a destination outage and a kill -9.
@Suite struct ForwardingTests {
    /// storescp on `port`, bound to the test; its files under `output`.
    static func startStoreSCP(port: Int, output: String, log: String, arguments: [String] = []) async throws -> Process {
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/storescp")
        process.arguments = ["--aetitle", "PACS", "+B", "--output-directory", output] + arguments + ["\(port)"]
        process.environment = ProcessInfo.processInfo.environment.merging(["TCP_NODELAY": "1"]) { _, new in new }
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.runBoundToTest()
        for _ in 0..<600 {
            let probe = try? await runProgram("/usr/bin/echoscu", ["-aec", "PACS", "127.0.0.1", "\(port)"])
            if probe?.status == 0 { return process }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DaemonFailed(message: "storescp did not answer on \(port)")
    }

    static func config(_ dir: String, port: Int, destinationPort: Int, route: String = "") -> String {
        daemonConfig(
            dir,
            extra: """
                [dicom]
                port = \(port)
                accept_any_calling_ae = true
                stable_after_s = 2

                [dicom.outbound]
                initial_backoff_s = 0.2
                max_backoff_s = 1

                [[dicom.destination]]
                name = "pacs"
                ae_title = "PACS"
                host = "127.0.0.1"
                port = \(destinationPort)
                connect_timeout_s = 2
                timeout_s = 10

                [[dicom.route]]
                name = "all-to-pacs"
                destinations = ["pacs"]
                \(route)
                """)
    }

    /// The dataset bytes of a Part-10 file (after its file meta group).
    static func dataset(_ path: String) throws -> [UInt8] {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        guard bytes.count > 144 else { return [] }
        let length = Int(bytes[140]) | Int(bytes[141]) << 8 | Int(bytes[142]) << 16 | Int(bytes[143]) << 24
        return Array(bytes[min(bytes.count, 144 + length)...])
    }

    /// 400 small CT slices (pydicom) in `dir/study`, sorted.
    static func makeStudy(_ dir: String) async throws -> [String] {
        try FileManager.default.createDirectory(atPath: dir + "/study", withIntermediateDirectories: true)
        let made = try await runProgram(
            testPython, [repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-ct-series", dir + "/study", "--count", "400", "--rows", "32"])
        #expect(made.status == 0, "\(made.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/study").sorted().map { dir + "/study/" + $0 }
        #expect(files.count == 400)
        return files
    }

    /// `options`: e.g. `-xr` to propose RLE lossless (storescu proposes only uncompressed
    /// syntaxes by default).
    static func send(_ files: [String], port: Int, options: [String] = []) async throws {
        // One storescu per 100 files: the argument list stays short.
        for start in stride(from: 0, to: files.count, by: 100) {
            let sent = try await runProgram(
                "/usr/bin/storescu", options + ["-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)"] + files[start..<min(files.count, start + 100)],
                environment: ProcessInfo.processInfo.environment.merging(["TCP_NODELAY": "1"]) { _, new in new })
            #expect(sent.status == 0, "storescu: \(sent.stdout)\(sent.stderr)")
        }
    }

    @Test func aStudyOf400ArrivesCompleteAndByteIdenticalAcrossAnOutageAndAKill() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try await Self.makeStudy(dir)
        let port = try freeTCPPort()
        let pacsPort = try freeTCPPort()
        let output = dir + "/pacs"
        let config = Self.config(dir, port: port, destinationPort: pacsPort)
        var daemon = try await DaemonProcess.start(directory: dir, config: config)
        defer { daemon.signal(SIGKILL) }

        // The destination is up for the first half, stopped for the second.
        var pacs = try await Self.startStoreSCP(port: pacsPort, output: output, log: dir + "/pacs-1.log")
        try await Self.send(Array(files[..<200]), port: port)
        _ = try await daemon.waitForEvents(timeout: .seconds(120)) { events in
            events.filter { $0.kind == "dicom.forward.delivered" }.count >= 50
        }
        stopProcess(pacs)
        try await Self.send(Array(files[200...]), port: port)
        _ = try await daemon.waitForEvents(timeout: .seconds(60)) { events in
            events.contains { $0.kind == "dicom.forward.attempt_failed" }
        }
        // While it is down: the queue shows the backlog and the error, the CLI too.
        let status = try await runProgram(productsDirectory + "/nmbridge", ["--socket", daemon.socketPath, "outbound"])
        #expect(status.status == 0 && status.stdout.contains("pacs: ") && status.stdout.contains("last error"), "\(status.stdout)\(status.stderr)")
        let health = try JSONValue.parse(try await daemon.client.get("/v1/health").text)
        #expect((health["outbound"]?["waiting"]?.intValue ?? 0) > 0, "\(health.jsonText)")

        // The destination comes back, and the daemon is killed while it catches up.
        pacs = try await Self.startStoreSCP(port: pacsPort, output: output, log: dir + "/pacs-2.log")
        defer { stopProcess(pacs) }
        _ = try await daemon.waitForEvents(timeout: .seconds(120)) { events in
            events.filter { $0.kind == "dicom.forward.delivered" }.count >= 220
        }
        daemon.signal(SIGKILL)
        try await daemon.waitForExit()
        daemon = try await DaemonProcess.start(directory: dir, config: config)
        let events = try await daemon.waitForEvents(timeout: .seconds(240)) { events in
            let queued = Set(events.filter { $0.kind == "dicom.forward.queued" }.map(\.seq))
            let done = Set(events.filter { $0.kind == "dicom.forward.delivered" }.compactMap { $0.data["job"]?.intValue })
            return queued.count >= 400 && queued.isSubset(of: done)
        }
        // Each job's life is in the journal: queued once per instance, delivered once.
        let queued = events.filter { $0.kind == "dicom.forward.queued" }
        let delivered = events.filter { $0.kind == "dicom.forward.delivered" }
        #expect(queued.count == 400, "one job per instance")
        #expect(Set(queued.compactMap { $0.data["sop_instance_uid"]?.stringValue }).count == 400)
        #expect(delivered.count == 400 && Set(delivered.compactMap { $0.data["job"]?.intValue }) == Set(queued.map(\.seq)))
        #expect(!events.contains { $0.kind == "dicom.forward.gave_up" })
        // Everything arrived, byte for byte.
        let arrived = try FileManager.default.contentsOfDirectory(atPath: output).map { output + "/" + $0 }
        #expect(arrived.count == 400, "\(arrived.count) files at the destination")
        var bySOP: [String: String] = [:]
        for path in arrived { bySOP[String(path.split(separator: "/").last!.split(separator: ".", maxSplits: 1).last ?? "")] = path }
        for event in events.filter({ $0.kind == "dicom.instance.stored" }) {
            guard let sop = event.data["sop_instance_uid"]?.stringValue, let path = event.data["path"]?.stringValue else { continue }
            let copy = try #require(bySOP[sop], "\(sop) did not arrive")
            #expect(try Self.dataset(copy) == Self.dataset(path), "\(sop) arrived changed")
        }
        let after = try JSONValue.parse(try await daemon.client.get("/v1/outbound").text)
        #expect(after["waiting"]?.intValue == 0, "\(after.jsonText)")
    }

    /// The same to Orthanc, another implementation's storage SCP: all 400 arrive with the
    /// datasets sent, across a kill -9 of the daemon mid-delivery (Orthanc keeps the first
    /// copy of an instance sent twice, and answers success).
    @Test func aStudyOf400ReachesOrthancCompleteAcrossAKill() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try await Self.makeStudy(dir)
        let port = try freeTCPPort()
        let pacsPort = try freeTCPPort()
        let config = Self.config(dir, port: port, destinationPort: pacsPort)
        var daemon = try await DaemonProcess.start(directory: dir, config: config)
        defer { daemon.signal(SIGKILL) }
        // The whole study waits in the queue, then Orthanc starts, slowed to 30 ms an
        // instance (a Lua filter: on its own it takes a millisecond or two, faster than a
        // loaded machine lets the test look). Once it holds 20 it is frozen (SIGSTOP), the
        // daemon is killed in the middle of its association, and Orthanc goes on (SIGCONT).
        try await Self.send(files, port: port)
        _ = try await daemon.waitForEvents(timeout: .seconds(120)) { events in
            events.filter { $0.kind == "dicom.forward.queued" }.count >= 400
        }
        let orthanc = try await startOrthanc(directory: dir, aeTitle: "PACS", port: pacsPort, secondsPerInstance: 0.03)
        defer { stopProcess(orthanc) }
        func held() -> Int { (try? FileManager.default.subpathsOfDirectory(atPath: dir + "/orthanc-storage"))?.count ?? 0 }
        let waited = ContinuousClock.now
        while held() < 20, waited.duration(to: .now) < .seconds(120) { try await Task.sleep(for: .milliseconds(5)) }
        kill(orthanc.processIdentifier, SIGSTOP)
        let atKill = "Orthanc held \(held()) paths after \(waited.duration(to: .now))"
        daemon.signal(SIGKILL)
        try await daemon.waitForExit()
        kill(orthanc.processIdentifier, SIGCONT)
        daemon = try await DaemonProcess.start(directory: dir, config: config)
        let events = try await daemon.waitForEvents(timeout: .seconds(240)) { events in
            let queued = Set(events.filter { $0.kind == "dicom.forward.queued" }.map(\.seq))
            let done = Set(events.filter { $0.kind == "dicom.forward.delivered" }.compactMap { $0.data["job"]?.intValue })
            return queued.count >= 400 && queued.isSubset(of: done)
        }
        #expect(events.filter { $0.kind == "dicom.forward.queued" }.count == 400, "one job per instance")
        let restart = try #require(events.last { $0.kind == "daemon.started" }?.seq)
        #expect(events.contains { $0.kind == "dicom.forward.delivered" && $0.seq > restart }, "the kill came in the middle of the deliveries; \(atKill); delivered before it: \(events.filter { $0.kind == "dicom.forward.delivered" && $0.seq < restart }.count)")
        #expect(!events.contains { $0.kind == "dicom.forward.gave_up" })
        // Orthanc's storage holds each instance once, with the dataset that was received.
        var received: [[UInt8]: String] = [:]
        for event in events where event.kind == "dicom.instance.stored" {
            guard let sop = event.data["sop_instance_uid"]?.stringValue, let path = event.data["path"]?.stringValue else { continue }
            received[try Self.dataset(path)] = sop
        }
        #expect(received.count == 400)
        var bySOP: [String: String] = [:]
        for path in try FileManager.default.subpathsOfDirectory(atPath: dir + "/orthanc-storage").map({ dir + "/orthanc-storage/" + $0 }) {
            guard let bytes = FileManager.default.contents(atPath: path), bytes.count > 132, bytes[128..<132].elementsEqual("DICM".utf8) else {
                continue
            }
            let sop = received[try Self.dataset(path)]
            #expect(sop != nil, "\(path) in Orthanc's storage holds no dataset that was received")
            if let sop { bySOP[sop] = path }
        }
        #expect(bySOP.count == 400, "\(bySOP.count) of 400 instances in Orthanc, byte for byte")
    }

    /// +xi: the destination takes implicit VR little endian only. An explicit VR instance is
    /// converted on the way (losslessly: the same dataset arrives); an RLE-compressed one
    /// cannot be, and ends in a journaled give-up.
    @Test func aRejectingDestinationEndsInAJournaledGiveUpAndADropAndRetryAreJournaled() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["ct", "ct2"] {
            let made = try await runProgram(testPython, [repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-ct", dir + "/\(name).dcm", "--rows", "16"])
            #expect(made.status == 0, "\(made.stderr)")
        }
        let compressed = try await runProgram("/usr/bin/dcmcrle", [dir + "/ct2.dcm", dir + "/rle.dcm"])
        #expect(compressed.status == 0, "\(compressed.stderr)")
        let port = try freeTCPPort()
        let pacsPort = try freeTCPPort()
        let pacs = try await Self.startStoreSCP(port: pacsPort, output: dir + "/pacs", log: dir + "/pacs.log", arguments: ["+xi"])
        defer { stopProcess(pacs) }
        let daemon = try await DaemonProcess.start(directory: dir, config: Self.config(dir, port: port, destinationPort: pacsPort))
        defer { daemon.signal(SIGKILL) }
        try await Self.send([dir + "/ct.dcm"], port: port)
        let converted = try await daemon.waitForEvents(timeout: .seconds(60)) { $0.contains { $0.kind == "dicom.forward.delivered" } }
        let delivery = try #require(converted.first { $0.kind == "dicom.forward.delivered" })
        #expect(delivery.data["transfer_syntax"] == .string("1.2.840.10008.1.2"), "\(delivery.dataJSON)")
        let copy = try #require(try FileManager.default.contentsOfDirectory(atPath: dir + "/pacs").first.map { dir + "/pacs/" + $0 })
        let same = try await runProgram(testPython, [repositoryRoot + "/Tests/Peers/dicom_peer.py", "same", dir + "/ct.dcm", copy])
        #expect(same.status == 0, "the converted copy holds another dataset: \(same.stderr)")

        try await Self.send([dir + "/rle.dcm"], port: port, options: ["-xr"])
        let events = try await daemon.waitForEvents(timeout: .seconds(60)) { $0.contains { $0.kind == "dicom.forward.gave_up" } }
        let gaveUp = try #require(events.first { $0.kind == "dicom.forward.gave_up" })
        let job = try #require(events.last { $0.kind == "dicom.forward.queued" })
        #expect(gaveUp.data["job"]?.intValue == job.seq)
        #expect(gaveUp.data["reason"]?.stringValue?.contains("transfer syntax not supported") == true, "\(gaveUp.dataJSON)")
        #expect(!events.contains { $0.kind == "dicom.forward.attempt_failed" }, "a rejection is not retried")

        // An operator retries it: a new job, journaled, which the destination rejects again.
        let retried = try await runProgram(productsDirectory + "/nmbridge", ["--socket", daemon.socketPath, "outbound", "retry", "\(job.seq)"])
        #expect(retried.status == 0, "\(retried.stdout)\(retried.stderr)")
        let again = try await daemon.waitForEvents(timeout: .seconds(60)) { $0.filter { $0.kind == "dicom.forward.gave_up" }.count == 2 }
        #expect(again.contains { $0.kind == "dicom.forward.retried" && $0.data["job"]?.intValue == job.seq })
        #expect(again.contains { $0.kind == "dicom.forward.queued" && $0.data["retry_of"]?.intValue == job.seq })
        // Unknown jobs are refused with a message naming them.
        let unknown = try await runProgram(productsDirectory + "/nmbridge", ["--socket", daemon.socketPath, "outbound", "drop", "999999"])
        #expect(unknown.status == 1 && unknown.stderr.contains("999999"), "\(unknown.stderr)")
    }
}

/// An RRDSR from the whole chain: a dose calibrator (the script driver) measures the
/// syringe and the residual, the console's NM image arrives, QC reconciles the
/// administration, the outbound service writes the report and sends it to storescp.
@Suite struct RRDSRChainTests {
    @Test func aReconciledAdministrationGetsAnRRDSRThatReachesTheDestination() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            link up "simulated dose calibrator"
            emit dosecal.measurement {"nuclide": "Tc-99m", "activity_bq": 7.4e8, "reading": "20.00 mCi", "unit": "mCi"}
            wait 3
            emit dosecal.measurement {"nuclide": "Tc-99m", "activity_bq": 2.0e7, "reading": "0.540 mCi", "unit": "mCi"}
            wait 36000
            """.write(toFile: dir + "/hotlab.script", atomically: true, encoding: .utf8)
        let port = try freeTCPPort()
        let pacsPort = try freeTCPPort()
        let pacs = try await ForwardingTests.startStoreSCP(port: pacsPort, output: dir + "/pacs", log: dir + "/pacs.log")
        defer { stopProcess(pacs) }
        let config = daemonConfig(
            dir,
            devices: "[[device]]\nid = \"dosecal-hotlab\"\ndriver = \"script\"\nscript = \"\(dir)/hotlab.script\"\n",
            extra: """
                [dicom]
                port = \(port)
                accept_any_calling_ae = true
                stable_after_s = 1

                [[dicom.destination]]
                name = "dose-registry"
                ae_title = "PACS"
                host = "127.0.0.1"
                port = \(pacsPort)

                [[dicom.route]]
                name = "rrdsr-only"
                destinations = ["dose-registry"]
                instances = false
                rrdsr = true

                [qc]
                """)
        let daemon = try await DaemonProcess.start(directory: dir, config: config)
        defer { daemon.signal(SIGKILL) }
        let measured = try await daemon.waitForEvents(timeout: .seconds(60)) { events in
            events.filter { $0.kind == "dosecal.measurement" }.count >= 2
        }
        let syringe = try #require(measured.first { $0.kind == "dosecal.measurement" })
        // Injected 1.5 s after the syringe was measured (before the residual).
        let injection = syringe.time.addingTimeInterval(1.5)
        let study = "1.2.826.0.1.3680043.8.498.19.9"
        let made = try await runProgram(
            testPython,
            [
                repositoryRoot + "/Tests/Peers/dicom_peer.py", "make-nm", dir + "/nm.dcm", "--study-uid", study, "--dose", "720",
                "--start-datetime", QCChainTests.dicomDateTime(injection) + "+0000", "--acquisition",
                QCChainTests.dicomDateTime(injection.addingTimeInterval(3 * 3600)), "--timezone-offset", "+0000",
                "--agent-code", "53951001^SCT^Technetium Tc^99m^ oxidronate", "--route", "IV",
            ])
        #expect(made.status == 0, "\(made.stderr)")
        let sent = try await runProgram("/usr/bin/storescu", ["-aet", "CONSOLE1", "-aec", "NMBRIDGE", "127.0.0.1", "\(port)", dir + "/nm.dcm"])
        #expect(sent.status == 0, "storescu: \(sent.stdout)\(sent.stderr)")
        let events = try await daemon.waitForEvents(timeout: .seconds(90)) { events in
            events.contains { $0.kind == "dicom.forward.delivered" }
        }
        let reconciled = try #require(events.first { $0.kind == "qc.administration.reconciled" })
        let created = try #require(events.first { $0.kind == "dicom.rrdsr.created" }, "\(events.map(\.kind))")
        #expect(created.data["source_seq"]?.intValue == reconciled.seq && created.data["study_uid"] == .string(study))
        let job = try #require(events.first { $0.kind == "dicom.forward.queued" })
        #expect(job.data["what"] == .string("rrdsr") && job.data["destination"] == .string("dose-registry"))
        #expect(events.filter { $0.kind == "dicom.forward.queued" }.count == 1, "the image itself is not forwarded by this route")
        // What arrived is the report, with the administration as reconciled (both measurements).
        let arrived = try FileManager.default.contentsOfDirectory(atPath: dir + "/pacs").map { dir + "/pacs/" + $0 }
        #expect(arrived.count == 1)
        let mbq = try #require(reconciled.data["measured_bq"]?.doubleValue) / 1e6
        let checked = try await runProgram(
            testPython,
            [
                repositoryRoot + "/Tests/Peers/rrdsr_check.py", try #require(arrived.first), "--study-uid", study, "--mbq", String(mbq),
                "--agent", "53951001^SCT", "--route", "47625008^SCT", "--pre", "--post",
            ])
        #expect(checked.status == 0, "\(checked.stdout)\(checked.stderr)")
        // On demand, the same report: `nmbridge rrdsr` builds identical bytes.
        let output = dir + "/again.dcm"
        let cli = try await runProgram(productsDirectory + "/nmbridge", ["--socket", daemon.socketPath, "rrdsr", study, "-o", output])
        #expect(cli.status == 0, "\(cli.stdout)\(cli.stderr)")
        let stored = try #require(created.data["path"]?.stringValue)
        #expect(FileManager.default.contents(atPath: output) == FileManager.default.contents(atPath: stored))
        let summary = try await runProgram(productsDirectory + "/nmbridge", ["--socket", daemon.socketPath, "rrdsr", study])
        #expect(summary.stdout.contains("Technetium Tc^99m^ oxidronate") && summary.stdout.contains("residual"), "\(summary.stdout)")
    }
}
