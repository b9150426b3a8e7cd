import Foundation
import Logging
import NMBridgeCore
import NMShipper

extension Tail {
    /// `tail --postgres`: the department-wide stream from the shippers' table.
    func followDepartment(_ urlText: String) async throws {
        let url = try PostgresURL(urlText)
        let password = try PostgresConnector.password(file: passwordFile, environment: ProcessInfo.processInfo.environment)
        let connector = PostgresConnector(
            url: url, password: password, tls: tls)
        var logger = Logger(label: "nmbridge.tail")
        logger.logLevel = .critical
        var filter = EventFilter(devices: filters.devices, kinds: filters.kinds)
        if let since = filters.since { filter.since = Timestamp.parseTimeSpec(since) }
        let follower = DepartmentFollower(connector: connector, nodes: nodes, filter: filter, logger: logger)
        let printer = EventPrinter(json: json, showNode: true)
        let saved = try DepartmentCursorFile.read(cursorFile)
        // Without a cursor file: the last N of each history (N = -n, default 10, 0 with -f).
        let backlog: Int64? = saved == nil ? Int64(n ?? (follow ? 0 : 10)) : nil
        let cursorFile = cursorFile
        try await follower.run(
            cursors: saved ?? [:], backlog: backlog, follow: follow,
            onError: { message in FileHandle.standardError.write(Data("nmbridge: \(message)\n".utf8)) }
        ) { event, cursors in
            // Printing and recording go together: a signal never falls between them.
            try outputSection.withLock { _ in
                printer.print(envelopeJSON: event.jsonText)
                try DepartmentCursorFile.write(cursorFile, cursors)
            }
        }
    }
}

/// `--cursor-file` with `--postgres`: one line per node history, `<node> <journal-id> <seq>`.
enum DepartmentCursorFile {
    static func read(_ path: String?) throws -> [HistoryKey: Int64]? {
        guard let path, FileManager.default.fileExists(atPath: path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIError("cannot read cursor file \(path)")
        }
        var cursors: [HistoryKey: Int64] = [:]
        for (index, line) in text.split(separator: "\n").enumerated() {
            let parts = line.split(separator: " ")
            guard parts.count == 3, UUID(uuidString: String(parts[1])) != nil, let seq = Int64(parts[2]), seq >= 0 else {
                throw CLIError("cursor file \(path), line \(index + 1): not '<node> <journal-id> <seq>' (a --postgres cursor file); remove it to start afresh")
            }
            cursors[HistoryKey(node: String(parts[0]), journal: String(parts[1]))] = seq
        }
        return cursors
    }

    static func write(_ path: String?, _ cursors: [HistoryKey: Int64]) throws {
        guard let path else { return }
        let text = cursors.keys.sorted().map { "\($0.node) \($0.journal) \(cursors[$0]!)\n" }.joined()
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)), rename(temporary, path) == 0 else {
            throw CLIError("cannot write cursor file \(path)")
        }
    }
}
