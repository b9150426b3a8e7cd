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
