import Foundation
import Logging

/// Speaks the sd_notify protocol (one datagram per state change to `$NOTIFY_SOCKET`).
///
/// Without `NOTIFY_SOCKET` (not started by systemd) every call is a no-op, so the daemon
/// behaves the same in a terminal, in tests and under systemd. Implemented directly
/// (a few lines of socket code) so that nothing links libsystemd.
public struct SystemdNotifier: Sendable {
    let socketPath: String?
    let logger: Logger

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger) {
        let path = environment["NOTIFY_SOCKET"]
        self.socketPath = (path?.isEmpty ?? true) ? nil : path
        self.logger = logger
    }

    /// Whether a manager listens.
    public var isEnabled: Bool { socketPath != nil }

    /// The watchdog interval systemd expects pings within, if it asked for them.
    public static func watchdogInterval(environment: [String: String] = ProcessInfo.processInfo.environment) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 else { return nil }
        if let pid = environment["WATCHDOG_PID"], let value = Int32(pid), value != getpid() { return nil }
        return .microseconds(usec)
    }

    /// Sends `state` (e.g. `READY=1\nSTATUS=…`). Failures are logged, never fatal.
    public func notify(_ state: String) {
        guard let socketPath else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            logger.warning("sd_notify: cannot create socket", metadata: ["errno": "\(errno)"])
            return
        }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        // A leading '@' names a socket in the abstract namespace (a NUL byte on the wire).
        var pathBytes = Array(socketPath.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else {
            logger.warning("sd_notify: NOTIFY_SOCKET path too long", metadata: ["path": "\(socketPath)"])
            return
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, b) in pathBytes.enumerated() { buffer[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (pathBytes.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
                sendto(fd, message, message.count, Int32(MSG_NOSIGNAL), sockaddrPointer, length)
            }
        }
        if sent < 0 {
            logger.warning("sd_notify failed", metadata: ["socket": "\(socketPath)", "errno": "\(String(cString: strerror(errno)))"])
        }
    }
}
