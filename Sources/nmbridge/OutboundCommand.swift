import ArgumentParser
import Foundation
import NMBridgeCore
import NMClient

/// `nmbridge outbound`: the outbound DICOM queue (docs/dicom.md, "Forwarding").
struct OutboundCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbound",
        abstract: "Show the outbound DICOM queue per destination; retry or drop a job.",
        subcommands: [Show.self, Retry.self, Drop.self],
        defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queue depth, oldest job, last error and the waiting jobs per destination.")

        @OptionGroup var connection: ConnectionOptions
        @Flag(name: .long, help: "Print the API's JSON.") var json = false
        @Option(name: .long, help: "Jobs listed per destination (default 20).") var limit = 20

        func validate() throws {
            guard (0...10_000).contains(limit) else { throw ValidationError("--limit must be 0…10000") }
        }

        func run() async throws {
            try await reportingErrors {
                let body = try jsonBody(try await connection.client().get(apiPath("/v1/outbound", [("limit", String(limit))])))
                if json { return writeStdout(body.jsonText + "\n") }
                var text = "waiting: \(body["waiting"]?.intValue ?? 0) job(s); journal routed through seq \(body["routed_seq"]?.intValue ?? 0)\n"
                if case .array(let destinations) = body["destinations"] ?? .null {
                    for d in destinations {
                        let name = d["destination"]?.stringValue ?? "?"
                        let oldest = d["oldest_job"]?.stringValue.map { ", oldest queued \($0) (\(d["oldest_age_s"]?.doubleValue ?? 0) s ago)" } ?? ""
                        text += "\n\(name): \(d["waiting"]?.intValue ?? 0) waiting\(oldest); \(d["delivered"]?.intValue ?? 0) delivered, \(d["gave_up"]?.intValue ?? 0) given up since start\n"
                        if let error = d["last_error"]?.stringValue {
                            text += "  last error (\(d["last_error_time"]?.stringValue ?? "?"), \(d["failures"]?.intValue ?? 0) failure(s) in a row): \(error)\n"
                        }
                        if let next = d["next_attempt"]?.stringValue { text += "  next attempt: \(next)\n" }
                        if case .array(let jobs) = d["jobs"] ?? .null {
                            for job in jobs {
                                text += "  job \(job["job"]?.intValue ?? 0)  \(job["what"]?.stringValue ?? "?")  \(job["sop_instance_uid"]?.stringValue ?? "?")  queued \(job["queued"]?.stringValue ?? "?")  attempts \(job["attempts"]?.intValue ?? 0)\n"
                            }
                        }
                    }
                }
                writeStdout(TerminalText.escape(text, keepLayout: true))
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a job again: a waiting job's destination is tried now; a given-up or dropped job is queued again (journaled).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The job: the seq of its dicom.forward.queued event.") var job: Int64

        func run() async throws {
            try await reportingErrors {
                let body = try jsonBody(try await connection.client().post("/v1/outbound/jobs/\(job)/retry"))
                writeStdout(body.jsonText + "\n")
            }
        }
    }

    struct Drop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a waiting job from the queue without sending it (journaled).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The job: the seq of its dicom.forward.queued event.") var job: Int64

        func run() async throws {
            try await reportingErrors {
                let body = try jsonBody(try await connection.client().post("/v1/outbound/jobs/\(job)/drop"))
                writeStdout(body.jsonText + "\n")
            }
        }
    }
}

/// `nmbridge rrdsr STUDY_UID`: the Radiopharmaceutical Radiation Dose SR of a study's
/// reconciled administration, built now by the daemon.
struct RRDSRCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rrdsr",
        abstract: "Print or write the Radiopharmaceutical Radiation Dose SR (TID 10021) of a study's reconciled administration.")

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The Study Instance UID.") var study: String
    @Option(name: .shortAndLong, help: "Write the Part-10 file here (without: print a summary).") var output: String?
    @Option(name: .long, help: "The qc.administration.reconciled event to report (default: the study's latest).") var seq: Int64?
    @Flag(name: .long, help: "Print the summary as JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            var items: [(String, String)] = []
            if let seq { items.append(("seq", String(seq))) }
            let client = try connection.client()
            if let output {
                let response = try await client.get(apiPath("/v1/rrdsr/\(study)", items + [("format", "dicom")]))
                guard response.status == 200 else { _ = try jsonBody(response); return }
                guard FileManager.default.createFile(atPath: output, contents: Data(response.body)) else {
                    throw CLIError("cannot write \(output)")
                }
                writeStdout("wrote \(output) (\(response.body.count) bytes)\n")
                return
            }
            let body = try jsonBody(try await client.get(apiPath("/v1/rrdsr/\(study)", items)))
            if json { return writeStdout(body.jsonText + "\n") }
            var text = """
                study:        \(body["study_uid"]?.stringValue ?? "?")  (administration of journal event \(body["source_seq"]?.intValue ?? 0))
                SR instance:  \(body["sop_instance_uid"]?.stringValue ?? "?")
                agent:        \(body["agent"]?.stringValue ?? "?")
                radionuclide: \(body["radionuclide"]?.stringValue ?? "?")
                administered: \((body["administered_bq"]?.doubleValue ?? 0) / 1e6) MBq at \(body["injection_time"]?.stringValue ?? "?")

                """
            if let pre = body["pre_bq"]?.doubleValue { text += "pre:          \(pre / 1e6) MBq (as measured)\n" }
            if let post = body["post_bq"]?.doubleValue { text += "residual:     \(post / 1e6) MBq (as measured)\n" }
            text += "route:        \(body["route"]?.stringValue ?? "not known (left out)")\n"
            writeStdout(TerminalText.escape(text, keepLayout: true))
        }
    }
}
