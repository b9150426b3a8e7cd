import Foundation
import Synchronization
import NMBridgeCore
import Testing

@testable import NMTransport

@Suite struct SerialPortTests {
    @Test func bytesPassBothWaysOverAPty() async throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.path, settings: SerialSettings(baud: 4800))
        defer { port.close() }
        #expect(pty.write([0x02, 0x41, 0x0d, 0x0a, 0xff]))
        var received: [UInt8] = []
        while received.count < 5 {
            let chunk = try await port.read(timeout: .seconds(5))
            #expect(!chunk.isEmpty, "timed out after \(received)")
            if chunk.isEmpty { break }
            received += chunk
        }
        #expect(received == [0x02, 0x41, 0x0d, 0x0a, 0xff])

        try await port.write(Array("@ABCDEFGHIJK\r\n".utf8))
        var request: [UInt8] = []
        for _ in 0..<50 where request.count < 14 { request += pty.read(timeoutMs: 100) }
        #expect(String(decoding: request, as: UTF8.self) == "@ABCDEFGHIJK\r\n")
    }

    @Test func readTimesOutWithNothingAndThenFailsWhenThePeerCloses() async throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.path, settings: SerialSettings(baud: 19200, parity: .even, stopBits: 2))
        defer { port.close() }
        let nothing = try await port.read(timeout: .milliseconds(50))
        #expect(nothing.isEmpty)
        pty.write([0x31])
        pty.close()
        // Bytes sent before the hang-up are still delivered; then the error names the path.
        var got: [UInt8] = []
        do {
            for _ in 0..<20 { got += try await port.read(timeout: .seconds(1)) }
            Issue.record("no error after the pty closed")
        } catch let error as NMBridgeError {
            #expect(error.code == .transportFailed)
            #expect(error.message.contains(pty.path))
        }
        #expect(got == [0x31] || got.isEmpty)
    }

    /// A read's timeout was a timer task on the cooperative pool. It could fire before the
    /// read waited (the read then hung until bytes came: in a silence, never), and on a busy
    /// pool it fired seconds late (a full test run: one calibrator poll in five seconds).
    /// The port's reader thread now ends reads at their deadline. Tiny timeouts, many times:
    /// none may wait for bytes. A watchdog sends a byte when the loop stops moving for 10 s,
    /// so a hung read returns it instead of hanging the test.
    @Test func readsEndAtTheirDeadlineWithoutATimerTask() async throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.path, settings: SerialSettings(baud: 4800))
        defer { port.close() }
        final class Counter: Sendable { let value = Atomic<Int>(0) }
        let progress = Counter()
        let watchdog = Task.detached {
            var seen = -1
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(10))
                let now = progress.value.load(ordering: .relaxed)
                if now == seen { pty.write([0x55]) }
                seen = now
            }
        }
        defer { watchdog.cancel() }
        // On a thread of its own, as the daemon runs drivers: a loaded test process cannot
        // stall the loop itself.
        let executor = DeviceThreadExecutor(name: "serial test")
        defer { executor.shutdown() }
        let hung = try await Task(executorPreference: executor) {
            var hung = 0
            for i in 0..<3000 {
                if try await !port.read(timeout: .nanoseconds(i % 3 == 0 ? 0 : 1 + i % 2000)).isEmpty { hung += 1 }
                progress.value.store(i, ordering: .relaxed)
            }
            return hung
        }.value
        #expect(hung == 0, "\(hung) reads waited past their timeout until the watchdog sent a byte")
        // Never early either.
        let clock = ContinuousClock()
        let started = clock.now
        #expect(try await port.read(timeout: .milliseconds(200)).isEmpty)
        #expect(started.duration(to: clock.now) >= .milliseconds(200))
    }

    @Test func secondOpenIsRefusedAndNamesThePort() throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.path, settings: SerialSettings(baud: 4800))
        defer { port.close() }
        #expect {
            try SerialPort.open(path: pty.path, settings: SerialSettings(baud: 4800))
        } throws: { error in
            "\(error)".contains(pty.path) && "\(error)".contains("locked")
        }
    }

    @Test func missingDeviceAndNonTerminalAreClearErrors() throws {
        #expect {
            try SerialPort.open(path: "/dev/nmbridge-test-no-such-port", settings: SerialSettings(baud: 4800))
        } throws: { error in
            "\(error)".contains("/dev/nmbridge-test-no-such-port") && "\(error)".contains("no such device")
        }
        #expect {
            try SerialPort.open(path: "/dev/null", settings: SerialSettings(baud: 4800))
        } throws: { error in
            "\(error)".contains("/dev/null is not a serial port")
        }
    }

    @Test func cancellationEndsAWaitingRead() async throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.path, settings: SerialSettings(baud: 4800))
        defer { port.close() }
        let task = Task { try await port.read(timeout: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(20))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }

    @Test func symlinkFollowsThePty() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nmb-pty-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try PseudoTerminal()
        try first.link(at: dir + "/dosecal")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/dosecal") == first.path)
        let second = try PseudoTerminal()
        try second.link(at: dir + "/dosecal")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/dosecal") == second.path)
        _ = FileManager.default.createFile(atPath: dir + "/plain", contents: Data())
        #expect(throws: NMBridgeError.self) { try second.link(at: dir + "/plain") }
    }
}
