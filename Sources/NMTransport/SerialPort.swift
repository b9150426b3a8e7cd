#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NMBridgeCore
import Synchronization

/// An open serial port (a real UART, a USB-serial adapter or a pty), configured raw with
/// termios and opened exclusively.
///
/// Reads never block a cooperative thread: a reader thread owned by the port waits in
/// `poll(2)` and hands bytes to `read(timeout:)`. The same thread ends a read whose
/// timeout has passed, so a read times out on time even when every cooperative thread is
/// busy (a timer task would wait for one). The reader keeps at most `bufferLimit` unread
/// bytes (older ones are dropped and counted), so a chatty device nobody reads cannot grow
/// memory.
public final class SerialPort: Sendable {
    public let path: String
    public let settings: SerialSettings
    private let fd: Int32
    /// A pipe: writing to `stopWrite` stops the reader thread.
    private let stopRead: Int32
    private let stopWrite: Int32
    /// A pipe: writing to `wakeWrite` makes the reader thread look at a new read's deadline.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let state = Mutex(State())
    public static let bufferLimit = 65536

    private struct State {
        var buffer: [UInt8] = []
        var droppedBytes = 0
        var failure: NMBridgeError?
        var waiter: (id: UInt64, deadline: ContinuousClock.Instant, continuation: CheckedContinuation<Void, Never>)?
        var nextWaiterID: UInt64 = 0
        var closed = false
        var readerDone = false
    }

