import Logging
import NMBridgeCore

extension Journal {
    /// Appends events that must not be skipped, retrying while the journal refuses (a full
    /// disk) with back-off from `initialDelay` doubling up to `maxDelay` seconds. Throws only
    /// when the task is cancelled or the journal closes. `what` names the events in the log.
    @discardableResult
    public func appendRetrying(
        _ drafts: [EventDraft], what: String, logger: Logger, metadata: Logger.Metadata = [:], initialDelay: Double = 0.5,
        maxDelay: Double = 30
    ) async throws -> [Event] {
        var delay = initialDelay
        while true {
            do {
                return try await append(drafts)
            } catch {
                if Task.isCancelled || followersClosed { throw error }
                var metadata = metadata
                metadata["error"] = "\(error)"
                metadata["retry_s"] = "\(delay)"
                logger.error("cannot journal \(what); retrying", metadata: metadata)
                try await Task.sleep(for: .seconds(delay))
                delay = min(delay * 2, maxDelay)
            }
        }
    }
}
