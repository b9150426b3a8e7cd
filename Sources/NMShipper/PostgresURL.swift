import Foundation

/// A PostgreSQL connection URL, `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, parsed
/// without I/O. `?host=/dir` (as libpq) connects to the unix socket `/dir/.s.PGSQL.PORT`
/// instead of TCP; `HOST` may then be empty (`postgres://user@/db?host=/run/postgresql`).
///
/// `description` never shows the password, so the URL can go into logs and errors.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    /// A password given in the URL itself (the CLI accepts it; the daemon's configuration
    /// does not, see `[shipper] password_file`).
    public var password: String?
    /// TCP host; `nil` when `socketDirectory` is set.
    public var host: String?
    public var port: Int
    public var database: String
    /// The directory of the server's unix socket (`?host=/dir`).
    public var socketDirectory: String?

    /// The unix socket file when connecting through one.
    public var socketPath: String? {
        socketDirectory.map { "\($0)/.s.PGSQL.\(port)" }
    }

    /// A TCP or unix-socket endpoint given field by field.
    public init(user: String, password: String? = nil, host: String?, port: Int = 5432, database: String, socketDirectory: String? = nil) {
        self.user = user
        self.password = password
        self.host = socketDirectory == nil ? host : nil
        self.port = port
        self.database = database
        self.socketDirectory = socketDirectory
    }

    /// Parses `text`; throws a message naming what is wrong (never echoing a password).
    public init(_ text: String) throws(PostgresURLError) {
        let schemes = ["postgres://", "postgresql://"]
        guard let scheme = schemes.first(where: { text.hasPrefix($0) }) else {
            throw PostgresURLError("must start with postgres:// or postgresql://")
        }
        var rest = Substring(text.dropFirst(scheme.count))
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        guard let slash = rest.firstIndex(of: "/") else {
            throw PostgresURLError("names no database (postgres://USER@HOST:PORT/DATABASE)")
        }
        let authority = rest[..<slash]
        let database = String(rest[rest.index(after: slash)...]).removingPercentEncoding ?? ""
        guard !database.isEmpty, !database.contains("/") else {
            throw PostgresURLError("names no database (postgres://USER@HOST:PORT/DATABASE)")
        }
        guard let at = authority.lastIndex(of: "@") else {
            throw PostgresURLError("names no user (postgres://USER@HOST:PORT/DATABASE)")
        }
        let userInfo = authority[..<at]
        var hostPort = String(authority[authority.index(after: at)...])
        var user = userInfo
        var password: String?
        if let colon = userInfo.firstIndex(of: ":") {
            user = userInfo[..<colon]
            password = String(userInfo[userInfo.index(after: colon)...]).removingPercentEncoding
        }
        guard let decodedUser = String(user).removingPercentEncoding, !decodedUser.isEmpty else {
            throw PostgresURLError("names no user (postgres://USER@HOST:PORT/DATABASE)")
        }
        var port = 5432
        var socketDirectory: String?
        for item in query.split(separator: "&") {
            let pair = item.split(separator: "=", maxSplits: 1)
            let key = String(pair[0])
            let value = pair.count > 1 ? String(pair[1]).removingPercentEncoding ?? "" : ""
            switch key {
            case "host":
                guard value.hasPrefix("/") else { throw PostgresURLError("?host= must be the absolute directory of the server's unix socket") }
                socketDirectory = value
            default:
                throw PostgresURLError("unknown parameter \"?\(key)\" (only ?host=/socket/dir is understood)")
            }
        }
        if hostPort.hasPrefix("["), let close = hostPort.firstIndex(of: "]") {
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                guard let value = Int(after.dropFirst()), (1...65535).contains(value) else { throw PostgresURLError("has a bad port") }
                port = value
            } else if !after.isEmpty {
                throw PostgresURLError("has a bad host")
            }
            hostPort = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
        } else if let colon = hostPort.lastIndex(of: ":") {
            guard let value = Int(hostPort[hostPort.index(after: colon)...]), (1...65535).contains(value) else {
                throw PostgresURLError("has a bad port")
            }
            port = value
            hostPort = String(hostPort[..<colon])
        }
        if socketDirectory == nil && hostPort.isEmpty {
            throw PostgresURLError("names no host (postgres://USER@HOST:PORT/DATABASE, or ?host=/socket/dir)")
        }
        self.user = decodedUser
        self.password = password
        self.host = socketDirectory == nil ? hostPort : nil
        self.port = port
        self.database = database
        self.socketDirectory = socketDirectory
    }

    /// The URL without its password.
    public var description: String {
        let port = self.port == 5432 ? "" : ":\(self.port)"
        if let socketDirectory { return "postgres://\(user)@\(port)/\(database)?host=\(socketDirectory)" }
        let host = (self.host ?? "").contains(":") ? "[\(self.host ?? "")]" : (self.host ?? "")
        return "postgres://\(user)@\(host)\(port)/\(database)"
    }
}

/// What is wrong with a PostgreSQL URL.
public struct PostgresURLError: Error, Sendable, CustomStringConvertible {
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
