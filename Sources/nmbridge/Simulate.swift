import ArgumentParser
import DoseCalibrator
import Foundation
import ModbusGantry
import NMBridgeCore

struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an instrument simulator that speaks the real wire protocol (for the demo, tests and training).",
        subcommands: [DoseCalibratorCommand.self, GantryCommand.self])

    struct DoseCalibratorCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dosecal",
            abstract: "Simulate a dose calibrator on a pseudo-terminal; prints the pty path, runs until Ctrl-C.",
            discussion: """
                Point a [[device]] table's `path` at the printed pty (or at --link) and use the driver \
                of the model: \(SimulatedModel.allCases.map { "\($0) → \($0.driverName)" }.joined(separator: ", ")). \
                The script format is in docs/dose-calibrators.md.
                """)

        @Option(help: "The instrument.")
        var model: SimulatedModel

        @Flag(help: "Serve on a pseudo-terminal (the only transport; accepted for clarity).")
        var pty = false

        @Option(help: "Keep a symlink at this path pointing at the current pty (survives `disconnect` steps).")
        var link: String?

        @Option(help: "A script of timed readings and faults (default: a built-in hot-lab session that loops).")
        var script: String?

        func run() async throws {
            let session: SimulatorScript
            if let script {
                guard let text = try? String(contentsOfFile: script, encoding: .utf8) else {
                    throw ValidationError("cannot read script \(script)")
                }
                do {
                    session = try SimulatorScript.parse(text, source: script)
                } catch {
                    throw ValidationError(error.message)
                }
            } else {
                session = .demo
            }
            let simulator: DoseCalibratorSimulator
            do {
                simulator = try DoseCalibratorSimulator(model: model, script: session, link: link)
            } catch {
                FileHandle.standardError.write(Data("nmbridge simulate: \(error)\n".utf8))
                throw ExitCode(1)
            }
            simulator.start()
            let stopSignals = StopSignals.install(cleanUp: { simulator.stop() })
            FileHandle.standardOutput.write(Data((simulator.path + "\n").utf8))
            FileHandle.standardError.write(
                Data("simulated \(model.rawValue) dose calibrator on \(simulator.path); Ctrl-C to stop\n".utf8))
            while true {
                try await Task.sleep(for: .seconds(3600))
                withExtendedLifetime(stopSignals) {}
            }
        }
    }

    struct GantryCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gantry",
            abstract: "Simulate a Modbus gantry controller (TCP or RTU on a pty); prints the address, runs until Ctrl-C.",
            discussion: """
                Serves the profile's registers with libmodbus and plays a script (format in \
                docs/modbus-profiles.md). Without --script, the example profile plays a looped SPECT \
                acquisition; other profiles serve zeros until something sets them. Point a \
                `driver = "modbus"` device at it: modbus = { tcp = "ADDRESS", unit = N } or \
                modbus = { rtu = "PTY", unit = N }.
                """)

        @Option(help: "The register profile: a path or a bundled profile name.")
        var profile: String = "spect-gantry-example"

        @Option(help: "Listen for Modbus TCP on HOST:PORT (port 0: any free port).")
        var tcp: String?

        @Flag(help: "Serve Modbus RTU on a pseudo-terminal instead.")
        var pty = false

        @Option(help: "With --pty: keep a symlink at this path pointing at the pty.")
        var link: String?

        @Option(help: "The unit id it answers to (others get no answer).")
        var unit: Int = 1

        @Option(help: "A script of values and faults (default: the built-in session for spect-gantry-example).")
        var script: String?

        func run() async throws {
            guard (tcp != nil) != pty else { throw ValidationError("give either --tcp HOST:PORT or --pty") }
            guard (0...255).contains(unit) else { throw ValidationError("--unit must be 0–255") }
            guard let path = ModbusProfileLoader.path(forReference: profile) else {
                throw ValidationError(
                    "no profile \"\(profile)\" in \(ModbusProfileLoader.searchDirectories.joined(separator: ", "))")
            }
            let loaded: ModbusProfile
            do {
                loaded = try ModbusProfileLoader.load(path: path)
            } catch {
                throw ValidationError(error.description)
            }
            var session: GantryScript?
            do {
                if let script {
                    guard let text = try? String(contentsOfFile: script, encoding: .utf8) else {
                        throw ValidationError("cannot read script \(script)")
                    }
                    session = try GantryScript.parse(text, source: script, profile: loaded)
                } else if loaded.name == "spect-gantry-example" {
                    session = try GantryScript.parse(GantryScript.demoText, source: "builtin:gantry", profile: loaded)
                }
            } catch let error as NMBridgeError {
                throw ValidationError(error.message)
            }
            let transport: GantrySimulator.Transport
            if let tcp {
                guard case .tcp(let host, let port)? = ModbusEndpoint.tcp(tcp, server: true) else {
                    throw ValidationError("--tcp \"\(tcp)\" is not HOST:PORT")
                }
                transport = .tcp(host: host, port: port)
            } else {
                transport = .pty(link: link)
            }
            let simulator: GantrySimulator
            do {
                simulator = try GantrySimulator(profile: loaded, transport: transport, unit: unit, script: session)
            } catch {
                FileHandle.standardError.write(Data("nmbridge simulate: \(error)\n".utf8))
                throw ExitCode(1)
            }
            simulator.start()
            let stopSignals = StopSignals.install(cleanUp: { simulator.stop() })
            FileHandle.standardOutput.write(Data((simulator.address + "\n").utf8))
            FileHandle.standardError.write(
                Data("simulated gantry (\(loaded.name), unit \(unit)) on \(simulator.address); Ctrl-C to stop\n".utf8))
            while true {
                try await Task.sleep(for: .seconds(3600))
                withExtendedLifetime(stopSignals) {}
            }
        }
    }
}
