import Foundation
import Synchronization

/// The one owner of a physical Modbus bus: a TCP endpoint (device or gateway) or a serial
/// line. Every device on the bus submits its reads here; a thread of the bus's own runs them
/// one at a time against a single libmodbus connection, in the order they arrive, so devices
/// that each wait for their answer before asking again are served in turn.
///
/// The bus connects when the first request comes and reconnects after the connection
/// breaks, with capped exponential back-off (0.5 s doubling to 30 s): between attempts a
/// request fails at once with the last connection error, so a dead gateway costs nothing.
/// A unit that does not answer costs one response timeout per request; isolating it (not
/// asking again for a while) is the device's business (``ModbusGantryDriver``).
public final class ModbusBus: @unchecked Sendable {
    public let endpoint: ModbusEndpoint
    public let line: ModbusLineSettings?

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false

    // Owned by the bus thread.
    private var client: ModbusClient?
    private var nextAttempt = ContinuousClock.now
    private var retryDelay: Duration = .milliseconds(500)
    private var lastConnectFailure: ModbusError?

    init(endpoint: ModbusEndpoint, line: ModbusLineSettings?) {
        self.endpoint = endpoint
        self.line = line
        let thread = Thread { [self] in serve() }
        thread.name = "modbus \(endpoint)"
        thread.start()
    }

    /// Connects if needed, then runs `body` on the bus thread with the connected client.
    /// `timeout` is the response timeout for this request.
    public func perform<T: Sendable>(
        timeout: Duration, _ body: @escaping @Sendable (ModbusSession) throws(ModbusError) -> T
    ) async throws(ModbusError) -> T {
        let result: Result<T, ModbusError> = await withCheckedContinuation { continuation in
            enqueue { [self] in
                continuation.resume(returning: Result { () throws(ModbusError) -> T in
                    let client = try connectedClient(timeout: timeout)
                    client.setResponseTimeout(timeout)
                    return try body(ModbusSession(client: client, timeout: timeout))
                })
            }
        }
        return try result.get()
    }

    private func enqueue(_ job: @escaping () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Ends the thread after the queued requests; closes the connection.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func serve() {
        while true {
            condition.lock()
            while jobs.isEmpty, !stopping { condition.wait() }
            if jobs.isEmpty, stopping {
                condition.unlock()
                break
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
        client?.close()
        client = nil
    }

    private func connectedClient(timeout: Duration) throws(ModbusError) -> ModbusClient {
        if let client, client.isConnected { return client }
        let now = ContinuousClock.now
        if now < nextAttempt, let lastConnectFailure { throw lastConnectFailure }
        do throws(ModbusError) {
            let fresh: ModbusClient
            if let client {
                fresh = client
            } else {
                fresh = try ModbusClient(endpoint: endpoint, line: line)
                client = fresh
            }
            // Connecting waits at most the response timeout (TCP connect is bounded by it in libmodbus).
            try fresh.connect(timeout: timeout)
            retryDelay = .milliseconds(500)
            lastConnectFailure = nil
            return fresh
        } catch {
            nextAttempt = now + retryDelay
            retryDelay = min(retryDelay * 2, .seconds(30))
            lastConnectFailure = error
            throw error
        }
    }
}

/// What a request's body may do with the bus: read, with retries.
public struct ModbusSession {
    fileprivate let client: ModbusClient
    fileprivate let timeout: Duration

    /// Reads `count` bits or registers; a timeout or a malformed answer is retried up to
    /// `retries` times. An exception or a broken connection is not retried.
    public func read(unit: Int, table: ModbusTable, address: Int, count: Int, retries: Int = 0) throws(ModbusError)
        -> ModbusRawValue
    {
        var attempt = 0
        while true {
            do throws(ModbusError) {
                return try client.read(unit: unit, table: table, address: address, count: count)
            } catch {
                let retryable = error.kind == .timeout || error.kind == .badResponse
                guard retryable, attempt < retries else { throw error }
                attempt += 1
                // A TCP connection is dropped after such an error (a late answer must not be
                // read as the next one's): the retry goes out on a fresh one.
                if !client.isConnected { try client.connect(timeout: timeout) }
            }
        }
    }
}

/// The buses of this process, one per endpoint, shared by the devices that name it.
public enum ModbusBuses {
    private static let buses = Mutex<[ModbusEndpoint: (bus: ModbusBus, users: Int)]>([:])

    /// The bus of `endpoint`, created on first use. Devices on one serial line must agree on
    /// its settings: a device that asks for other ones gets an error naming both.
    public static func acquire(_ endpoint: ModbusEndpoint, line: ModbusLineSettings?, device: String) throws(ModbusError)
        -> ModbusBus
    {
        let result: Result<ModbusBus, ModbusError> = buses.withLock { buses in
            if let entry = buses[endpoint] {
                guard entry.bus.line == line else {
                    return .failure(
                        ModbusError(
                            .connection,
                            "device \(device) asks for \(endpoint) with line settings \(describe(line)), but the bus is already open with \(describe(entry.bus.line)); devices on one line must use the same settings"
                        ))
                }
                buses[endpoint] = (entry.bus, entry.users + 1)
                return .success(entry.bus)
            }
            let bus = ModbusBus(endpoint: endpoint, line: line)
            buses[endpoint] = (bus, 1)
            return .success(bus)
        }
        return try result.get()
    }

    /// Gives the bus back; the last user's release closes it.
    public static func release(_ bus: ModbusBus) {
        let last = buses.withLock { buses -> Bool in
            guard let entry = buses[bus.endpoint], entry.bus === bus else { return false }
            if entry.users > 1 {
                buses[bus.endpoint] = (bus, entry.users - 1)
                return false
            }
            buses[bus.endpoint] = nil
            return true
        }
        if last { bus.stop() }
    }

    private static func describe(_ line: ModbusLineSettings?) -> String {
        guard let line else { return "(none)" }
        return "\(line.serial)\(line.rs485 ? " rs485" : "")\(line.rts == .none ? "" : " rts=\(line.rts.rawValue)")"
    }
}
