import CModbus
import Foundation
import NMTransport

/// Where a Modbus bus is: a TCP endpoint (a device or a gateway) or a serial line (RTU).
/// Two devices with equal endpoints share one connection (``ModbusBus``).
public enum ModbusEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// Modbus TCP to `host:port`.
    case tcp(host: String, port: Int)
    /// Modbus RTU on a serial device.
    case rtu(path: String)

    /// `tcp 192.0.2.20:502`, `rtu /dev/ttyUSB1`.
    public var description: String {
        switch self {
        case .tcp(let host, let port): "tcp \(host.contains(":") ? "[\(host)]" : host):\(port)"
        case .rtu(let path): "rtu \(path)"
        }
    }

    /// Parses `host:port` or `[v6]:port`; nil when malformed. Port 0 ("any free port") only
    /// for a server.
    public static func tcp(_ text: String, server: Bool = false) -> ModbusEndpoint? {
        let host: Substring
        let port: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            guard text[close...].hasPrefix("]:") else { return nil }
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains(" "), let number = Int(port), ((server ? 0 : 1)...65535).contains(number) else { return nil }
        return .tcp(host: String(host), port: number)
    }
}

/// Line settings for RTU beyond the serial ones: RS-485 mode and RTS direction control,
/// where the kernel driver and libmodbus support them.
public struct ModbusLineSettings: Sendable, Equatable {
    public enum RTS: String, Sendable, CaseIterable {
        /// libmodbus does not touch RTS.
        case none
        /// RTS high while sending.
        case up
        /// RTS low while sending.
        case down
    }

    public var serial: SerialSettings
    /// Puts the UART into RS-485 mode (TIOCSRS485).
    public var rs485: Bool
    public var rts: RTS

    public init(serial: SerialSettings, rs485: Bool = false, rts: RTS = .none) {
        self.serial = serial
        self.rs485 = rs485
        self.rts = rts
    }
}

/// Why a Modbus transaction failed.
public struct ModbusError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The device answered with a Modbus exception (the code, 1…11).
        case exception(UInt8)
        /// No (complete) answer within the response timeout.
        case timeout
        /// The answer arrived but was malformed: bad CRC, wrong length, wrong unit or transaction.
        case badResponse
        /// The connection could not be made or broke; the bus reconnects.
        case connection
    }

    public var kind: Kind
    /// A sentence naming the endpoint, unit and what failed.
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// Standard names of the exception codes (Modbus Application Protocol v1.1b3, §7).
    public static func exceptionName(_ code: UInt8) -> String {
        switch code {
        case 1: "illegal function"
        case 2: "illegal data address"
        case 3: "illegal data value"
        case 4: "server device failure"
        case 5: "acknowledge"
        case 6: "server device busy"
        case 8: "memory parity error"
        case 10: "gateway path unavailable"
        case 11: "gateway target device failed to respond"
        default: "exception \(code)"
        }
    }
}

/// One libmodbus client context. Not thread-safe and blocking: only ``ModbusBus``'s own
/// thread uses it. This file and the simulator's server are the only users of libmodbus.
final class ModbusClient {
    let endpoint: ModbusEndpoint
    private let line: ModbusLineSettings?
    private let context: OpaquePointer
    private(set) var isConnected = false

    /// Creates a context (no I/O yet). Throws when libmodbus refuses the parameters.
    init(endpoint: ModbusEndpoint, line: ModbusLineSettings?) throws(ModbusError) {
        self.endpoint = endpoint
        let created: OpaquePointer?
        switch endpoint {
        case .tcp(let host, let port):
            created = modbus_new_tcp_pi(host, String(port))
        case .rtu(let path):
            let serial = line?.serial ?? SerialSettings(baud: 19200, parity: .even)
            let parity: CChar = switch serial.parity {
            case .none: CChar(UInt8(ascii: "N"))
            case .even: CChar(UInt8(ascii: "E"))
            case .odd: CChar(UInt8(ascii: "O"))
            }
            created = modbus_new_rtu(path, Int32(serial.baud), parity, Int32(serial.dataBits), Int32(serial.stopBits))
        }
        guard let created else {
            throw ModbusError(.connection, "\(endpoint): libmodbus refused the settings: \(Self.lastError())")
        }
        context = created
        self.line = line
    }

    deinit {
        if isConnected { modbus_close(context) }
        modbus_free(context)
    }

