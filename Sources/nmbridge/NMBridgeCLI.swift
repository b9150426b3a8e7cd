import ArgumentParser
import Foundation
import NMBridgeCore
import NMClient

@main
struct NMBridgeCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nmbridge",
        abstract: "Talk to nmbridged: tail the journal, list devices, query history, QC reports, check configuration.",
        discussion: """
            The daemon is found at --socket, --url, $NMBRIDGE_SOCKET or $NMBRIDGE_URL, \
            else /run/nmbridge/api.sock.
            Exit codes: 0 success, 1 failure (e.g. daemon not reachable), 2 invalid configuration, \
            3 cursor older than the journal's retention, 64 invalid command-line arguments.
            """,
        version: NMBridgeVersion.current,
        subcommands: [Tail.self, Devices.self, Status.self, Query.self, QCCommand.self, OutboundCommand.self, RRDSRCommand.self, ConfigCommand.self, Kinds.self, Simulate.self])

    /// Where the daemon is, given before the subcommand: `nmbridge --socket S tail -f`.
    /// Each subcommand that talks to the daemon declares the same option group under the
    /// same name, so ArgumentParser hands it these values (and the subcommand's own
    /// `nmbridge tail -f --socket S` works as well).
    @OptionGroup var connection: ConnectionOptions

    static func main() async {
        unblockTerminationSignals()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Where the daemon is, shared by every subcommand that talks to it.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "The daemon's API unix socket.")
    var socket: String?

    @Option(name: .long, help: "The daemon's API over TCP, e.g. http://127.0.0.1:8470 (needs a token).")
    var url: String?

    @Option(name: .long, help: "File with the bearer token for --url ($NMBRIDGE_TOKEN_FILE).")
    var tokenFile: String?

    func validate() throws {
        if socket != nil && url != nil { throw ValidationError("give --socket or --url, not both") }
    }

    func client() throws -> APIClient {
        let env = ProcessInfo.processInfo.environment
        let endpoint: APIEndpoint
        if let socket {
            endpoint = .unixSocket(path: socket)
        } else if let url {
            endpoint = try APIEndpoint(url: url)
        } else if let socket = env["NMBRIDGE_SOCKET"], !socket.isEmpty {
            endpoint = .unixSocket(path: socket)
        } else if let url = env["NMBRIDGE_URL"], !url.isEmpty {
            endpoint = try APIEndpoint(url: url)
        } else {
            endpoint = .default
        }
        var token: String?
        if let path = tokenFile ?? env["NMBRIDGE_TOKEN_FILE"] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw CLIError("cannot read token file \(path)")
            }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return APIClient(endpoint: endpoint, bearerToken: token)
    }
}

/// Filters shared by `tail` and `query`.
struct FilterOptions: ParsableArguments {
    @Option(name: .long, help: "Only events after this time: RFC 3339, a date, or an age like 15m, 2h, 7d.")
    var since: String?

    @Option(name: .customLong("device"), help: "Only this device (repeatable).")
    var devices: [String] = []

    @Option(name: .customLong("kind"), help: "Only kinds matching this pattern, e.g. 'dosecal.*' (repeatable).")
    var kinds: [String] = []

    func validate() throws {
        if let since, Timestamp.parseTimeSpec(since) == nil {
            throw ValidationError("--since \(since): expected RFC 3339 (2026-11-29T07:00:00Z), a date, or an age like 15m, 2h, 7d")
        }
        for pattern in kinds {
            if let problem = EventFilter.invalidKindPattern(pattern) { throw ValidationError("--kind \(pattern): \(problem)") }
        }
    }

    var queryItems: [(String, String)] {
        var items: [(String, String)] = []
        if let since, let date = Timestamp.parseTimeSpec(since) { items.append(("since", Timestamp.format(date))) }
        items += devices.map { ("device", $0) }
        items += kinds.map { ("kind", $0) }
        return items
    }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    var exitCode: Int32 = 1
    init(_ description: String, exitCode: Int32 = 1) {
        self.description = description
        self.exitCode = exitCode
    }
}

/// Builds `/path?k=v&…` with percent-encoded values.
func apiPath(_ path: String, _ items: [(String, String)]) -> String {
    guard !items.isEmpty else { return path }
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~*:")
    return path + "?" + items.map { key, value in
        "\(key)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value)"
    }.joined(separator: "&")
}

/// Runs `body`, printing CLIError/APIError messages the way a command-line user expects.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as CLIError {
        FileHandle.standardError.write(Data("nmbridge: \(error.description)\n".utf8))
        throw ExitCode(error.exitCode)
    } catch let error as APIError {
        FileHandle.standardError.write(Data("nmbridge: \(error.description)\n".utf8))
        throw ExitCode(1)
    }
}

/// Parses an API JSON response, failing with the server's message on a non-2xx status.
func jsonBody(_ response: APIResponse) throws -> JSONValue {
    let value = try? JSONValue.parse(response.text)
    guard (200..<300).contains(response.status) || (response.status == 503 && value?["status"] != nil) else {
        let message = value?["message"]?.stringValue ?? response.text
        let code = value?["error"]?.stringValue
        throw CLIError("HTTP \(response.status): \(message)", exitCode: code == "cursor_expired" ? 3 : 1)
    }
    guard let value else { throw CLIError("the daemon answered with something that is not JSON") }
    return value
}

/// Writes to stdout. When the reader has gone (`nmbridge tail -f | head`), exits quietly
/// instead of trapping as `FileHandle.write` would on EPIPE.
func writeStdout(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        if written < 0 {
            if errno == EINTR { continue }
            exit(errno == EPIPE ? 0 : 1)
        }
        bytes = bytes.dropFirst(written)
    }
}

/// An envelope from a parsed API response, re-serialized in the documented field order.
func envelopeText(_ value: JSONValue) -> String {
    (try? Event(json: value.jsonText))?.jsonText ?? value.jsonText
}
