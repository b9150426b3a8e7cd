#if canImport(Glibc)
import Glibc
#endif
import CTerminal
import Foundation
import NMBridgeCore

/// The controlling side of a pty pair, for the instrument simulators: the simulator
/// reads and writes `fd`, the driver opens `path` like a serial port.
///
/// Optionally keeps a symlink to the current `path` (`--link`), so that a configuration
/// can name a stable path while the simulator drops and re-creates the pty (a cable
/// pulled and plugged back in).
public final class PseudoTerminal: @unchecked Sendable {
    /// The controlling (master) side; non-blocking, close-on-exec.
    public let fd: Int32
    /// The device path of the other side (`/dev/pts/N`).
    public let path: String
    private var closed = false

    public init() throws {
        var name = [CChar](repeating: 0, count: 128)
        let fd = nmb_open_pty(&name, name.count)
        guard fd >= 0 else {
            throw NMBridgeError(.transportFailed, "cannot open a pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        self.path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // Raw on both sides, so that bytes pass unchanged (no echo, no CR/LF mapping)
        // even before the driver configures its end.
        var tio = termios()
        if tcgetattr(fd, &tio) == 0 {
            cfmakeraw(&tio)
            tcsetattr(fd, TCSANOW, &tio)
        }
    }

    deinit { close() }

    /// Points `link` at `path` (replacing an existing symlink, never a regular file).
    public func link(at link: String) throws {
        var st = stat()
        if lstat(link, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFLNK else {
                throw NMBridgeError(.transportFailed, "\(link) exists and is not a symlink; not replacing it")
            }
        }
        let temporary = link + ".tmp\(getpid())"
        unlink(temporary)
        guard symlink(path, temporary) == 0, rename(temporary, link) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            throw NMBridgeError(.transportFailed, "cannot create symlink \(link) → \(path): \(message)")
        }
    }

    /// Writes all bytes (waiting while the pty's buffer is full). Returns false when the
    /// other side is gone for good.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n > 0 {
                offset += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pfd, 1, 100)
            } else {
                return false
            }
        }
        return true
    }

    /// Reads what is available, waiting up to `timeoutMs` for the first byte. Returns an
    /// empty array on timeout and when nobody has the other side open (a pty reads EIO
    /// then; the simulator keeps waiting for the driver to come back).
    public func read(timeoutMs: Int32) -> [UInt8] {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, timeoutMs)
        guard ready > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else {
            // POLLHUP without a reader on the other side: do not spin.
            if pfd.revents & Int16(POLLHUP) != 0 { usleep(UInt32(min(timeoutMs, 50)) * 1000) }
            return []
        }
        return Array(buffer[0..<n])
    }

    /// Whether a program has the other side open (the controlling side reports a hang-up
    /// while nobody does).
    public var peerIsOpen: Bool {
        var pfd = pollfd(fd: fd, events: 0, revents: 0)
        guard poll(&pfd, 1, 0) >= 0 else { return false }
        return pfd.revents & Int16(POLLHUP) == 0
    }

    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }
}
