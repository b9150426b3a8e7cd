import Foundation
import TestSupport
import Testing

/// The test suite's own promises: a program a test starts dies with the test process, even
/// when that is killed; the suite passes from a clone in a folder only root can enter.
///
/// Both run this very test binary (/proc/self/exe) again as a child, with `--filter` naming
/// one test: the probe below (enabled only in that child), or the shipper tests.
@Suite struct TestHygieneTests {
    static let probeVariable = "NMBRIDGE_TEST_ORPHAN_PROBE"

    /// The probe's child: `sleep`, started through `runBoundToTest` from a task of the
    /// cooperative pool; then the probe waits to be killed.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[probeVariable] != nil))
    func orphanProbe() async throws {
        let directory = try #require(ProcessInfo.processInfo.environment[Self.probeVariable])
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["3600"]
        try sleeper.runBoundToTest()
        try Data("\(sleeper.processIdentifier)\n".utf8).write(to: URL(fileURLWithPath: directory + "/child.pid"))
        try await Task.sleep(for: .seconds(3600))
    }

    @Test func aChildDiesWithTheTestProcessThatStartedItWhenThatIsKilled() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/probe.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        probe.arguments = ["--testing-library", "swift-testing", "--filter", "orphanProbe"]
        probe.environment = ProcessInfo.processInfo.environment.merging([Self.probeVariable: directory]) { _, new in new }
        probe.standardOutput = FileHandle(forWritingAtPath: log)
        probe.standardError = FileHandle(forWritingAtPath: log)
        try probe.runBoundToTest()
        defer { stopProcess(probe) }

        var pidText = ""
        for _ in 0..<1200 where pidText.isEmpty && probe.isRunning {
            pidText = (try? String(contentsOfFile: directory + "/child.pid", encoding: .utf8)) ?? ""
            if pidText.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        }
        let output = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        let child = try #require(pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)), "the probe started no child:\n\(output())")
        #expect(isAlive(child), "the probe's sleep runs while the probe does")

        // SIGKILL: no handler, no defer, no atexit runs in the probe, as in a crash.
        kill(probe.processIdentifier, SIGKILL)
        probe.waitUntilExit()
        var gone = false
        for _ in 0..<600 where !gone {
            gone = !isAlive(child)
            if !gone { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(gone, "sleep (pid \(child)) outlived the test process that started it")
        if !gone { kill(child, SIGKILL) }
    }

    /// The parent-death signal follows the thread that spawned the child, so the helper
    /// spawns on a thread of its own: a child started from a thread that then ends lives on.
    @Test func aChildOutlivesTheThreadThatAskedForIt() async throws {
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["3600"]
        let started = await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: Result { try sleeper.runBoundToTest() })
            }
            thread.start()
        }
        try started.get()
        defer { stopProcess(sleeper) }
        try await Task.sleep(for: .milliseconds(500))  // the asking thread has long ended
        #expect(sleeper.isRunning && isAlive(sleeper.processIdentifier))
    }

    /// A child's own children (here a shell's `sleep`) are in its process group, which
    /// `stopProcess` kills as a whole.
    @Test func stoppingAChildStopsItsChildrenToo() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", "sleep 3600 & echo $! > \(directory)/grandchild.pid; wait"]
        try shell.runBoundToTest()
        var pidText = ""
        for _ in 0..<600 where pidText.isEmpty {
            pidText = (try? String(contentsOfFile: directory + "/grandchild.pid", encoding: .utf8)) ?? ""
            if pidText.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        }
        let grandchild = try #require(pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)), "the shell started no sleep")
        #expect(isAlive(grandchild))
        stopProcess(shell)
        var gone = false
        for _ in 0..<600 where !gone {
            gone = !isAlive(grandchild)
            if !gone { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(gone, "the shell's sleep (pid \(grandchild)) outlived stopProcess")
        if !gone { kill(grandchild, SIGKILL) }
    }

    /// No test starts a `Process` with plain `run()`: that child would outlive a crashed
    /// test process (nor with Foundation's class method that runs one at once).
    @Test func everyTestProcessStartsThroughTheHelper() throws {
        let tests = repositoryRoot + "/Tests"
        let files = try #require(FileManager.default.enumerator(atPath: tests)).compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        var offenders: [String] = []
        for file in files where !file.hasPrefix("TestSupport/TestProcess.swift") {
            let text = try String(contentsOfFile: tests + "/" + file, encoding: .utf8)
            let names = text.matches(of: /(?:let|var)\s+(\w+)\s*=\s*Process\(\)/).map { String($0.1) }
            for name in Set(names) where text.contains("\(name).run()") || text.contains("\(name).launch()") {
                offenders.append("\(file): \(name).run()")
            }
            if text.contains("Process" + ".run(") { offenders.append("\(file): the Process class method run(_:arguments:)") }
        }
        #expect(offenders.isEmpty, "start test processes with runBoundToTest() (Tests/TestSupport/TestProcess.swift): \(offenders)")
    }

    /// A clone in a folder that only root can enter (/root, a home directory, `mktemp -d`):
    /// the PostgreSQL servers and their tools run as `postgres`, which cannot enter it. The
    /// shipper tests that failed that way run in a child whose working directory and
    /// $TMPDIR are such a folder.
    @Test func theShipperTestsPassFromAFolderOnlyRootCanEnter() async throws {
        try await withPrivateDirectory("private") { folder in
            let log = folder + "/shipper-tests.log"
            FileManager.default.createFile(atPath: log, contents: nil)
            let tests = Process()
            tests.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            tests.arguments = [
                "--testing-library", "swift-testing", "--filter",
                "shipsEveryEventOnceAndDuplicateDeliveryHasNoEffect|schemaIsVersionedAndANewerOneIsRefused|newJournalIdIsShippedAsANewHistory",
            ]
            tests.environment = ProcessInfo.processInfo.environment.merging(["TMPDIR": folder]) { _, new in new }
            tests.currentDirectoryURL = URL(fileURLWithPath: folder)
            tests.standardOutput = FileHandle(forWritingAtPath: log)
            tests.standardError = FileHandle(forWritingAtPath: log)
            try tests.runBoundToTest()
            defer { stopProcess(tests) }
            while tests.isRunning { try await Task.sleep(for: .milliseconds(100)) }
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(tests.terminationStatus == 0, "the shipper tests failed from a 0700 folder:\n\(output.suffix(4000))")
            #expect(output.contains("with 3 tests"), "ran no shipper test:\n\(output.suffix(2000))")
        }
    }
}

/// Whether `pid` is a live process (not gone, not a zombie waiting for a parent to reap it).
func isAlive(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return false }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
}
