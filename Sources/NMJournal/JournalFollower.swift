import Foundation
import NMBridgeCore
import Synchronization

/// One step of a follower: an event, or a stretch of silence.
public enum FollowStep: Sendable {
    case event(Event)
    case idle
}

/// What a follower does when it falls so far behind that its live buffer overflows.
public enum OverflowPolicy: Sendable {
    /// Go back to reading the journal file, losslessly (internal consumers).
    case catchUp
    /// Throw `Lagged` (the HTTP stream cuts the subscriber off; it resumes by cursor).
    case fail
}

/// A follower fell behind by more than its buffer.
public struct Lagged: Error, Sendable, CustomStringConvertible {
    /// The last seq delivered; resume after it.
    public var lastDeliveredSeq: Int64
    public var description: String {
        "subscriber lagged: it read too slowly and was cut off; resume after seq \(lastDeliveredSeq)"
    }
}

extension Journal {
    /// Follows the journal: every event with `seq > after` that matches `filter`, then
    /// new events as they are committed. Never skips an event: if retention deleted
    /// events it has not seen, iteration throws `CursorExpired`.
    ///
    /// The follower reads the file while it is behind and switches to a bounded in-memory
    /// feed when it has caught up, so a slow follower never slows appends or other
    /// followers.
    ///
    /// `whenOverflowed` is called at the moment the live buffer overflows (from the
    /// committing thread, so it must be quick): a consumer blocked elsewhere, such as an
    /// HTTP stream waiting on a client that stopped reading, learns of it at once.
    public func follow(
        after: Int64, filter: EventFilter = EventFilter(), onOverflow: OverflowPolicy = .catchUp,
        whenOverflowed: (@Sendable () -> Void)? = nil
    ) -> JournalFollower {
        JournalFollower(journal: self, after: after, filter: filter, onOverflow: onOverflow, whenOverflowed: whenOverflowed)
    }

    /// Counts a live subscriber cut off for falling behind (`/metrics`).
    public func countLaggedSubscriber() {
        stats.withLock { $0.laggedSubscribers += 1 }
    }
}

/// An `AsyncSequence` of journal events; see `Journal.follow(after:filter:onOverflow:)`.
public struct JournalFollower: AsyncSequence, Sendable {
    public typealias Element = Event
    let journal: Journal
    let after: Int64
    let filter: EventFilter
    let onOverflow: OverflowPolicy
    let whenOverflowed: (@Sendable () -> Void)?

