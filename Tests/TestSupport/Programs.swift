import Foundation

/// Runs a program to its end (bound to the test process, see `runBoundToTest`) on a thread of its own (never blocking the cooperative pool)
/// and returns its exit status and output: standard output, followed by standard error when
/// `includeStandardError` (else that is discarded). `environment` entries are added to ours.
public func runToEnd(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:], includeStandardError: Bool = true
) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            do {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = arguments
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
                let pipe = Pipe()
                process.standardOutput = pipe
                process.standardError = includeStandardError ? pipe : FileHandle.nullDevice
                try process.runBoundToTest()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: (process.terminationStatus, String(decoding: data, as: UTF8.self)))
            } catch {
                continuation.resume(throwing: error)
            }
        }.start()
    }
}

/// A TCP port of 127.0.0.1 that nothing listens on right now.
public func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw HarnessError("cannot find a free TCP port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Waits until something accepts connections on 127.0.0.1:`port` (a peer just started).
public func waitForListener(port: Int, what: String) async throws {
    for _ in 0..<600 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        close(fd)
        if connected { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw HarnessError("\(what) did not listen on port \(port)")
}

/// Orthanc (Debian's `orthanc`) as a DICOM destination, bound to the test: storage and
/// index under `directory` (its files in `directory/orthanc-storage`, uncompressed), on
/// `port`, answering to `aeTitle` only, with TCP_NODELAY=1. Returns once it listens.
/// With `secondsPerInstance`, a Lua filter makes it take that long over each instance it
/// receives (a slow destination, for a test that must act in the middle of a delivery).
public func startOrthanc(directory: String, aeTitle: String, port: Int, secondsPerInstance: Double? = nil) async throws -> Process {
    let http = try freeTCPPort()
    var lua = ""
    if let secondsPerInstance {
        try """
            function ReceivedInstanceFilter(dicom, origin, info)
               os.execute("sleep \(secondsPerInstance)")
               return true
            end
            """.write(toFile: directory + "/orthanc-slow.lua", atomically: true, encoding: .utf8)
        lua = #", "LuaScripts": ["\#(directory)/orthanc-slow.lua"]"#
    }
    try """
        { "Name": "nmbridge-test", "StorageDirectory": "\(directory)/orthanc-storage", "IndexDirectory": "\(directory)/orthanc-index",
          "DicomAet": "\(aeTitle)", "DicomPort": \(port), "HttpPort": \(http), "RemoteAccessAllowed": false,
          "DicomCheckCalledAet": true, "StorageCompression": false, "Plugins": []\(lua) }
        """.write(toFile: directory + "/orthanc.json", atomically: true, encoding: .utf8)
    let orthanc = Process()
    orthanc.executableURL = URL(fileURLWithPath: "/usr/sbin/Orthanc")
    orthanc.arguments = [directory + "/orthanc.json"]
    orthanc.environment = ProcessInfo.processInfo.environment.merging(["TCP_NODELAY": "1"]) { _, new in new }
    orthanc.standardOutput = FileHandle.nullDevice
    orthanc.standardError = FileHandle.nullDevice
    try orthanc.runBoundToTest()
    do {
        try await waitForListener(port: port, what: "Orthanc")
    } catch {
        stopProcess(orthanc)
        throw error
    }
    return orthanc
}
