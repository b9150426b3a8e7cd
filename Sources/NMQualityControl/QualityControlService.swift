import Foundation
import Logging
import NMBridgeCore
import NMJournal
import ServiceLifecycle

/// The QC service: follows the journal like any subscriber, judges dose calibrator
/// measurements and stored NM/PT instances, and appends qc.* events (docs/qc.md).
///
/// It resumes after a restart without judging an event twice or skipping one: its cursor
/// is the later of the cursor file and the `source_seq` of the last qc.* event in the
/// journal (findings and cursor cannot disagree after a crash between the two), and an
/// event's findings are appended in one atomic append.
public struct QualityControlService: Service {
    let journal: Journal
    let settings: DaemonConfiguration.QualityControl
    let zone: TimeZone
    let logger: Logger
    /// Progress for `/metrics` and `nmbridge status`.
    public let status = QCStatus()

    public init(journal: Journal, settings: DaemonConfiguration.QualityControl, zone: TimeZone, logger: Logger) {
        self.journal = journal
        self.settings = settings
        self.zone = zone
        self.logger = logger
    }

    /// Follows until shutdown. A failure (an unreadable journal page, say) is logged and
    /// the service starts over from its cursor after a pause: QC never takes the daemon down.
    public func run() async throws {
        var pause = 1.0
        while !Task.isCancelled, !journal.followersClosed {
            do {
                try await follow()
                return
            } catch is CancellationError {
                return
            } catch {
                logger.error("QC service failed; starting over from its cursor", metadata: ["error": "\(error)", "retry_s": "\(pause)"])
                status.update {
                    $0.failures += 1
                    $0.lastError = "\(error)"
                    $0.lastErrorTime = Date()
                }
                let until = ContinuousClock.now + .seconds(pause)
                while ContinuousClock.now < until, !Task.isCancelled, !journal.followersClosed {
                    try? await Task.sleep(for: .milliseconds(100))
                }
                pause = min(pause * 2, 60)
            }
        }
    }

    private func follow() async throws {
        var engine = QCEngine(settings: settings, zone: zone, journal: journal)
        let cursor = try await resumeCursor()
        status.update { [cursor] in $0.judgedSeq = cursor }
        logger.info(
            "QC service following the journal",
            metadata: [
                "qc.cursor": "\(cursor)", "qc.cursor_file": "\(settings.cursorFile)", "qc.check_sources": "\(settings.checkSources.count)",
                "qc.protocols": "\(settings.protocols.map(\.name).joined(separator: ","))",
            ])
        try await journal.consume(
            after: cursor, kinds: QCEngine.inputKinds,
            expired: { expired in
                logger.warning(
                    "QC cursor is older than the journal's retention: events were removed before they were judged",
                    metadata: ["qc.cursor": "\(expired.cursor)", "journal.oldest_seq": "\(expired.oldestSeq)"])
            },
            handle: { event in
                let findings = try await engine.judge(event)
                if !findings.isEmpty { try await appendRetrying(findings, for: event) }
                status.update { $0.findings += Int64(findings.count) }
            },
            progress: { cursor in status.update { $0.judgedSeq = cursor } },
            save: save)
    }

    /// Appends the findings of one event; a failing journal (disk full) is retried, never skipped.
    private func appendRetrying(_ findings: [EventDraft], for event: Event) async throws {
        try await journal.appendRetrying(findings, what: "QC findings", logger: logger, metadata: ["qc.source_seq": "\(event.seq)"])
    }

    // MARK: Cursor

    struct CursorFile: Codable {
        var journal: String
        var seq: Int64
    }

    /// The later of the saved cursor (if it belongs to this journal) and the last judged
    /// event named by a qc.* finding.
    func resumeCursor() async throws -> Int64 {
        var cursor: Int64 = 0
        if let bytes = FileManager.default.contents(atPath: settings.cursorFile) {
            if let file = try? JSONDecoder().decode(CursorFile.self, from: bytes) {
                if file.journal == journal.id.uuidString.lowercased() {
                    cursor = file.seq
                } else {
                    logger.notice(
                        "QC cursor belongs to another journal (reset?): judging this journal from its start",
                        metadata: ["qc.cursor_file": "\(settings.cursorFile)", "qc.cursor_journal": "\(file.journal)"])
                }
            } else {
                logger.warning("QC cursor file is unreadable: judging from the last finding", metadata: ["qc.cursor_file": "\(settings.cursorFile)"])
            }
        }
        // The newest finding of this service: the API journals qc.* markers and sign-offs too
        // (qc.dosecal.linearity_started, qc.review.signed), which judge nothing.
        let recent = try await journal.events(EventQuery(filter: EventFilter(kinds: ["qc.*"]), limit: 200, newestFirst: true)).events
        let last = recent.last { $0.driver == "qc" && $0.data["source_seq"] != nil }
        if let judged = last?.data["source_seq"]?.intValue { cursor = max(cursor, judged) }
        return min(cursor, journal.lastSeq)
    }

    /// Writes the cursor file atomically (temporary file, rename); failures are logged.
    func save(_ cursor: Int64) {
        let text = "{\"journal\":\"\(journal.id.uuidString.lowercased())\",\"seq\":\(cursor)}\n"
        let temporary = settings.cursorFile + ".tmp"
        var problem: String?
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
            if rename(temporary, settings.cursorFile) != 0 { problem = "rename from \(temporary): \(String(cString: strerror(errno)))" }
        } catch {
            problem = "\(error)"
        }
        if let problem {
            logger.error("cannot save the QC cursor", metadata: ["qc.cursor_file": "\(settings.cursorFile)", "error": "\(problem)"])
        }
    }
}
