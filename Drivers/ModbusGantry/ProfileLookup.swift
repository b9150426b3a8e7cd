import Foundation
import NMBridgeCore

extension ModbusProfileLoader {
    /// Where `profile = "NAME"` is looked up, in order: the site's own profiles, the
    /// packaged ones, and the profiles of the source tree this binary was built from (so a
    /// build runs from its checkout without installing anything).
    public static let searchDirectories: [String] = [
        "/etc/nmbridge/profiles",
        "/usr/share/nmbridge/profiles",
        "/usr/local/share/nmbridge/profiles",
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("profiles").path,
    ]

    /// The file a device's `profile` value names: a path when it contains `/` or ends in
    /// `.toml` (relative to the configuration file), else NAME.toml in ``searchDirectories``.
    public static func path(forReference reference: String, resolve: (String) -> String = { $0 }) -> String? {
        if reference.contains("/") || reference.hasSuffix(".toml") { return resolve(reference) }
        return searchDirectories.map { "\($0)/\(reference).toml" }.first { FileManager.default.fileExists(atPath: $0) }
    }

    /// Loads the profile a device's `profile` key names. Problems go to `reader`: a name that
    /// is nowhere (listing where it was looked for), or the profile's own problems with the
    /// profile's file and line.
    public static func load(reference: String, for reader: ConfigTableReader) -> ModbusProfile? {
        let nameCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
        let isName = !reference.isEmpty && reference.allSatisfy(nameCharacters.contains)
        guard isName || reference.contains("/") || reference.hasSuffix(".toml") else {
            reader.problem("profile", "\"\(reference)\" is neither a profile name (letters, digits, '_', '-') nor a path")
            return nil
        }
        guard let path = path(forReference: reference, resolve: reader.resolvePath) else {
            reader.problem(
                "profile", "no profile \"\(reference)\": looked for \(reference).toml in \(searchDirectories.joined(separator: ", "))")
            return nil
        }
        do {
            return try load(path: path)
        } catch {
            reader.problem("profile", "profile \(path) has \(error.problems.count) problem(s), listed with their lines")
            reader.adopt(error.problems)
            return nil
        }
    }
}
