import ArgumentParser
import DoseCalibrator
import Foundation
import NMBridgeCore

struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an instrument simulator that speaks the real wire protocol (for the demo, tests and training).",
        subcommands: [DoseCalibratorCommand.self])

    struct DoseCalibratorCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dosecal",
            abstract: "Simulate a dose calibrator on a pseudo-terminal; prints the pty path, runs until Ctrl-C.",
            discussion: """
                Point a [[device]] table's `path` at the printed pty (or at --link) and use the driver \
                of the model: crc15r → capintec-crc15r, crc35r → capintec-crc35r, \
                atomlab500 → biodex-atomlab, line → dosecal-line. The script format is in \
                docs/dose-calibrators.md.
                """)

        @Option(help: "The instrument: \(SimulatedModel.allCases.map(\.rawValue).joined(separator: ", ")).")
        var model: String

        @Flag(help: "Serve on a pseudo-terminal (the only transport; accepted for clarity).")
        var pty = false

        @Option(help: "Keep a symlink at this path pointing at the current pty (survives `disconnect` steps).")
        var link: String?

        @Option(help: "A script of timed readings and faults (default: a built-in hot-lab session that loops).")
        var script: String?

        func run() async throws {
            guard let model = SimulatedModel(rawValue: model) else {
                throw ValidationError("unknown model \"\(model)\"; use one of \(SimulatedModel.allCases.map(\.rawValue).joined(separator: ", "))")
            }
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
}
