import Foundation
import NMBridgeCore
import NMClient
import TestSupport
import Testing

/// Where `swift build` put the executables (next to the test bundle).
let productsDirectory: String = {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("nmbridged").path) { return url.path }
        url.deleteLastPathComponent()
    }
    return FileManager.default.currentDirectoryPath + "/.build/debug"
}()

func temporaryDirectory(_ name: String = #function) throws -> String { try makeTemporaryDirectory("it", name) }

/// Runs a program to completion and returns its exit status and output. The waiting
/// happens on a thread of its own: tests run in parallel on a cooperative pool as wide as
/// the machine (2 threads here), and a test that blocks one stalls everyone else's timing.
@discardableResult
func runProgram(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> (status: Int32, stdout: String, stderr: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            continuation.resume(with: Result { try runProgramBlocking(executable, arguments, environment: environment) })
        }.start()
    }
}

/// `runProgram` for places that cannot await (a `defer`); use only for instant commands.
@discardableResult
func runProgramBlocking(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.runBoundToTest()
    // Read both pipes concurrently so that neither fills up and blocks the child.
    nonisolated(unsafe) var errData = Data()
    let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
    reader.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while !reader.isFinished { usleep(1000) }
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// A test configuration for a daemon whose files all live in `directory`.
/// A `[qc]` table with one Cs-137 check source (serial CS137-0042) on `device`, certified
/// `days` ago with the activity that has decayed to `bq` today.
func qcWithCheckSource(device: String, readsTodayBq bq: Double, certifiedDaysAgo days: Double) -> String {
    let seconds = days * 86_400
    let referenceBq = bq / Radionuclide.named("Cs-137")!.decay(1, over: seconds)
    return """
        [qc]
        [[qc.check_source]]
        device = "\(device)"
        nuclide = "Cs-137"
        reference_bq = \(referenceBq)
        reference_date = "\(Timestamp.format(Date().addingTimeInterval(-seconds)))"
        serial = "CS137-0042"
        """
}

func daemonConfig(_ directory: String, devices: String = "", extra: String = "") -> String {
    """
    [daemon]
    node = "test-node"
    state_dir = "\(directory)"

    [journal]
    sync = "full"

    [api]
    socket = "\(directory)/api.sock"

    [supervisor]
    initial_backoff_s = 0.1
    max_backoff_s = 0.4
    \(extra)
    \(devices)
    """
}

/// An `nmbridged` child process.
final class DaemonProcess {
    let process = Process()
    let directory: String
    let stderrPath: String
    var socketPath: String { directory + "/api.sock" }
    var client: APIClient { APIClient(endpoint: .unixSocket(path: socketPath)) }

    /// `launcher`: a program that starts nmbridged (e.g. systemd-socket-activate and its options).
    /// `daemon`: the executable (a copy outside the clone for a daemon that runs as another
    /// user: the clone may sit in a folder only root can enter).
    init(
        directory: String, arguments: [String], environment: [String: String] = [:], launcher: [String] = [],
        daemon: String = productsDirectory + "/nmbridged"
    ) throws {
        self.directory = directory
        stderrPath = directory + "/daemon-\(UUID().uuidString.prefix(4)).log"
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: launcher.first ?? daemon)
        process.arguments = launcher.isEmpty ? arguments : Array(launcher.dropFirst()) + [daemon] + arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "JOURNAL_STREAM")
        env.merge(environment, uniquingKeysWith: { _, new in new })
        process.environment = env
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        // One open file for both: two would each keep their own offset and overwrite each
        // other (the demo's banner on stdout was cut by log lines on stderr).
        let output = FileHandle(forWritingAtPath: stderrPath)
        process.standardOutput = output
        process.standardError = output
        try process.runBoundToTest()
    }

    /// Starts a daemon on `config` (written to `directory/nmbridge.toml`) and waits until its
    /// API answers and, with a `[dicom]` section, its DICOM receiver listens (after the
    /// spool's recovery, which may come later than the API).
    static func start(directory: String, config: String, environment: [String: String] = [:]) async throws -> DaemonProcess {
        let path = directory + "/nmbridge.toml"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(directory: directory, arguments: ["--config", path, "--log-level", "debug"], environment: environment)
        try await daemon.waitUntilReady(dicom: config.contains("[dicom]"))
        return daemon
    }

    func waitUntilReady(dicom: Bool = false) async throws {
        // 120 s: a bound on a hang, not a performance limit (a loaded machine is slow to start).
        for _ in 0..<2400 {
            if !process.isRunning {
                throw DaemonFailed(message: "nmbridged exited with \(process.terminationStatus) before it was ready:\n\(log)")
            }
            if let response = try? await client.get("/v1/health"), response.status == 200,
                !dicom || log.contains("DICOM receiver listening")
            {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DaemonFailed(message: "nmbridged was not ready (API\(dicom ? " and DICOM receiver" : "")) within 120 s:\n\(log)")
    }

    var log: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for the process to exit; returns its status.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline {
                signal(SIGKILL)
                throw DaemonFailed(message: "nmbridged did not exit in time:\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    func stop() async throws -> Int32 {
        signal(SIGTERM)
        return try await waitForExit()
    }

    deinit {
        stopProcess(process)  // with its process group: a launcher shell's children too
    }

    /// The journal's last seq, from /v1/health.
    func lastSeq() async throws -> Int64 {
        let health = try JSONValue.parse(try await client.get("/v1/health").text)
        return health["journal"]?["last_seq"]?.intValue ?? 0
    }

    /// All events in the journal, via the API.
    func allEvents(filter: String = "") async throws -> [Event] {
        var events: [Event] = []
        var after: Int64 = 0
        while true {
            let response = try await client.get("/v1/events?after=\(after)&limit=5000\(filter)")
            guard response.status == 200 else { throw DaemonFailed(message: "GET /v1/events → \(response.status) \(response.text)") }
            let page = try JSONValue.parse(response.text)
            guard case .array(let items)? = page["events"], !items.isEmpty else { return events }
            for item in items { events.append(try Event(json: item.jsonText)) }
            after = events.last!.seq
        }
    }

    /// Waits until `predicate` holds for the journal's events.
    func waitForEvents(timeout: Duration = .seconds(20), _ predicate: ([Event]) -> Bool) async throws -> [Event] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let events = try await allEvents()
            if predicate(events) { return events }
            if ContinuousClock.now > deadline {
                throw DaemonFailed(message: "timed out waiting for events; have: \(events.map(\.kind))\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

struct DaemonFailed: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A script that journals an event every few milliseconds.
let fastScript = """
    link up "fast test device"
    wait 0.002
    emit experimental.load {"n": 1}
    loop
    """

/// A small tmpfs for the disk-full tests, mounted at `directory/state` (and lazily unmounted
/// when this goes away). Nil, with the reason recorded, when the suite does not run as root.
final class SmallDisk {
    let path: String

    static func mount(under directory: String, size: String) async throws -> SmallDisk? {
        guard getuid() == 0 else {
            Issue.record("this test mounts a small tmpfs and needs root; run the suite as root (CI does)")
            return nil
        }
        let path = directory + "/state"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let mount = try await runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path])
        #expect(mount.status == 0, "mount: \(mount.stderr)")
        return SmallDisk(path: path)
    }

    private init(path: String) { self.path = path }

    deinit { _ = try? runProgramBlocking("/bin/umount", ["-l", path]) }
}
