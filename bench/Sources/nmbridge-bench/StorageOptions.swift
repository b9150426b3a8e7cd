import ArgumentParser
import NMBridgeCore

/// Where a benchmark keeps its journal and how it syncs, shared by the subcommands.
struct StorageOptions: ParsableArguments {
    @Option(help: "SQLite synchronous mode of the journal: full or normal.")
    var sync: String = "full"

    @Option(help: "Directory for the journal files and sockets (created if missing).")
    var dir: String

    var syncMode: DaemonConfiguration.SyncMode { DaemonConfiguration.SyncMode(rawValue: sync) ?? .full }

    func validate() throws {
        guard DaemonConfiguration.SyncMode(rawValue: sync) != nil else { throw ValidationError("--sync must be full or normal") }
    }
}
