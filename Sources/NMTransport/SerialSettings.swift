import NMBridgeCore

/// Line settings of a serial port (`serial = { baud = 4800, data_bits = 8, … }`).
public struct SerialSettings: Sendable, Equatable, CustomStringConvertible {
    public enum Parity: String, Sendable, CaseIterable {
        case none, even, odd
    }

    public enum FlowControl: String, Sendable, CaseIterable {
        /// No flow control.
        case none
        /// Hardware handshake (RTS/CTS).
        case rtscts
        /// Software handshake (XON/XOFF).
        case xonxoff
    }

    public var baud: Int
    public var dataBits: Int
    public var parity: Parity
    public var stopBits: Int
    public var flowControl: FlowControl

    public init(baud: Int, dataBits: Int = 8, parity: Parity = .none, stopBits: Int = 1, flowControl: FlowControl = .none) {
        self.baud = baud
        self.dataBits = dataBits
        self.parity = parity
        self.stopBits = stopBits
        self.flowControl = flowControl
    }

    /// The baud rates termios can set.
    public static let supportedBauds = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400]

    /// `4800 8N1`, `19200 8E1 rtscts`.
    public var description: String {
        let p = parity == .none ? "N" : parity == .even ? "E" : "O"
        return "\(baud) \(dataBits)\(p)\(stopBits)" + (flowControl == .none ? "" : " \(flowControl.rawValue)")
    }

    /// Reads the inline table `key` of a device table (every field optional, falling back
    /// to `defaults`, the instrument's documented settings). Problems go to `reader`.
    public static func read(_ key: String = "serial", from reader: ConfigTableReader, defaults: SerialSettings) -> SerialSettings? {
        guard reader.has(key) else { return defaults }
        guard let table = reader.table(key) else { return nil }
        let problemsBefore = table.problems.count
        var settings = defaults
        if let baud = table.int("baud") {
            if supportedBauds.contains(Int(baud)) {
                settings.baud = Int(baud)
            } else {
                table.problem("baud", "unsupported baud rate \(baud); use one of " + supportedBauds.map(String.init).joined(separator: ", "))
            }
        }
        settings.dataBits = table.int("data_bits", in: 5...8).map(Int.init) ?? settings.dataBits
        settings.parity = table.choice("parity", Parity.allCases.map(\.rawValue)).flatMap(Parity.init(rawValue:)) ?? settings.parity
        settings.stopBits = table.int("stop_bits", in: 1...2).map(Int.init) ?? settings.stopBits
        settings.flowControl =
            table.choice("flow_control", FlowControl.allCases.map(\.rawValue)).flatMap(FlowControl.init(rawValue:)) ?? settings.flowControl
        table.reportUnknownKeys()
        return table.problems.count == problemsBefore ? settings : nil
    }
}
