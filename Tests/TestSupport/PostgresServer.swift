import Foundation

/// A private PostgreSQL server for one test: `initdb` into a temporary directory, listening
/// only on a unix socket in that directory (no TCP port, so tests run in parallel), with
/// SCRAM password authentication. Run as the `postgres` user when the tests run as root
/// (the server refuses root).
///
/// Stop it with `destroy()`; `kill()` / `start()` simulate a crash and a restart.
public final class PostgresServer: @unchecked Sendable {
    // Mutable state is only `processes`, guarded by `lock`.
    private let lock = NSLock()
    private var processes: [Process] = []
    public let directory: String
    public let password: String
    public let binDirectory: String
    /// The port: 5432 (only a unix socket, in our own directory) unless the server also
    /// listens on TCP with TLS (`start(tls: true)`), on a free port of 127.0.0.1.
    public let port: Int
    /// Whether it listens on 127.0.0.1 with TLS (certificate `certificatePath`, CN localhost).
    public let tls: Bool
    public var certificatePath: String { directory + "/server.crt" }
    /// TCP URL (TLS servers only).
    public var tcpURL: String { "postgres://postgres@localhost:\(port)/postgres" }
    public var dataDirectory: String { directory + "/data" }
    public var socketDirectory: String { directory + "/sock" }
    public var logPath: String { directory + "/server.log" }
    /// Connection URL without password (the socket directory as `?host=`).
    public var url: String { "postgres://postgres@\(portPart)/postgres?host=\(socketDirectory)" }
    /// The same URL with the password in it (for the CLI).
    public var urlWithPassword: String { "postgres://postgres:\(password)@\(portPart)/postgres?host=\(socketDirectory)" }
    private var portPart: String { port == 5432 ? "" : ":\(port)" }
    /// A file holding the password, readable by anyone (test use only).
    public var passwordFile: String { directory + "/password" }