    public func makeAsyncIterator() -> Iterator {
        Iterator(journal: journal, cursor: after, filter: filter, onOverflow: onOverflow, whenOverflowed: whenOverflowed)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let journal: Journal
        /// The last seq delivered (or known to be past for this filter).
        public private(set) var cursor: Int64
        let filter: EventFilter
        let onOverflow: OverflowPolicy
        let whenOverflowed: (@Sendable () -> Void)?
        var page: [Event] = []
        var pageIndex = 0
        /// Unsubscribes when the last copy of the iterator goes away (a consumer that
        /// breaks out of its loop or a client that disconnects).
        let liveHandle: LiveHandle
        var live: LiveSubscription? {
            get { liveHandle.subscription }
            nonmutating set { liveHandle.subscription = newValue }
        }
        static let pageSize = 512

        init(journal: Journal, cursor: Int64, filter: EventFilter, onOverflow: OverflowPolicy, whenOverflowed: (@Sendable () -> Void)?) {
            self.journal = journal
            self.cursor = cursor
            self.filter = filter
            self.onOverflow = onOverflow
            self.whenOverflowed = whenOverflowed
            self.liveHandle = LiveHandle(hub: journal.hub)
        }

        public mutating func next() async throws -> Event? {
            while true {
                switch try await step(idleTimeout: nil) {
                case .event(let event): return event
                case .idle: continue
                case nil: return nil
                }
            }
        }

        /// Like `next()`, but returns `.idle` when nothing arrived for `idleTimeout`, so
        /// that a caller (the SSE stream) can send a keep-alive and notice a client gone.
        public mutating func step(idleTimeout: Duration?) async throws -> FollowStep? {
            while true {
                if pageIndex < page.count {
                    let event = page[pageIndex]
                    pageIndex += 1
                    if event.seq <= cursor { continue }
                    cursor = event.seq
                    return .event(event)
                }
                if Task.isCancelled || journal.hub.isClosed {
                    stopLive()
                    return nil
                }
                if let live {
                    switch await live.next(idleTimeout: idleTimeout) {
                    case .idle(let progress):
                        // Every matching event up to `progress` has been delivered: a
                        // filtered follower's cursor may move there (see APIRoutes.stream).
                        if progress > cursor { cursor = progress }
                        return .idle
                    case .event(let event):
                        if event.seq <= cursor { continue }
                        cursor = event.seq
                        return .event(event)
                    case .overflow:
                        // Counted when it happened (see readFromFile).
                        stopLive()
                        if onOverflow == .fail { throw Lagged(lastDeliveredSeq: cursor) }
                    case .cancelled:
                        stopLive()
                        return nil
                    }
                    continue
                }
                try await readFromFile()
            }
        }

        /// Reads the next page; when the file has nothing more, subscribes to the live
        /// feed and reads once more, so that nothing committed in between is missed.
        private mutating func readFromFile() async throws {
            let first = try await journal.followPage(after: cursor, filter: filter, limit: Self.pageSize)
            page = first.events
            pageIndex = 0
            if first.events.count == Self.pageSize { return }
            // Caught up. Nothing matching exists up to lastSeq: the cursor may move there.
            let scannedTo = Swift.max(cursor, first.lastSeq)
            let subscription = journal.hub.subscribe(filter: filter, capacity: journal.subscriberBuffer) { [weak journal, whenOverflowed] in
                journal?.countLaggedSubscriber()
                whenOverflowed?()
            }
            let second = try await journal.followPage(after: scannedTo, filter: filter, limit: Self.pageSize)
            if second.events.count == Self.pageSize {
                // A burst landed between the two reads: stay on the file for now.
                journal.hub.unsubscribe(subscription)
            } else {
                live = subscription
            }
            page += second.events
            if page.isEmpty { cursor = scannedTo }
        }

        private mutating func stopLive() {
            if let live { journal.hub.unsubscribe(live) }
            live = nil
        }
    }
}

/// Owns a follower's live subscription; ends it on deinit.
final class LiveHandle: @unchecked Sendable {
    // Only the iterator that owns this handle touches `subscription`, from one task at a
    // time (AsyncIteratorProtocol.next is not called concurrently), hence unchecked.
    let hub: SubscriptionHub
    var subscription: LiveSubscription?

    init(hub: SubscriptionHub) { self.hub = hub }

    deinit {
        if let subscription { hub.unsubscribe(subscription) }
    }
}

/// Fans committed events out to live subscribers. `publish` never waits for a
/// subscriber: each has a bounded buffer and is marked overflowed when it is full.
final class SubscriptionHub: Sendable {
    private struct State {
        var subscribers: [ObjectIdentifier: LiveSubscription] = [:]
        var closed = false
    }
    private let state = Mutex(State())

    func subscribe(filter: EventFilter, capacity: Int, whenOverflowed: @escaping @Sendable () -> Void = {}) -> LiveSubscription {
        let subscription = LiveSubscription(filter: filter, capacity: capacity, whenOverflowed: whenOverflowed)
        let closed = state.withLock { s -> Bool in
            if !s.closed { s.subscribers[ObjectIdentifier(subscription)] = subscription }
            return s.closed
        }
        if closed { subscription.cancel() }
        return subscription
    }

    func close() {
        let all = state.withLock { s -> [LiveSubscription] in
            s.closed = true
            defer { s.subscribers = [:] }
            return Array(s.subscribers.values)
        }
        for subscription in all { subscription.cancel() }
    }

    func unsubscribe(_ subscription: LiveSubscription) {
        state.withLock { _ = $0.subscribers.removeValue(forKey: ObjectIdentifier(subscription)) }
        subscription.cancel()
    }

