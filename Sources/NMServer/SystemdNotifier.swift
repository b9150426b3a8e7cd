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
        guard let (address, length) = UnixSocketAddress.make(socketPath) else {
            logger.warning("sd_notify: NOTIFY_SOCKET path too long", metadata: ["path": "\(socketPath)"])
            return
        }
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
                sendto(fd, message, message.count, Int32(MSG_NOSIGNAL), sockaddrPointer, length)
            }
        }
        if sent < 0 {
            logger.warning("sd_notify failed", metadata: ["socket": "\(socketPath)", "errno": "\(String(cString: strerror(errno)))"])
        }
    }
}

/// A `sockaddr_un` for a path; a leading `@` names the abstract namespace (a NUL byte on
/// the wire), as in `NOTIFY_SOCKET`. `nil` when the path does not fit.
enum UnixSocketAddress {
    static func make(_ path: String) -> (sockaddr_un, socklen_t)? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, b) in bytes.enumerated() { buffer[i] = b }
        }
        let length = MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1)
        return (address, socklen_t(length))
    }
}