    /// Where Debian puts the server (any version), or `nil`.
    public static var installedBinDirectory: String? {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }
        return versions.map { "\(base)/\($0)/bin" }.first { FileManager.default.isExecutableFile(atPath: $0 + "/postgres") }
    }

    private init(directory: String, password: String, binDirectory: String, port: Int, tls: Bool) {
        self.port = port
        self.tls = tls
        self.directory = directory
        self.password = password
        self.binDirectory = binDirectory
    }

    /// Creates and starts a fresh server; with `tls`, it also listens on 127.0.0.1 (a free
    /// port) with a self-signed certificate for `localhost`.
    public static func start(tls: Bool = false) async throws -> PostgresServer {
        guard let bin = installedBinDirectory else {
            throw HarnessError(
                "PostgreSQL server not installed (no /usr/lib/postgresql/*/bin/postgres): apt-get install postgresql (scripts/test does)")
        }
        // Short: the socket path must stay under 107 bytes.
        let directory = "/tmp/nmb-pg-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: directory + "/sock", withIntermediateDirectories: true)
        let server = PostgresServer(
            directory: directory, password: "pw-\(UUID().uuidString.prefix(12))", binDirectory: bin, port: tls ? try freeTCPPort() : 5432, tls: tls)
        try Data(server.password.utf8).write(to: URL(fileURLWithPath: server.passwordFile))
        if tls {
            try await run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", directory + "/server.key", "-out", server.certificatePath,
                ], asPostgres: false, log: nil)
            chmod(directory + "/server.key", 0o600)
        }
        if runsAsPostgres {
            try await run("/bin/chown", ["-R", "postgres:postgres", directory], asPostgres: false, log: nil)
        }
        try await server.run(
            "initdb",
            [
                "-D", server.dataDirectory, "-U", "postgres", "--pwfile=\(server.passwordFile)", "--auth=scram-sha-256",
                "-E", "UTF8", "--locale=C", "--no-sync",
            ])
        try await server.start()
        return server
    }

    /// Starts (or restarts) the server as a child process and waits until it accepts
    /// connections. Not through `pg_ctl start`: Foundation's `Process` learns of a child's
    /// exit when every holder of an inherited descriptor has closed it, and a daemonised
    /// server holds it for good, so `waitUntilExit` on `pg_ctl` would never return.
    public func start() async throws {
        let process = Process()
        let server = binDirectory + "/postgres"
        var arguments = [
            "-D", dataDirectory, "-k", socketDirectory, "-c", "listen_addresses=\(tls ? "127.0.0.1" : "")", "-p", "\(port)",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=60",
        ]
        if tls {
            arguments += ["-c", "ssl=on", "-c", "ssl_cert_file=\(certificatePath)", "-c", "ssl_key_file=\(directory)/server.key"]
        }
        process.executableURL = URL(fileURLWithPath: server)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = FileHandle(forWritingAtPath: logPath)
        log?.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.runBoundToTest(asUser: Self.runsAsPostgres ? "postgres" : nil)
        try? log?.close()
        lock.withLock { processes.append(process) }
        for _ in 0..<1200 {
            if !process.isRunning {
                let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                throw HarnessError("postgres exited with \(process.terminationStatus) at start:\n\(text.suffix(2000))")
            }
            if (try? await run("pg_isready", ["-q", "-h", socketDirectory, "-p", "\(port)"])) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("postgres in \(directory) did not accept connections within 120 s")
    }

    /// Stops the server the hard way (`pg_ctl stop -m immediate`: a crash, no checkpoint)
    /// and waits until its processes are gone.
    public func kill() async throws {
        try await run("pg_ctl", ["-D", dataDirectory, "-m", "immediate", "-w", "-t", "60", "stop"])
        let running = lock.withLock { processes }
        for process in running {
            for _ in 0..<600 where process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        }
        lock.withLock { processes.removeAll { !$0.isRunning } }
    }

    /// Stops the server and deletes its files.
    public func destroy() async {
        try? await kill()
        for process in lock.withLock({ processes }) { stopProcess(process) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs SQL through `psql`; returns its unaligned, tuples-only output.
    @discardableResult
    public func psql(_ sql: String) async throws -> String {
        try await run(
            "psql", ["-h", socketDirectory, "-p", "\(port)", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            environment: ["PGPASSWORD": password])
    }

    @discardableResult
    func run(_ tool: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> String {
        try await Self.run(binDirectory + "/" + tool, arguments, asPostgres: true, log: directory, environment: environment)
    }

    /// Runs a program to completion on a thread of its own (never blocking the cooperative
    /// pool), its output going to a file (a daemonising child could hold a pipe open).
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], asPostgres: Bool, log: String?, environment: [String: String] = [:]) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: executable)
                    process.arguments = arguments
                    // As postgres, never from the clone's folder (it may be 0700): from the
                    // server's own folder, which postgres owns.
                    if asPostgres { process.currentDirectoryURL = URL(fileURLWithPath: log ?? "/") }
                    var env = ProcessInfo.processInfo.environment
                    env.merge(environment) { _, new in new }
                    process.environment = env
                    let outputPath = (log ?? NSTemporaryDirectory()) + "/cmd-\(UUID().uuidString.prefix(8)).out"
                    _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
                    if asPostgres && runsAsPostgres { _ = chown(outputPath, Self.postgresUID, Self.postgresGID) }
                    defer { try? FileManager.default.removeItem(atPath: outputPath) }
                    let output = FileHandle(forWritingAtPath: outputPath)
                    process.standardOutput = output
                    process.standardError = output
                    process.standardInput = FileHandle.nullDevice
                    try process.runBoundToTest(asUser: asPostgres && runsAsPostgres ? "postgres" : nil)
                    process.waitUntilExit()
                    try? output?.close()
                    let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
                    guard process.terminationStatus == 0 else {
                        throw HarnessError("\(executable) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus):\n\(text)")
                    }
                    return text
                })
            }.start()
        }
    }

    /// The server refuses to run as root: then it and its tools run as `postgres`.
    static var runsAsPostgres: Bool { getuid() == 0 }
    static let postgresUID: uid_t = getpwnam("postgres").map { $0.pointee.pw_uid } ?? 0
    static let postgresGID: gid_t = getpwnam("postgres").map { $0.pointee.pw_gid } ?? 0
}

/// A test harness failed (not the code under test).
public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
