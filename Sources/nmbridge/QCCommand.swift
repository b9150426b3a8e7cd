import ArgumentParser
import Foundation
import NMBridgeCore
import NMQualityControl

struct QCCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qc", abstract: "Quality control findings (docs/qc.md).", subcommands: [Report.self, Sign.self, Linearity.self])

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The daily QC sheet: constancy checks per dose calibrator, findings per study.",
            discussion: """
                Reads the qc.* events of the day (their local_date) and of the --days before it from \
                the daemon. The HTML report charts each calibrator's constancy deviation over that \
                period; it is one self-contained file.
                """)

        @OptionGroup var connection: ConnectionOptions

        @Option(name: .long, help: "The site-local day: today, yesterday or YYYY-MM-DD (this command's time zone).")
        var date: String = "today"

        @Option(name: .long, help: "Report format.")
        var format: QCReport.Format = .text

        @Option(name: .long, help: "Write the report to this file instead of standard output.")
        var output: String?

        @Option(name: .long, help: "Days of constancy trend to chart, ending on --date.")
        var days: Int = 30

        func validate() throws {
            if LocalDay(argument: date, now: Date(), zone: .current) == nil {
                throw ValidationError("--date \(date): expected today, yesterday or a date YYYY-MM-DD")
            }
            if !(1...366).contains(days) { throw ValidationError("--days \(days): expected 1 to 366") }
        }

        func run() async throws {
            try await reportingErrors {
                let zone = TimeZone.current
                let now = Date()
                guard let day = LocalDay(argument: date, now: now, zone: zone) else {
                    throw CLIError("--date \(date): expected today, yesterday or a date YYYY-MM-DD", exitCode: 64)
                }
                // The QC service may run in another zone than this command: ask for a day more
                // on each side and select by the events' own local_date.
                let since = day.adding(days: -(days - 1)).start(in: zone).addingTimeInterval(-86_400)
                let until = day.adding(days: 1).start(in: zone).addingTimeInterval(86_400)
                let (events, node) = try await fetchEvents(since: since, until: until)
                let report = QCReport(events: events, day: day, node: node, generated: now, zone: zone, chartDays: days)
                let text = report.rendered(as: format)
                // The text sheet quotes DICOM headers and readings; on a terminal their
                // control characters are shown, not obeyed (CSV and HTML escape their own).
                guard let output else { return writeStdout(format == .text ? TerminalText.escape(text, keepLayout: true) : text) }
                do {
                    try Data(text.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
                } catch {
                    throw CLIError("cannot write the report to \(output): \(error.localizedDescription)")
                }
            }
        }

        /// The qc.* events between `since` and `until`, paged through `GET /v1/events`.
        func fetchEvents(since: Date, until: Date) async throws -> (events: [Event], node: String) {
            let client = try connection.client()
            let pageSize = 5000
            var events: [Event] = []
            var node = ""
            var cursor: Int64?
            while true {
                var items = [("kind", "qc.*"), ("since", Timestamp.format(since)), ("until", Timestamp.format(until)), ("limit", "\(pageSize)")]
                if let cursor { items.append(("after", "\(cursor)")) }
                let body = try jsonBody(try await client.get(apiPath("/v1/events", items)))
                node = body["node"]?.stringValue ?? node
                guard case .array(let page)? = body["events"], !page.isEmpty else { break }
                for item in page {
                    do {
                        events.append(try Event(json: item.jsonText))
                    } catch {
                        throw CLIError("the daemon sent an event this command cannot read: \(error)")
                    }
                }
                cursor = events.last?.seq
                if page.count < pageSize { break }
            }
            return (events, node)
        }
    }
}
