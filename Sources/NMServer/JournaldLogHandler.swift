import Foundation
import Glibc
import NMBridgeCore
import Logging
import Synchronization

/// Logs one line per message to stderr in a form journald understands.
///
/// Under systemd (`JOURNAL_STREAM` set) each line starts with the sd-daemon priority
/// prefix `<N>` so journald records the level, and carries no timestamp (journald adds
/// one). On a terminal it starts with a local timestamp and the level. Metadata follows
/// as `key=value`, with `device.id` first so `journalctl | grep device.id=gantry-1` works.
public struct JournaldLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let underSystemd: Bool
    private static let lock = Mutex(())

    public init(label: String, level: Logger.Level = .info, underSystemd: Bool = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil) {
        self.label = label
        self.logLevel = level
        self.underSystemd = underSystemd
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra, uniquingKeysWith: { _, new in new }) }
        var line = ""
        if underSystemd {
            line = "<\(Self.syslogPriority(event.level))>"
        } else {
            line = LocalTime.format(Date()) + " " + event.level.rawValue.uppercased() + " "
        }
        line += event.message.description.replacingOccurrences(of: "\n", with: " ")
        let keys = merged.keys.sorted { a, b in
            if a == "device.id" { return true }
            if b == "device.id" { return false }
            return a < b
        }
        for key in keys {
            line += " \(key)=\(Self.quoted("\(merged[key]!)"))"
        }
        line += "\n"
        // POSIX write, not FileHandle.write: that traps on EPIPE, and a broken log stream
        // must never take the daemon down.
        Self.lock.withLock { _ in
            var bytes = Array(line.utf8)[...]
            while !bytes.isEmpty {
                let written = bytes.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
                if written <= 0 { break }
                bytes = bytes.dropFirst(written)
            }
        }
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func quoted(_ value: String) -> String {
        if !value.isEmpty, !value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) {
            return value
        }
        return "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n") + "\""
    }
}
