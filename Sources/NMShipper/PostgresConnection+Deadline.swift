import Foundation
import PostgresNIO
import Synchronization

extension PostgresConnection {
    /// Throws if the server has closed the connection. postgres-nio 1.33 drops a query
    /// written to a closed channel without failing it, so the caller would wait forever:
    /// check before each query.
    func ensureOpen(_ server: String) throws {
        if isClosed { throw PostgresFailure("lost the connection to \(server)", ConnectionLost()) }
    }
}

/// The server closed the connection (crashed, restarted, or dropped us).
struct ConnectionLost: Error, CustomStringConvertible {
    var description: String { "the server closed the connection" }
}

/// An operation took longer than its deadline.
struct DeadlineExceeded: Error, CustomStringConvertible {
    var what: String
    var limit: Duration
    var description: String { "\(what) took longer than \(limit); giving up on it" }
}

/// Runs `operation`, but returns (throwing `DeadlineExceeded`) after `limit`, or
/// (throwing `ConnectionLost`) when `connection` closes, even if it has not finished. For
/// queries that could hang on a connection closed at the wrong moment (see `ensureOpen`):
/// the stuck task is cancelled and left behind, and the caller reconnects. Inserts are
/// idempotent, so an abandoned batch may land or not.
///
/// A watcher task checks the connection and the deadline every `watchInterval` and ends
/// with the operation. (Not a `closeFuture` callback: those stay registered until the
/// connection closes, one per query, on a connection that may live for months.)
func withDeadline<T: Sendable>(
    _ limit: Duration, _ what: String, closing connection: PostgresConnection? = nil,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.start(continuation)
            let work = Task {
                do {
                    race.finish(.success(try await operation()))
                } catch {
                    race.finish(.failure(error))
                }
            }
            race.setWork(work)
            Task {
                let deadline = ContinuousClock.now + limit
                while !race.isDone {
                    if connection?.isClosed == true {
                        race.finish(.failure(ConnectionLost()))  // the query may never be answered
                    } else if ContinuousClock.now >= deadline {
                        race.finish(.failure(DeadlineExceeded(what: what, limit: limit)))
                    } else {
                        try? await Task.sleep(for: min(watchInterval, deadline - ContinuousClock.now))
                    }
                }
            }
        }
    } onCancel: {
        race.cancel()
    }
}

/// How often `withDeadline` looks at the connection and the clock.
let watchInterval: Duration = .milliseconds(100)

/// The first of work, deadline, connection loss and cancellation resumes the caller; the
/// others are ignored. A result that comes before the caller waits is kept for it.
final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var early: Result<T, any Error>?
        var done = false
        var work: Task<Void, Never>?
        var cancelled = false
    }
    private let state = Mutex(State())

    /// Whether the caller has been (or will be, when it waits) resumed.
    var isDone: Bool { state.withLock { $0.done } }

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        let early = state.withLock { s -> Result<T, any Error>? in
            if let early = s.early { return early }
            if s.cancelled {
                s.done = true
                return .failure(CancellationError())
            }
            s.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func setWork(_ work: Task<Void, Never>) {
        let cancelled = state.withLock { s -> Bool in
            s.work = work
            return s.cancelled || s.done
        }
        if cancelled { work.cancel() }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, work) = state.withLock { s -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
            guard !s.done else { return (nil, nil) }
            s.done = true
            guard let continuation = s.continuation else {
                s.early = result
                return (nil, nil)
            }
            s.continuation = nil
            return (continuation, s.work)
        }
        if let continuation {
            work?.cancel()
            continuation.resume(with: result)
        }
    }

    func cancel() {
        state.withLock { $0.cancelled = true }
        finish(.failure(CancellationError()))
    }
}
