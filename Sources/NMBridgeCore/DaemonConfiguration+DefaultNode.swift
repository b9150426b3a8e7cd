import Foundation

extension DaemonConfiguration {
    /// `[daemon] node` when unset: the host name's first label.
    public static var defaultNode: String {
        ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
    }
}