    func connect(timeout: Duration) throws(ModbusError) {
        if isConnected { return }
        setResponseTimeout(timeout)
        guard modbus_connect(context) == 0 else {
            throw ModbusError(.connection, "cannot connect to \(endpoint): \(Self.lastError())")
        }
        isConnected = true
        // RS-485 mode and RTS act on the open line (libmodbus applies them to its fd), so
        // after each connect.
        if case .rtu = endpoint, let line {
            if line.rs485, modbus_rtu_set_serial_mode(context, MODBUS_RTU_RS485) != 0 {
                let reason = Self.lastError()
                close()
                throw ModbusError(.connection, "\(endpoint): cannot switch to RS-485 mode: \(reason)")
            }
            if line.rts != .none, modbus_rtu_set_rts(context, line.rts == .up ? MODBUS_RTU_RTS_UP : MODBUS_RTU_RTS_DOWN) != 0 {
                let reason = Self.lastError()
                close()
                throw ModbusError(.connection, "\(endpoint): cannot set RTS mode \(line.rts.rawValue): \(reason)")
            }
        }
    }

    func close() {
        guard isConnected else { return }
        modbus_close(context)
        isConnected = false
    }

    func setResponseTimeout(_ timeout: Duration) {
        let micros = max(1000, timeout.components.seconds * 1_000_000 + timeout.components.attoseconds / 1_000_000_000_000)
        modbus_set_response_timeout(context, UInt32(micros / 1_000_000), UInt32(micros % 1_000_000))
    }

    /// Reads `count` bits or registers of `table` at `address` from `unit`.
    func read(unit: Int, table: ModbusTable, address: Int, count: Int) throws(ModbusError) -> ModbusRawValue {
        guard modbus_set_slave(context, Int32(unit)) == 0 else {
            throw ModbusError(.badResponse, "\(endpoint): unit \(unit) is not a valid Modbus unit id")
        }
        let where_ = "\(endpoint) unit \(unit) \(table) \(address)…\(address + count - 1)"
        if table.holdsBits {
            var bits = [UInt8](repeating: 0, count: count)
            let read = bits.withUnsafeMutableBufferPointer { buffer in
                table == .coil
                    ? modbus_read_bits(context, Int32(address), Int32(count), buffer.baseAddress)
                    : modbus_read_input_bits(context, Int32(address), Int32(count), buffer.baseAddress)
            }
            guard read == count else { throw failure(read, where_) }
            return .bits(bits.map { $0 != 0 })
        }
        var registers = [UInt16](repeating: 0, count: count)
        let read = registers.withUnsafeMutableBufferPointer { buffer in
            table == .holding
                ? modbus_read_registers(context, Int32(address), Int32(count), buffer.baseAddress)
                : modbus_read_input_registers(context, Int32(address), Int32(count), buffer.baseAddress)
        }
        guard read == count else { throw failure(read, where_) }
        return .registers(registers)
    }

    /// Classifies a failed call from errno, and leaves the link ready for the next request
    /// (see ``resynchronise()``); a broken connection is closed.
    private func failure(_ result: Int32, _ what: String) -> ModbusError {
        let code = errno
        if result >= 0 {
            return ModbusError(.badResponse, "\(what): answered \(result) values")
        }
        let base = Int32(MODBUS_ENOBASE)
        switch code {
        case (base + 1)...(base + 11):
            let exception = UInt8(code - base)
            return ModbusError(.exception(exception), "\(what): \(ModbusError.exceptionName(exception)) (exception \(exception))")
        case ETIMEDOUT:
            resynchronise()
            return ModbusError(.timeout, "\(what): no answer within the response timeout")
        case (base + 12)...(base + 20):
            resynchronise()
            return ModbusError(.badResponse, "\(what): \(String(cString: modbus_strerror(code)))")
        default:
            close()
            return ModbusError(.connection, "\(what): \(String(cString: modbus_strerror(code)))")
        }
    }

    /// After a timeout or a malformed answer, a late answer may still be on its way and
    /// would be read as the answer to the next request, and so on, one behind, for ever.
    /// Over TCP the connection is dropped (the bus reconnects on the next request: a clean
    /// stream); on a serial line the input is flushed (a late frame arrives within the
    /// response timeout or not at all).
    private func resynchronise() {
        if case .tcp = endpoint {
            close()
        } else {
            modbus_flush(context)
        }
    }

    static func lastError() -> String { String(cString: modbus_strerror(errno)) }
}
