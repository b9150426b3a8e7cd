import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One thread of its own at the lowest CPU priority (nice 19) for camera QC's image work:
/// reading a flood or COR acquisition and analysing it. On a busy acquisition workstation
/// the DICOM receiver, the journal and the API then get the CPU first, and judging waits for
/// idle time (bench/camera/receiving measures the difference). Jobs run one at a time, in
/// the order they came.
final class LowPriorityWorker: Sendable {
    static let shared = LowPriorityWorker()

    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let ready = DispatchSemaphore(value: 0)

    private init() {
        let thread = Thread { [self] in
            // On Linux the nice value is a per-thread attribute; 0 is the calling thread.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            while true {
                self.ready.wait()
                let job = self.jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                job?()
            }
        }
        thread.name = "camera QC (nice 19)"
        thread.start()
    }

    /// Runs `body` on the worker thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            jobs.withLock {
                $0.append { continuation.resume(with: Result { try body() }) }
            }
            ready.signal()
        }
    }
}
