#if canImport(Glibc)
import Glibc
#endif

/// Unblocks SIGTERM, SIGINT and SIGHUP for the calling thread (and the threads it
/// starts later).
///
/// A blocked signal mask survives `exec`: a program started from a thread that blocks
/// them (some supervisors, test runners and thread pools do) would never see SIGTERM
/// and could not be stopped gracefully. systemd starts services with a clean mask; this
/// makes the other launchers behave the same.
public func unblockTerminationSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, signal) }
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
}
