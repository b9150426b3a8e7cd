import Foundation
import NMBridgeCore

/// Replays a timed script of events as if a device sent them: for the demo, for tests of
/// everything downstream of drivers, and for rehearsing QC rules without instruments.
///
/// Events carry `driver = "script"`, so a replay can never be mistaken for a real device.
public struct ScriptDriver: Driver {
    public struct Settings: Sendable {
        public var script: Script
        /// Where the script came from (file path or `builtin:NAME`), for messages.
        public var source: String

        public init(script: Script, source: String) {
            self.script = script
            self.source = source
        }
    }

    public static let manifest = DriverManifest(
        name: "script", version: "1.0.0", maturity: .stable, transports: ["none"],
        summary: "Replays a timed script of events (demo, tests, rehearsals).",
        configKeys: [
            DriverConfigKey("script", "string", "Path of the script file (relative paths: from the configuration file's folder)."),
            DriverConfigKey("builtin", "string", "Name of a script shipped with nmbridge instead of a file: " + BuiltinScripts.names.joined(separator: ", ") + "."),
        ])

    public static func settings(from reader: ConfigTableReader) -> Settings? {
        let path = reader.string("script").map(reader.resolvePath)
        let builtin = reader.string("builtin")
        let (text, source): (String, String)
        switch (path, builtin) {
        case (let path?, nil):
            guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
                reader.problem("script", "cannot read script file \(path)")
                return nil
            }
            (text, source) = (contents, path)
        case (nil, let name?):
            guard let contents = BuiltinScripts.text(named: name) else {
                reader.problem("builtin", "no built-in script \"\(name)\"; known: \(BuiltinScripts.names.joined(separator: ", "))")
                return nil
            }
            (text, source) = (contents, "builtin:\(name)")
        case (.some, .some):
            reader.problem("builtin", "give either script or builtin, not both")
            return nil
        case (nil, nil):
            reader.tableProblem("the script driver needs script = \"FILE\" or builtin = \"NAME\"")
            return nil
        }
        do {
            return Settings(script: try ScriptParser.parse(text, source: source, registry: reader.eventKinds), source: source)
        } catch {
            reader.problem(path != nil ? "script" : "builtin", error.description)
            return nil
        }
    }

    let settings: Settings
    let context: DriverContext

    public init(settings: Settings, context: DriverContext) {
        self.settings = settings
        self.context = context
    }

    public func run() async throws {
        let steps = settings.script.steps
        var index = 0
        while index < steps.count {
            try Task.checkCancellation()
            switch steps[index] {
            case .wait(let seconds):
                try await context.clock.sleep(for: .milliseconds(Int64(seconds * 1000)))
            case .emit(let kind, let data, let raw):
                try await context.emit(kind, data: data, raw: raw)
            case .link(let up, let reason):
                try await context.reportLink(up ? .up(reason: reason, identity: ["script": .string(settings.source)]) : .down(reason: reason))
            case .heartbeat:
                try await context.heartbeat()
            case .fail(let message):
                throw NMBridgeError(.driverFailed, "\(message) (\(settings.source) line \(settings.script.lines[index]))")
            case .loop:
                index = 0
                continue
            }
            index += 1
        }
        // A finished script keeps the device present but quiet until shutdown.
        try await context.clock.sleep(for: .seconds(86_400 * 365))
    }
}
