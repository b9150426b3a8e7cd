import Foundation
import Testing

/// Runs scripts/check-packaging: systemd unit (verify + security score),
/// sysusers/tmpfiles snippets, udev rules under umockdev, Makefile layout.
/// Needs Debian 12 as root (it installs systemd/udev/umockdev when missing).
/// Where that is not possible, e.g. no systemd-analyze, it fails: never skips.
@Test func packagingChecksPass() throws {
    var root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
        let parent = root.deletingLastPathComponent()
        try #require(parent.path != root.path, "no Package.swift above \(#filePath)")
        root = parent
    }

    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = [root.appendingPathComponent("scripts/check-packaging").path]
    process.currentDirectoryURL = root
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()

    #expect(process.terminationStatus == 0, "scripts/check-packaging failed:\n\(output)")
    #expect(output.contains("PASS: all packaging checks passed"), "no PASS line from scripts/check-packaging:\n\(output)")
}
