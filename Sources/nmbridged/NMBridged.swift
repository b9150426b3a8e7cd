import ArgumentParser
import DicomStore
import Foundation
import Logging
import NMBridgeCore
import NMCatalog
import NMServer

@main
struct NMBridged: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nmbridged",
        abstract: "nmbridge daemon: journals what the department's instruments say.",
        discussion: """
            Exit codes: 0 after a graceful stop, 2 for a configuration error (nothing started), \
            1 for any other failure (e.g. an unusable journal).
            """,
        version: NMBridgeVersion.current)

    @Option(name: .long, help: "Configuration file (TOML).")
    var config: String?

    @Flag(name: .long, help: "Run with simulated devices; no hardware, no root.")
    var demo = false

    @Option(name: .long, help: "With --demo: where to keep the journal and the API socket.")
    var stateDir: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "With --demo: the DICOM receiver's TCP port; 0 picks a free one (printed when the demo is up).",
            valueName: "port"))
    var dicomPort: Int = DemoConfiguration.defaultDicomPort

    @Option(
        name: .long,
        help: ArgumentHelp(
            "With --demo: the API and web dashboard on 127.0.0.1 at this port; 0 (the default) picks a free one (printed).",
            valueName: "port"))
    var httpPort: Int?

    @Option(name: .long, help: "Log level.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if demo == (config != nil) {
            throw ValidationError("give exactly one of --config FILE or --demo")
        }
        if stateDir != nil && !demo {
            throw ValidationError("--state-dir goes with --demo; with --config, set [daemon] state_dir")
        }
        if dicomPort != DemoConfiguration.defaultDicomPort && !demo {
            throw ValidationError("--dicom-port goes with --demo; with --config, set [dicom] port")
        }
        if httpPort != nil && !demo {
            throw ValidationError("--http-port goes with --demo; with --config, set [api] tcp and token_file")
        }
        if let httpPort, !(0...65535).contains(httpPort) {
            throw ValidationError("--http-port must be 0…65535 (0: any free port)")
        }
        if !(0...65535).contains(dicomPort) {
            throw ValidationError("--dicom-port must be 0…65535 (0: any free port)")
        }
    }

    func run() async throws {
        unblockTerminationSignals()
        // What the daemon writes (journal, DICOM files, cursors) names patients: never
        // readable or writable by others, whatever umask it was started with (the unit
        // also sets UMask=0027).
        let inherited = umask(0o027)
        umask(inherited | 0o027)
        let level = logLevel
        LoggingSystem.bootstrap { label in JournaldLogHandler(label: label, level: level) }
        let logger = Logger(label: "nmbridged")
        let node = Daemon.defaultNode

        let configuration: DaemonConfiguration
        var stopSimulators: @Sendable () -> Void = {}
        var simulatorsListening: @Sendable (Daemon.Listeners) -> Void = { _ in }
        if demo {
            let directory = stateDir ?? DemoConfiguration.defaultStateDirectory
            let demo: DemoConfiguration.Demo
            do {
                demo = try DemoConfiguration.make(stateDirectory: absolute(directory), node: node, dicomPort: dicomPort, httpPort: httpPort ?? 0)
            } catch {
                FileHandle.standardError.write(Data("nmbridged: cannot set up the demo in \(directory): \(error)\n".utf8))
                throw ExitCode(1)
            }
            configuration = demo.configuration
            stopSimulators = demo.stopSimulators
            simulatorsListening = demo.listening
        } else {
            let path = config!
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                FileHandle.standardError.write(Data("nmbridged: cannot read configuration file \(path)\n".utf8))
                throw ExitCode(2)
            }
            do {
                configuration = try DaemonConfiguration.load(
                    text: text, file: path, drivers: .standard, sections: .standard, defaultNode: node,
                    baseDirectory: (absolute(path) as NSString).deletingLastPathComponent)
            } catch {
                FileHandle.standardError.write(Data("nmbridged: \(error.description)\n".utf8))
                throw ExitCode(2)
            }
        }

        let demo = demo
        let listening = simulatorsListening
        defer { stopSimulators() }
        do {
            try await Daemon.run(configuration, logger: logger) { listeners in
                guard demo else { return }
                listening(listeners)
                let ae = configuration.dicom?.aeTitle ?? "NMBRIDGE"
                let dicomPort = listeners.dicomPort ?? configuration.dicom?.port ?? DemoConfiguration.defaultDicomPort
                let cli = Self.siblingCLI()
                let socket = configuration.api.socketPath
                FileHandle.standardOutput.write(Data(
                    """

                    nmbridged demo is running: \(configuration.devices.count) simulated devices, journal \(configuration.journal.path)
                    Watch it live from another terminal:
                        \(cli) --socket \(socket) tail -f
                        \(cli) --socket \(socket) devices
                        \(cli) --socket \(socket) status
                    Or with curl:  curl --unix-socket \(socket) http://localhost/v1/events/stream
                    The journal is plain SQLite:  sqlite3 \(configuration.journal.path) 'select seq, time, device, kind, data from events order by seq desc limit 5'
                    DICOM: AE \(ae) on port \(dicomPort), any calling AE:  /usr/bin/storescu -aec \(ae) 127.0.0.1 \(dicomPort) FILE.dcm
                    Dashboard in a browser:  http://127.0.0.1:\(listeners.apiPort ?? 0)/ui/  (log in with the token in \(configuration.api.tokenFile ?? "?"))
                    Stop with Ctrl-C.

                    """.utf8))
            }
        } catch {
            logger.critical("cannot run", metadata: ["error": "\(error)"])
            if demo, "\(error)".contains("Address already in use") {
                FileHandle.standardError.write(Data(
                    (httpPort.map { $0 != 0 } ?? false
                        ? "nmbridged: the demo's DICOM port \(dicomPort) or its HTTP port \(httpPort!) is taken; --dicom-port 0 and --http-port 0 pick free ones\n"
                        : "nmbridged: the demo's DICOM port \(dicomPort) is taken (another demo or DICOM receiver?); --dicom-port 0 picks a free one\n").utf8))
            }
            // A configured file that became unusable after loading is still a configuration error.
            if let error = error as? NMBridgeError, error.code == .invalidConfiguration { throw ExitCode(2) }
            throw ExitCode(1)
        }
    }

    private func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// `nmbridge` next to this executable if it is there (a build tree), else from PATH.
    static func siblingCLI() -> String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let sibling = me.deletingLastPathComponent().appendingPathComponent("nmbridge").path
        return FileManager.default.isExecutableFile(atPath: sibling) ? sibling : "nmbridge"
    }
}

/// `--log-level`: swift-log's levels, checked and listed by ArgumentParser.
extension Logger.Level: @retroactive ExpressibleByArgument {}