    func publish(_ events: [Event]) {
        let current = state.withLock { Array($0.subscribers.values) }
        var overflowed: [LiveSubscription] = []
        for subscriber in current where subscriber.offer(events) { overflowed.append(subscriber) }
        // An overflowed subscriber gets nothing more; its follower unsubscribes too.
        if !overflowed.isEmpty {
            state.withLock { s in for subscriber in overflowed { s.subscribers.removeValue(forKey: ObjectIdentifier(subscriber)) } }
        }
    }

    var count: Int { state.withLock { $0.subscribers.count } }

    var isClosed: Bool { state.withLock { $0.closed } }
}

/// One live subscriber's bounded buffer.
final class LiveSubscription: Sendable {
    enum Next {
        case event(Event)
        case overflow
        case cancelled
        /// Nothing arrived in time; `progress` is the last seq offered to this subscriber,
        /// matching or not, with the buffer empty.
        case idle(progress: Int64)
    }

    private struct State {
        var buffer: [Event] = []
        var head = 0
        var overflowed = false
        var cancelled = false
        var waiter: CheckedContinuation<Void, Never>?
        var woken = false
        var lastOfferedSeq: Int64 = 0
        var available: Int { buffer.count - head }
    }

    let filter: EventFilter
    let capacity: Int
    let whenOverflowed: @Sendable () -> Void
    private let state = Mutex(State())

    init(filter: EventFilter, capacity: Int, whenOverflowed: @escaping @Sendable () -> Void = {}) {
        self.filter = filter
        self.capacity = capacity
        self.whenOverflowed = whenOverflowed
    }

    /// Buffers what matches; returns true when this offer overflowed the buffer (its
    /// events are then released at once, and `whenOverflowed` called).
    @discardableResult
    func offer(_ events: [Event]) -> Bool {
        var overflowedNow = false
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard !s.overflowed, !s.cancelled else { return nil }
            s.lastOfferedSeq = events.last?.seq ?? s.lastOfferedSeq
            let matching = filter.isEmpty ? events : events.filter(filter.matches)
            if matching.isEmpty { return nil }
            // One commit is never an overflow on its own: an empty buffer takes a whole batch.
            if s.available > 0 && s.available + matching.count > capacity {
                s.overflowed = true
                overflowedNow = true
                s.buffer = []
                s.head = 0
            } else {
                if s.head > 1024 && s.head * 2 > s.buffer.count {
                    s.buffer.removeFirst(s.head)
                    s.head = 0
                }
                s.buffer.append(contentsOf: matching)
            }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
        if overflowedNow { whenOverflowed() }
        return overflowedNow
    }

    func cancel() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.cancelled = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Resumes a waiting `next` without data (its idle timer fired).
    private func wake() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.woken = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    func next(idleTimeout: Duration? = nil) async -> Next {
        state.withLock { $0.woken = false }
        // The idle timer starts only if we have to wait: a busy stream creates no tasks.
        var timer: Task<Void, Never>?
        defer { timer?.cancel() }
        while true {
            let ready = state.withLock { s -> Next? in
                if s.cancelled { return .cancelled }
                if s.available > 0 {
                    let event = s.buffer[s.head]
                    s.head += 1
                    return .event(event)
                }
                if s.overflowed { return .overflow }
                return nil
            }
            if let ready { return ready }
            if let progress = state.withLock({ s in s.woken && s.available == 0 ? s.lastOfferedSeq : nil }) {
                return .idle(progress: progress)
            }
            if timer == nil, let idleTimeout {
                timer = Task { [weak self] in
                    try? await Task.sleep(for: idleTimeout)
                    if !Task.isCancelled { self?.wake() }
                }
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { s -> Bool in
                        if s.cancelled || s.overflowed || s.available > 0 || s.woken { return true }
                        s.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                self.cancel()
            }
        }
    }
}

extension Journal {
    /// Whether `closeFollowers()` was called (the daemon is shutting down).
    public var followersClosed: Bool { hub.isClosed }

    /// Ends every follower (their iteration returns `nil`) and refuses new live
    /// subscriptions; used at shutdown so that open HTTP streams finish.
    public func closeFollowers() {
        hub.close()
    }
}
