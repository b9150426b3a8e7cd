import Foundation
import NMBridgeCore
import NMTransport

/// One open connection to a calibrator: polls (or listens), decodes, settles, journals.
/// Throws when the port fails; the driver then reopens it.
struct CalibratorSession {
    let settings: DoseCalibratorSettings
    let context: DriverContext
    /// The port's udev identity when it is a USB adapter udev knows (for a reset).
    let tty: TTYDeviceInfo?
    /// Consecutive reply timeouts; kept by the driver across reopens.
    var wedge: WedgeDetector
    private var settlers: [Int: Settler] = [:]
    private var errors: ProtocolErrorLimiter
    private var lines = LineSplitter()
    private var frames = CRC35RFramer()

    init(settings: DoseCalibratorSettings, context: DriverContext, tty: TTYDeviceInfo?, wedge: WedgeDetector) {
        self.settings = settings
        self.context = context
        self.tty = tty
        self.wedge = wedge
        self.errors = ProtocolErrorLimiter(interval: settings.errorInterval)
    }

    mutating func run(_ port: SerialPort) async throws -> Never {
        let family = settings.family
        guard type(of: family).isPolled else {
            // A printer port speaks when it has something to say.
            while true {
                let bytes = try await port.read(timeout: .seconds(3600))
                for line in lines.push(bytes) {
                    switch line {
                    case .success(let text): try await handle(family.decode(text, raw: text, answering: nil))
                    case .failure(let violation): try await handle(.violation(violation))
                    }
                }
            }
        }
        let clock = ContinuousClock()
        while true {
            let started = clock.now
            try await pollOnce(port, family)
            let elapsed = started.duration(to: clock.now)
            if elapsed < settings.pollInterval {
                try await context.clock.sleep(for: settings.pollInterval - elapsed)
            }
        }
    }

    // MARK: - Polling

    /// Sends the family's requests one after the other and handles each reply.
    private mutating func pollOnce(_ port: SerialPort, _ family: any DoseCalibratorFamily) async throws {
        let leftover = port.discardInput()
        if !leftover.isEmpty {
            // Bytes after the last reply put that reply in doubt: it no longer counts
            // towards settling.
            doubtReadings()
            try await handle(.violation(ProtocolViolation("unexpected bytes between replies", bytes: Array(leftover.prefix(64)))))
        }
        for request in family.pollRequests {
            frames.reset()
            lines.reset()
            try await port.write(request.bytes)
            switch try await readReply(port, framing: type(of: family).framing) {
            case .reply(let reply, let raw): try await handle(family.decode(reply, raw: raw, answering: request), chamber: request.chamber ?? 0)
            case .none: try await noReply()
            case .rejected: continue
            }
        }
    }

    private enum ReplyOutcome {
        case reply([UInt8], raw: [UInt8])
        /// Nothing came in time (an unanswered poll).
        case none
        /// Something came, but not a reply; it was journaled as a protocol error.
        case rejected
    }

    /// One reply cut from the stream as `framing` says.
    private mutating func readReply(_ port: SerialPort, framing: ReplyFraming) async throws -> ReplyOutcome {
        switch framing {
        case .fixedLength(let length):
            let reply = try await readBytes(port, count: length)
            if reply.isEmpty { return .none }
            if reply.count < length {
                try await handle(.violation(ProtocolViolation("reply cut short after \(reply.count) bytes", bytes: reply)))
                return .rejected
            }
            // The reply has no frame of its own; bytes after it mean it cannot be trusted
            // either (a noisy line, another talker). Such a reply is an error only, never a
            // reading that counts towards settling.
            if reply.count > length {
                doubtReadings()
                try await handle(.violation(ProtocolViolation("bytes after the reply", bytes: Array(reply.prefix(64)))))
                return .rejected
            }
            return .reply(reply, raw: reply)
        case .checksummedFrame:
            return try await readFrame(port).map { .reply($0.body, raw: $0.raw) } ?? .none
        case .line:
            return try await readLine(port).map { .reply($0, raw: $0) } ?? .none
        }
    }

    /// Reads until `count` bytes or the reply timeout; may return fewer (or none).
    private func readBytes(_ port: SerialPort, count: Int) async throws -> [UInt8] {
        let clock = ContinuousClock()
        let deadline = clock.now + settings.replyTimeout
        var reply: [UInt8] = []
        while reply.count < count {
            let remaining = clock.now.duration(to: deadline)
            if remaining <= .zero { break }
            reply += try await port.read(timeout: remaining)
        }
        return reply
    }

