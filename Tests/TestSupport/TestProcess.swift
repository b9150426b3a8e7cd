import Foundation

/// Every program a test starts goes through `Process.runBoundToTest(asUser:)`, so that none
/// outlives the test process, not even when that crashes (a trap, SIGKILL, a CI timeout):
///
/// - The program is exec'd through `setpriv --pdeathsig KILL` (util-linux), so the kernel
///   sends it SIGKILL when its parent dies. In Linux that "parent" is the *thread* that
///   spawned it, so the spawning happens on one thread of ours that never ends
///   (`TestProcessSpawner`): a worker thread of the cooperative pool or of Dispatch can end
///   when idle, and would take the child with it.
/// - Foundation's `Process` puts each child into a process group of its own
///   (`POSIX_SPAWN_SETPGROUP`); `stopProcess` kills that whole group, so what the child
///   started itself (socat's, Python's or a shell's children) goes with it.
/// - PostgreSQL's postmaster forks its backends; they notice the postmaster's death and
///   exit by themselves.
///
/// `setpriv` execs in place (no fork), so the `Process` still watches the program itself:
/// its pid, its exit status, the signals a test sends it.
extension Process {
    /// Starts the program as `run()` does, bound to the test process as described above.
    /// `user`: run it as this user (`setpriv --reuid/--regid --init-groups`), e.g. "postgres"
    /// when the tests run as root; its working directory must then be one that user can
    /// enter (`currentDirectoryURL`, else `/`), never the clone, which may be in a 0700 folder.
    public func runBoundToTest(asUser user: String? = nil) throws {
        guard let executable = executableURL?.path else { throw HarnessError("a test process without an executable") }
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw HarnessError("\(executable): not an executable file (the test starts it)")
        }
        var launcher = ["--pdeathsig", "KILL"]
        if let user {
            launcher = ["--reuid", user, "--regid", user, "--init-groups"] + launcher
            if currentDirectoryURL == nil { currentDirectoryURL = URL(fileURLWithPath: "/") }
        }
        var program = [executable]
        // A preload library (umockdev's) is meant for the program, not for setpriv: env
        // sets it between the two.
        if let preload = (environment ?? ProcessInfo.processInfo.environment)["LD_PRELOAD"] {
            var inherited = environment ?? ProcessInfo.processInfo.environment
            inherited["LD_PRELOAD"] = nil
            environment = inherited
            program = ["/usr/bin/env", "LD_PRELOAD=\(preload)", executable]
        }
        arguments = launcher + ["--"] + program + (arguments ?? [])
        executableURL = URL(fileURLWithPath: TestProcessSpawner.setpriv)
        try TestProcessSpawner.shared.spawn(self)
    }
}

/// Ends a test peer and everything in its process group: SIGKILL, because children inherit
/// the test runner's blocked signal mask (SIGTERM may never arrive, and a survivor would
/// hold the runner's output open).
public func stopProcess(_ process: Process) {
    guard process.isRunning else { return }
    let pid = process.processIdentifier
    // The child leads its own group (Foundation's POSIX_SPAWN_SETPGROUP); kill the group
    // first, then the child itself in case it left the group.
    kill(-pid, SIGKILL)
    kill(pid, SIGKILL)
    process.waitUntilExit()
}

/// The one thread that starts test processes (see `runBoundToTest`). It never ends, so a
/// child's parent-death signal fires only when the whole test process is gone.
final class TestProcessSpawner: @unchecked Sendable {
    // `jobs` is guarded by `condition`; a job's result is handed back through its own semaphore.
    static let shared = TestProcessSpawner()
    static let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/bin/setpriv"

    private let condition = NSCondition()
    private var jobs: [() -> Void] = []

    private init() {
        let thread = Thread { [unowned self] in
            while true {
                condition.lock()
                while jobs.isEmpty { condition.wait() }
                let job = jobs.removeFirst()
                condition.unlock()
                job()
            }
        }
        thread.name = "test-process-spawner"
        thread.start()
    }

    /// Runs `process.run()` on the spawner thread and waits for it (a few milliseconds).
    func spawn(_ process: Process) throws {
        nonisolated(unsafe) let process = process
        nonisolated(unsafe) var outcome: Result<Void, any Error> = .success(())
        let done = DispatchSemaphore(value: 0)
        condition.lock()
        jobs.append {
            outcome = Result { try process.run() }
            done.signal()
        }
        condition.signal()
        condition.unlock()
        done.wait()
        try outcome.get()
    }
}

/// Runs `body` with a fresh directory that only its owner can enter (mode 0700, as `mktemp
/// -d` makes them and as a home directory is): what runs as another user must never need
/// to enter it.
public func withPrivateDirectory<R>(_ tag: String, _ body: (String) async throws -> R) async throws -> R {
    let path = try makeTemporaryDirectory(tag)
    defer { try? FileManager.default.removeItem(atPath: path) }
    guard chmod(path, 0o700) == 0 else { throw HarnessError("chmod 0700 \(path) failed") }
    return try await body(path)
}
