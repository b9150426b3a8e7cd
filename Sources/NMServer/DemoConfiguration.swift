import Foundation
import NMBridgeCore
import ScriptDriver

/// The configuration of `nmbridged --demo`: no hardware, no root, everything under one
/// state directory, simulated devices that replay built-in scripts.
public enum DemoConfiguration {
    /// `${TMPDIR:-/tmp}/nmbridge-demo-<uid>`: writable without root, separate per user.
    public static var defaultStateDirectory: String {
        let tmp = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return "\(tmp)/nmbridge-demo-\(getuid())"
    }

    public static func make(stateDirectory: String, node: String) throws -> DaemonConfiguration {
        func script(_ name: String) throws -> ScriptDriver.Settings {
            ScriptDriver.Settings(script: try ScriptParser.parse(BuiltinScripts.text(named: name)!, source: "builtin:\(name)"), source: "builtin:\(name)")
        }
        var journal = DaemonConfiguration.Journal(path: stateDirectory + "/journal.db")
        journal.retentionDays = 7
        journal.maxSizeMB = 256
        var supervisor = DaemonConfiguration.Supervisor()
        supervisor.initialBackoff = 2
        supervisor.maxBackoff = 30
        return DaemonConfiguration(
            daemon: DaemonConfiguration.Daemon(node: node, stateDirectory: stateDirectory),
            journal: journal,
            api: DaemonConfiguration.API(socketPath: stateDirectory + "/api.sock"),
            supervisor: supervisor,
            devices: [
                .init(id: "dosecal-hotlab", driver: "script", staleAfter: 10, settings: try script("dosecal-demo")),
                .init(id: "gantry-1", driver: "script", staleAfter: 15, settings: try script("gantry-demo")),
                .init(id: "flaky-1", driver: "script", staleAfter: 5, settings: try script("flaky-demo")),
            ],
            demo: true)
    }
}