    private mutating func readFrame(_ port: SerialPort) async throws -> (body: [UInt8], raw: [UInt8])? {
        let clock = ContinuousClock()
        let deadline = clock.now + settings.replyTimeout
        while true {
            let remaining = clock.now.duration(to: deadline)
            if remaining <= .zero {
                if frames.pending > 0 {
                    try await handle(.violation(ProtocolViolation("frame cut short after \(frames.pending) bytes", bytes: [])))
                }
                return nil
            }
            let bytes = try await port.read(timeout: remaining)
            for output in frames.push(bytes) {
                switch output {
                case .frame(let body, let raw): return (body, raw)
                case .violation(let violation): try await handle(.violation(violation))
                }
            }
        }
    }

    private mutating func readLine(_ port: SerialPort) async throws -> [UInt8]? {
        let clock = ContinuousClock()
        let deadline = clock.now + settings.replyTimeout
        while true {
            let remaining = clock.now.duration(to: deadline)
            if remaining <= .zero {
                if !lines.partial.isEmpty {
                    try await handle(.violation(ProtocolViolation("reply line without CR LF", bytes: Array(lines.partial.prefix(64)))))
                }
                return nil
            }
            for line in lines.push(try await port.read(timeout: remaining)) {
                switch line {
                case .success(let text): return text
                case .failure(let violation): try await handle(.violation(violation))
                }
            }
        }
    }

    /// A poll went unanswered. After `usb_reset_after_timeouts` in a row on a USB adapter
    /// whose port is still open (a wedged adapter, not an unplugged one), reset it through
    /// libusb, journal `device.usb_reset`, and end the session so the port is reopened.
    private mutating func noReply() async throws {
        guard case .resetNow(let count) = wedge.replyTimedOut(at: .now) else { return }
        guard let tty else {
            context.logger.warning(
                "the calibrator stopped answering; not a USB adapter udev knows, so no USB reset",
                metadata: ["timeouts": "\(count)"])
            return
        }
        let attempt = await USBDevice.resetAdapter(of: tty, reason: WedgeDetector.reason(consecutiveTimeouts: count))
        try await context.emit("device.usb_reset", data: attempt.eventData(tty: tty))
        throw NMBridgeError(
            .transportFailed,
            "USB adapter \(tty) " + (attempt.succeeded ? "was reset" : "reset failed") + " after \(count) unanswered polls; reopening")
    }

    private mutating func doubtReadings() {
        for chamber in settlers.keys { settlers[chamber]?.doubt() }
    }

    // MARK: - Journaling

    /// Valid answers are heartbeats; garbage is not (a device that only sends garbage
    /// goes stale, and its errors are journaled).
    private mutating func handle(_ message: DecodedMessage, chamber: Int = 0) async throws {
        switch message {
        case .reading(let reading):
            try await context.heartbeat()
            wedge.replyReceived()
            if settings.emitReadings {
                try await context.emit(
                    "dosecal.reading", data: Self.fields(of: reading, measurement: false), raw: reading.raw)
            }
            var settler = settlers[reading.chamber ?? chamber] ?? Settler(rule: settings.settle)
            let settled = settler.add(reading)
            settlers[reading.chamber ?? chamber] = settler
            if let settled {
                try await context.emit("dosecal.measurement", data: Self.fields(of: settled, measurement: true), raw: settled.raw)
            }
        case .noReading:
            try await context.heartbeat()
            wedge.replyReceived()
            settlers[chamber]?.reset()
        case .violation(let violation):
            guard var data = errors.admit(violation.error, now: ContinuousClock.now) else { return }
            if !violation.bytes.isEmpty { data["bytes_hex"] = .string(Hex.encode(violation.bytes)) }
            try await context.emit("device.protocol_error", data: data, raw: violation.bytes.isEmpty ? nil : violation.bytes)
        }
    }

    static func fields(of reading: ActivityReading, measurement: Bool) -> [String: JSONValue] {
        var data: [String: JSONValue] = [
            "nuclide": .string(reading.nuclide), "activity_bq": .double(reading.activityBq), "reading": .string(reading.reading),
        ]
        guard measurement else { return data }
        data["unit"] = .string(reading.unit.rawValue)
        if let chamber = reading.chamber { data["chamber"] = .int(Int64(chamber)) }
        if let number = reading.calibrationNumber { data["calibration_number"] = .string(number) }
        if let time = reading.deviceTime { data["device_time"] = .string(time) }
        return data
    }
}