    /// Opens and configures the port. Errors name the path and the reason (missing,
    /// permission, busy — another program has it open exclusively).
    public static func open(path: String, settings: SerialSettings) throws -> SerialPort {
        let fd = Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let hint =
                switch code {
                case ENOENT: " (no such device: unplugged, or a wrong path)"
                case EACCES: " (permission denied: is the service user in the device's group? run a simulator as that user; adapters: /usr/share/doc/nmbridge/udev-rules.md.gz)"
                case EBUSY: " (busy: another program has it open exclusively)"
                default: ""
                }
            throw NMBridgeError(.transportFailed, "cannot open serial port \(path): \(String(cString: strerror(code)))\(hint)")
        }
        do {
            // Advisory lock, as other serial programs use, then the kernel's exclusive mode
            // so that no second open succeeds while nmbridge holds the port.
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                throw NMBridgeError(.transportFailed, "serial port \(path) is locked by another program")
            }
            try configure(fd: fd, path: path, settings: settings)
            _ = ioctl(fd, UInt(TIOCEXCL))
            tcflush(fd, TCIOFLUSH)
        } catch {
            Glibc.close(fd)
            throw error
        }
        var stopPipe: [Int32] = [-1, -1]
        var wakePipe: [Int32] = [-1, -1]
        guard pipe(&stopPipe) == 0 else {
            Glibc.close(fd)
            throw NMBridgeError(.transportFailed, "cannot create a pipe for serial port \(path): \(String(cString: strerror(errno)))")
        }
        guard pipe(&wakePipe) == 0 else {
            let reason = String(cString: strerror(errno))
            for end in stopPipe + [fd] { Glibc.close(end) }
            throw NMBridgeError(.transportFailed, "cannot create a pipe for serial port \(path): \(reason)")
        }
        for end in stopPipe + wakePipe { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        for end in wakePipe { _ = fcntl(end, F_SETFL, O_NONBLOCK) }
        let port = SerialPort(
            path: path, settings: settings, fd: fd, stopRead: stopPipe[0], stopWrite: stopPipe[1], wakeRead: wakePipe[0],
            wakeWrite: wakePipe[1])
        let thread = Thread { [port] in port.readLoop() }
        thread.name = "serial \(path)"
        thread.start()
        return port
    }

    private init(
        path: String, settings: SerialSettings, fd: Int32, stopRead: Int32, stopWrite: Int32, wakeRead: Int32, wakeWrite: Int32
    ) {
        self.path = path
        self.settings = settings
        self.fd = fd
        self.stopRead = stopRead
        self.stopWrite = stopWrite
        self.wakeRead = wakeRead
        self.wakeWrite = wakeWrite
    }

    deinit {
        close()
    }

    private static func configure(fd: Int32, path: String, settings: SerialSettings) throws {
        var tio = termios()
        guard tcgetattr(fd, &tio) == 0 else {
            throw NMBridgeError(.transportFailed, "\(path) is not a serial port (tcgetattr: \(String(cString: strerror(errno))))")
        }
        cfmakeraw(&tio)
        tio.c_cflag |= tcflag_t(CLOCAL | CREAD)
        tio.c_cflag &= ~tcflag_t(CSIZE)
        switch settings.dataBits {
        case 5: tio.c_cflag |= tcflag_t(CS5)
        case 6: tio.c_cflag |= tcflag_t(CS6)
        case 7: tio.c_cflag |= tcflag_t(CS7)
        default: tio.c_cflag |= tcflag_t(CS8)
        }
        switch settings.parity {
        case .none: tio.c_cflag &= ~tcflag_t(PARENB | PARODD)
        case .even:
            tio.c_cflag |= tcflag_t(PARENB)
            tio.c_cflag &= ~tcflag_t(PARODD)
        case .odd: tio.c_cflag |= tcflag_t(PARENB | PARODD)
        }
        if settings.stopBits == 2 { tio.c_cflag |= tcflag_t(CSTOPB) } else { tio.c_cflag &= ~tcflag_t(CSTOPB) }
        tio.c_cflag &= ~tcflag_t(CRTSCTS)
        tio.c_iflag &= ~tcflag_t(IXON | IXOFF | IXANY)
        switch settings.flowControl {
        case .none: break
        case .rtscts: tio.c_cflag |= tcflag_t(CRTSCTS)
        case .xonxoff: tio.c_iflag |= tcflag_t(IXON | IXOFF)
        }
        // Non-blocking reads driven by poll(2): VMIN = VTIME = 0.
        withUnsafeMutableBytes(of: &tio.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        let speed = speedConstant(settings.baud)
        cfsetispeed(&tio, speed)
        cfsetospeed(&tio, speed)
        guard tcsetattr(fd, TCSANOW, &tio) == 0 else {
            throw NMBridgeError(.transportFailed, "cannot configure serial port \(path) as \(settings): \(String(cString: strerror(errno)))")
        }
    }

    private static func speedConstant(_ baud: Int) -> speed_t {
        switch baud {
        case 1200: speed_t(B1200)
        case 2400: speed_t(B2400)
        case 4800: speed_t(B4800)
        case 19200: speed_t(B19200)
        case 38400: speed_t(B38400)
        case 57600: speed_t(B57600)
        case 115200: speed_t(B115200)
        case 230400: speed_t(B230400)
        default: speed_t(B9600)
        }
    }

    // MARK: - Reading

    private func readLoop() {
        var chunk = [UInt8](repeating: 0, count: 4096)
        var fds = [
            pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stopRead, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            for i in fds.indices { fds[i].revents = 0 }
            let ready = poll(&fds, 3, pollTimeoutMs())
            if ready < 0 {
                if errno == EINTR { continue }
                finishReading(NMBridgeError(.transportFailed, "serial port \(path): poll failed: \(String(cString: strerror(errno)))"))
                return
            }
            if fds[1].revents != 0 {
                finishReading(nil)
                return
            }
            if fds[2].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while drain.withUnsafeMutableBytes({ Glibc.read(wakeRead, $0.baseAddress, $0.count) }) > 0 {}
            }
            if fds[0].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    deliver(chunk[0..<n])
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    // A pty whose other end closed reads EIO; an unplugged adapter EIO or ENODEV.
                    let reason = n == 0 ? "end of file" : String(cString: strerror(errno))
                    finishReading(NMBridgeError(.transportFailed, "serial port \(path) went away (\(reason))"))
                    return
                } else if fds[0].revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 {
                    finishReading(NMBridgeError(.transportFailed, "serial port \(path) hung up"))
                    return
                }
            }
            expireWaiter()
        }
    }

    /// How long `poll` may wait: until the waiting read's deadline, or for ever.
    private func pollTimeoutMs() -> Int32 {
        guard let deadline = state.withLock({ $0.waiter?.deadline }) else { return -1 }
        let remaining = ContinuousClock.now.duration(to: deadline)
        if remaining <= .zero { return 0 }
        let (seconds, attoseconds) = remaining.components
        // Rounded up, so that the read is never ended before its deadline.
        return Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }

    /// Ends the waiting read if its deadline has passed.
    private func expireWaiter() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter, ContinuousClock.now >= waiter.deadline else { return nil }
            state.waiter = nil
            return waiter.continuation
        }
        waiter?.resume()
    }

    private func deliver(_ bytes: ArraySlice<UInt8>) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.buffer.append(contentsOf: bytes)
            if state.buffer.count > Self.bufferLimit {
                let excess = state.buffer.count - Self.bufferLimit
                state.buffer.removeFirst(excess)
                state.droppedBytes += excess
            }
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume()
    }

    private func finishReading(_ failure: NMBridgeError?) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.failure = state.failure ?? failure ?? NMBridgeError(.transportFailed, "serial port \(path) is closed")
            state.readerDone = true
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume()
    }

    /// Bytes received so far and not yet read, waiting up to `timeout` for the first one.
    /// Returns an empty array on timeout; throws once the port is gone (unplugged, pty
    /// closed) or closed, after the bytes received before that were read.
    public func read(timeout: Duration) async throws -> [UInt8] {
        if let ready = try takeBuffered() { return ready }
        let deadline = ContinuousClock.now + timeout
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if !state.buffer.isEmpty || state.failure != nil || state.closed || Task.isCancelled || timeout <= .zero { return true }
                    state.waiter = (id, deadline, continuation)
                    // The reader thread may be in a poll without a deadline: make it look.
                    // Under the lock, so `close` cannot have closed the pipe yet.
                    var one: UInt8 = 1
                    _ = Glibc.write(wakeWrite, &one, 1)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard let waiter = state.waiter, waiter.id == id else { return nil }
                state.waiter = nil
                return waiter.continuation
            }
            waiter?.resume()
        }
        try Task.checkCancellation()
        return try takeBuffered() ?? []
    }

    private func takeBuffered() throws -> [UInt8]? {
        try state.withLock { state -> [UInt8]? in
            if !state.buffer.isEmpty {
                defer { state.buffer.removeAll(keepingCapacity: true) }
                return state.buffer
            }
            if let failure = state.failure { throw failure }
            return nil
        }
    }

    /// Bytes dropped because nobody read them (see `bufferLimit`).
    public var droppedBytes: Int { state.withLock { $0.droppedBytes } }

    /// Discards everything received and not yet read (before a new request); returns it.
    @discardableResult
    public func discardInput() -> [UInt8] {
        state.withLock { state in
            defer { state.buffer.removeAll(keepingCapacity: true) }
            return state.buffer
        }
    }

    // MARK: - Writing

    /// Writes all bytes, waiting while the output queue is full (flow control), up to
    /// `timeout`.
    public func write(_ bytes: [UInt8], timeout: Duration = .seconds(2)) async throws {
        var offset = 0
        let deadline = ContinuousClock.now + timeout
        while offset < bytes.count {
            if state.withLock({ $0.closed }) {
                throw NMBridgeError(.transportFailed, "serial port \(path) is closed")
            }
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n > 0 {
                offset += n
                continue
            }
            guard n < 0, errno == EAGAIN || errno == EINTR else {
                throw NMBridgeError(.transportFailed, "cannot write to serial port \(path): \(String(cString: strerror(errno)))")
            }
            guard ContinuousClock.now < deadline else {
                throw NMBridgeError(.transportFailed, "writing to serial port \(path) timed out (flow control holding the line?)")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    // MARK: - Closing

    /// Stops the reader thread and closes the port. Safe to call more than once.
    public func close() {
        let first = state.withLock { state -> Bool in
            defer { state.closed = true }
            return !state.closed
        }
        guard first else { return }
        var one: UInt8 = 1
        _ = Glibc.write(stopWrite, &one, 1)
        // The reader thread closes nothing; wait for it to leave poll before closing.
        while !state.withLock({ $0.readerDone }) { usleep(200) }
        for descriptor in [fd, stopRead, stopWrite, wakeRead, wakeWrite] { Glibc.close(descriptor) }
    }
}
