import Foundation

/// A task executor with one thread of its own, for one device's driver.
///
/// The daemon runs each driver with this executor as its task executor preference, so a
/// driver's polls, reply timeouts and journaling keep their pace while the cooperative pool
/// (two threads on a two-core workstation) is busy with a DICOM study or an image analysis.
/// In a full test run, a calibrator driver on the shared pool managed one poll in five
/// seconds instead of four a second, and a polled device looked silent.
///
/// Child tasks inherit the preference; unstructured `Task {}` does not. After `shutdown()`
/// the thread ends once its queue is empty, and jobs that still arrive go to the global
/// concurrent executor, so nothing waits for a thread that is gone.
public final class DeviceThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var jobs: [UnownedJob] = []
    /// Guarded by `condition`.
    private var stopping = false

    /// Starts the thread, named `name` (e.g. `driver dosecal-hotlab`; Linux shows 15 bytes).
    public init(name: String) {
        let thread = Thread { [self] in runJobs() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        guard !stopping else {
            condition.unlock()
            globalConcurrentExecutor.enqueue(ExecutorJob(unowned))
            return
        }
        jobs.append(unowned)
        condition.signal()
        condition.unlock()
    }

    /// Lets the thread end once it has run what is queued.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func runJobs() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}
