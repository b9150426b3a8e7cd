import ArgumentParser
import Foundation
import NMBridgeCore
import NMQualityControl

extension QCCommand {
    /// `nmbridge qc sign`: the reviewer's signature on a day's QC sheet (docs/qc.md, "Sign-off").
    struct Sign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign the day's QC sheet as reviewed (journals qc.review.signed).",
            discussion: """
                The daemon names the signer itself: on the unix socket the user running this \
                command (the socket's peer credentials), over TCP the token's name. The report \
                (nmbridge qc report) lists the signatures of its day.
                """)

        @OptionGroup var connection: ConnectionOptions

        @Option(name: .long, help: "The site-local day reviewed: today, yesterday or YYYY-MM-DD (this command's time zone).")
        var date: String = "today"

        @Option(name: .long, help: "A remark kept with the signature.")
        var comment: String?

        func validate() throws {
            if LocalDay(argument: date, now: Date(), zone: .current) == nil {
                throw ValidationError("--date \(date): expected today, yesterday or a date YYYY-MM-DD")
            }
        }

        func run() async throws {
            try await reportingErrors {
                guard let day = LocalDay(argument: date, now: Date(), zone: .current) else {
                    throw CLIError("--date \(date): expected today, yesterday or a date YYYY-MM-DD", exitCode: 64)
                }
                var items = [("date", day.description)]
                if let comment { items.append(("comment", comment)) }
                let body = try jsonBody(try await connection.client().post(apiPath("/v1/qc/sign", items)))
                let signer = body["signer"]?.stringValue ?? "?"
                writeStdout("signed \(day) as \(signer) (\(body["via"]?.stringValue ?? "?"), seq \(body["seq"]?.intValue ?? 0))\n")
            }
        }
    }

    /// `nmbridge qc linearity start|finish DEVICE`: marks a decay-method linearity series.
    struct Linearity: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start or finish a dose-calibrator linearity test (decay method).",
            discussion: """
                start: the following readings of one high-activity vial on DEVICE (Tc-99m unless \
                --nuclide) form the test; measure it as it decays over a day or more. finish: the QC \
                service fits the decay and journals qc.dosecal.linearity (docs/qc.md, "Linearity").
                """)

        enum Action: String, ExpressibleByArgument, CaseIterable {
            case start, finish
        }

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "start or finish.")
        var action: Action

        @Argument(help: "The calibrator's [[device]] id.")
        var device: String

        @Option(name: .long, help: "The vial's nuclide (start only).")
        var nuclide: String = "Tc-99m"

        func run() async throws {
            try await reportingErrors {
                var items = [("device", device)]
                if action == .start { items.append(("nuclide", nuclide)) }
                let body = try jsonBody(try await connection.client().post(apiPath("/v1/qc/linearity/\(action.rawValue)", items)))
                writeStdout("linearity test on \(device) \(action == .start ? "started" : "finished") (seq \(body["seq"]?.intValue ?? 0))\n")
            }
        }
    }
}
