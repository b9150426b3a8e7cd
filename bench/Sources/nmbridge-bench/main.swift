import ArgumentParser

/// Benchmarks for nmbridge, run side by side with a named peer by `bench/run`.
/// Each subcommand prints one JSON line per measured configuration on stdout; the
/// script takes medians over several runs and prints ratios. These are measurements,
/// not tests: nothing here passes or fails on a number.
struct NMBridgeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nmbridge-bench",
        abstract: "Measures nmbridge's journal, live API, drivers and shipper (see docs/performance.md).",
        subcommands: [
            JournalAppend.self, SSELatency.self, DosecalLatency.self, DosecalCPU.self, ModbusPoll.self, ModbusCPU.self,
            ShipperCatchUp.self, ShipperLatency.self, QualityControlCatchUp.self, OutboundRebuild.self,
        ])
}

/// A subcommand that measures something. `measure()` is what `run()` does; it has its own
/// name so that the top-level code below can call it without overload ambiguity (in
/// main.swift, `run()` on an existential resolves to the synchronous requirement).
protocol BenchCommand: AsyncParsableCommand {
    func measure() async throws
}

extension BenchCommand {
    func run() async throws { try await measure() }
}

do {
    let command = try NMBridgeBench.parseAsRoot()
    if let bench = command as? any BenchCommand {
        try await bench.measure()
    } else {
        var command = command
        try command.run()
    }
} catch {
    NMBridgeBench.exit(withError: error)
}
