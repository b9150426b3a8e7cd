import Foundation

/// Listening sockets handed over by systemd (sd_listen_fds(3)): `LISTEN_PID` must be this
/// process, `LISTEN_FDS` counts descriptors from 3, `LISTEN_FDNAMES` names them
/// (`FileDescriptorName=` in the .socket unit). Lets the DICOM receiver listen on port 104
/// without any privilege of its own.
public enum SocketActivation {
    /// The first descriptor passed.
    static let firstDescriptor: Int32 = 3

    /// Descriptors by name; empty when the process was not socket-activated.
    public static func descriptors(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String: Int32] {
        guard let pid = environment["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
            let count = environment["LISTEN_FDS"].flatMap(Int32.init), count > 0, count < 64
        else { return [:] }
        let names = environment["LISTEN_FDNAMES"]?.split(separator: ":", omittingEmptySubsequences: false).map(String.init) ?? []
        var result: [String: Int32] = [:]
        for index in 0..<count {
            let fd = firstDescriptor + index
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)  // not to be inherited by anything we start
            result[Int(index) < names.count ? names[Int(index)] : "unknown"] = fd
        }
        return result
    }
}
