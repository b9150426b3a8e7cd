import Foundation
import Logging
import Synchronization

/// The web dashboard's login sessions (docs/dashboard.md, "Access"): the API token,
/// given once in the login form, is exchanged for a random session id in an HttpOnly,
/// SameSite=Strict cookie that expires after `lifetime`.
///
/// Sessions are kept in a file of the state directory (mode 0600), so that a dashboard
/// left open on a workstation resumes its live stream after the daemon restarts instead of
/// asking for the token again; logging out removes the session from the file.
public final class DashboardSessions: Sendable {
    /// The cookie that carries the session id.
    static let cookieName = "nmbridge_session"
    /// Most sessions kept at once; the oldest is dropped beyond that.
    static let maximumCount = 256

    let path: String?
    let lifetime: TimeInterval
    let logger: Logger?
    /// Session id → expiry.
    private let sessions: Mutex<[String: Date]>

    /// - Parameters:
    ///   - path: the file sessions are kept in; nil keeps them in memory only.
    ///   - lifetime: how long a session lasts from its login (a shift, by default).
    public init(path: String?, lifetime: TimeInterval = 12 * 3600, logger: Logger? = nil) {
        self.path = path
        self.lifetime = lifetime
        self.logger = logger
        var loaded: [String: Date] = [:]
        if let path, let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let now = Date()
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: " ")
                guard fields.count == 2, fields[0].utf8.count == 64, let expiry = Double(fields[1]).map(Date.init(timeIntervalSince1970:)),
                    expiry > now
                else { continue }
                loaded[String(fields[0])] = expiry
            }
        }
        sessions = Mutex(loaded)
    }

    /// A new session; returns its id and expiry.
    func create() -> (id: String, expiry: Date) {
        var generator = SystemRandomNumberGenerator()  // getrandom(2): fit for secrets
        let id = (0..<4).map { _ in String(format: "%016llx", generator.next() as UInt64) }.joined()
        let expiry = Date().addingTimeInterval(lifetime)
        let snapshot = sessions.withLock { sessions in
            let now = Date()
            sessions = sessions.filter { $0.value > now }
            while sessions.count >= Self.maximumCount, let oldest = sessions.min(by: { $0.value < $1.value }) {
                sessions[oldest.key] = nil
            }
            sessions[id] = expiry
            return sessions
        }
        save(snapshot)
        return (id, expiry)
    }

    /// Whether `id` is a live session.
    func isValid(_ id: String) -> Bool {
        let now = Date()
        return sessions.withLock { sessions in
            // Compared in constant time against each live id: the id is the secret.
            var found = false
            for (candidate, expiry) in sessions where expiry > now {
                if BearerTokenMiddleware.constantTimeEquals(candidate, id) { found = true }
            }
            return found
        }
    }

    /// Ends a session (logout).
    func remove(_ id: String) {
        let snapshot = sessions.withLock { sessions -> [String: Date]? in
            guard sessions.removeValue(forKey: id) != nil else { return nil }
            return sessions
        }
        if let snapshot { save(snapshot) }
    }

    private func save(_ sessions: [String: Date]) {
        guard let path else { return }
        let text = sessions.map { "\($0.key) \(Int64($0.value.timeIntervalSince1970))\n" }.joined()
        do {
            let temporary = path + ".tmp"
            guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CocoaError(.fileWriteUnknown)
            }
            guard rename(temporary, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        } catch {
            // Sessions still work; they only do not survive a restart.
            logger?.warning("cannot write the dashboard sessions", metadata: ["file.path": "\(path)", "error": "\(error)"])
        }
    }

    /// The session id in a request's `Cookie` header, if any.
    static func sessionID(cookieHeader: String?) -> String? {
        guard let cookieHeader else { return nil }
        for part in cookieHeader.split(separator: ";") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces) == cookieName else { continue }
            return pair[1].trimmingCharacters(in: .whitespaces)
        }
        return nil
    }
}
