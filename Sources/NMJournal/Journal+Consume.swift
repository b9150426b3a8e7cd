import Foundation
import NMBridgeCore

extension Journal {
    /// Runs a service that derives events from the journal and keeps its own cursor (the QC
    /// service, the outbound queue): follows the events of `kinds` after `start`, calls
    /// `handle` for each in order, moves the cursor past quiet stretches, reports it through
    /// `progress` after every step, and `save`s it at most every 2 s and when it returns.
    /// Should retention have removed events the cursor has not reached, `expired` is told and
    /// following resumes at the oldest event left. Returns when the journal closes its
    /// followers (shutdown) or the task is cancelled.
    public func consume(
        after start: Int64, kinds: [String],
        expired: (CursorExpired) -> Void,
        handle: (Event) async throws -> Void,
        progress: (Int64) -> Void,
        save: (Int64) -> Void
    ) async throws {
        var cursor = start
        var saved = cursor
        var lastSave = ContinuousClock.now
        defer { save(cursor) }
        var iterator = follow(after: cursor, filter: EventFilter(kinds: kinds)).makeAsyncIterator()
        while !Task.isCancelled {
            let step: FollowStep?
            do {
                step = try await iterator.step(idleTimeout: .seconds(2))
            } catch let error as CursorExpired {
                expired(error)
                cursor = error.oldestSeq - 1
                iterator = follow(after: cursor, filter: EventFilter(kinds: kinds)).makeAsyncIterator()
                continue
            }
            guard let step else { return }  // the journal closed its followers: shutdown
            switch step {
            case .event(let event):
                try await handle(event)
                cursor = event.seq
            case .idle:
                cursor = max(cursor, iterator.cursor)
            }
            progress(cursor)
            if cursor != saved, ContinuousClock.now - lastSave > .seconds(2) {
                save(cursor)
                saved = cursor
                lastSave = .now
            }
        }
    }
}
