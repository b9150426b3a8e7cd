import Foundation

/// The directory holding Package.swift (found above this file).
public let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
        let parent = url.deletingLastPathComponent()
        precondition(parent.path != url.path, "no Package.swift above \(#filePath)")
        url = parent
    }
    return url.path
}()

/// The Python with the test peers (pymodbus, pynetdicom…): `$NMBRIDGE_TEST_PYTHON`, which
/// scripts/test sets, else the repository's `.venv-test`.
public let testPython = ProcessInfo.processInfo.environment["NMBRIDGE_TEST_PYTHON"] ?? repositoryRoot + "/.venv-test/bin/python"

/// A fresh directory `nmb-<tag>-<test name>-<random>` under the system's temporary
/// directory (tests run in parallel; each removes its own). The name is cut to 40
/// characters so that unix socket paths inside stay under 108 bytes.
public func makeTemporaryDirectory(_ tag: String, _ name: String = #function) throws -> String {
    let path =
        "\(FileManager.default.temporaryDirectory.path)/nmb-\(tag)-\(name.filter { $0.isLetter || $0.isNumber }.prefix(40))-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
