#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NMTOML
import Synchronization
import TestSupport
import Testing

// How the udev tests run against umockdev
// ========================================
// umockdev fakes sysfs, /dev and udev's netlink socket for one process: its preload
// library (libumockdev-preload.so.0, which must be in LD_PRELOAD when the process
// starts) redirects /sys to the directory in $UMOCKDEV_DIR, and turns udev monitor
// sockets into Unix sockets in that directory, to which `umockdev_testbed_uevent`
// delivers "udev" events. libudev itself is the real one.
//
// A test in the normal test process (`UdevTestbedTests`) therefore re-executes this
// very test binary (/proc/self/exe) with LD_PRELOAD set and `--filter` naming one
// scenario test (`UdevTestbedScenarios`), which is enabled only in that child. The
// child creates the testbed itself through libumockdev (loaded with dlopen, so no C
// compiler and no helper process are involved; umockdev-wrapper documents this use:
// preload first, then the test program creates the testbed, which sets $UMOCKDEV_DIR),
// adds fake adapters, sends uevents, and checks udev enumeration, selectors and the
// hotplug monitor with ordinary #expect. The parent passes when the child ran the
// scenario (it writes a marker file) and exited 0, and shows the child's output if not.
//
// Each child has its own testbed and temporary directory, so the tests run in
// parallel with anything else.

/// The umockdev pieces the udev tests need, or why they cannot run.
enum Umockdev {
    static let library = "libumockdev.so.0"
    static let preload = "libumockdev-preload.so.0"

    /// Set in the child to the name of the scenario test it must run.
    static let scenarioVariable = "NMBRIDGE_UMOCKDEV_SCENARIO"
    /// Set in the child to the file it writes when the scenario starts.
    static let markerVariable = "NMBRIDGE_UMOCKDEV_MARKER"

    /// The scenario this process is the child for, nil in the normal test process.
    static var scenario: String? { ProcessInfo.processInfo.environment[scenarioVariable] }

    /// Whether both libraries are installed (Debian: libumockdev0 and umockdev, which
    /// scripts/test installs). Looks for files instead of loading them: the preload
    /// library must not be loaded into the normal test process.
    static let isInstalled: Bool = {
        let directories = ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib"]
            + ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib")) ?? []).map { "/usr/lib/" + $0 }
        func found(_ name: String) -> Bool {
            directories.contains { FileManager.default.fileExists(atPath: $0 + "/" + name) }
        }
        return found(library) && found(preload)
    }()

    /// Runs scenario test `name` in a child under the umockdev preload library and
    /// records an issue (with the child's output) unless it ran and passed.
    static func runScenario(_ name: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws {
        let scratch = try TemporaryDirectory()
        let marker = scratch.path + "/marker"
        let log = scratch.path + "/output"
        guard FileManager.default.createFile(atPath: log, contents: nil) else {
            throw UmockdevTestbed.Failure(description: "cannot create \(log)")
        }

        var environment = ProcessInfo.processInfo.environment
        let preloads = [preload] + (environment["LD_PRELOAD"].map { [$0] } ?? [])
        environment["LD_PRELOAD"] = preloads.joined(separator: ":")
        environment[scenarioVariable] = name
        environment[markerVariable] = marker
        // The testbed directory (umockdev makes it under $TMPDIR) goes into the scratch
        // directory, which is removed even if the child dies without cleaning up.
        environment["TMPDIR"] = scratch.path
        environment["UMOCKDEV_DIR"] = nil
        environment["NO_COLOR"] = "1"

        let process = Process()
        process.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        process.arguments = ["--testing-library", "swift-testing", "--filter", name]
        process.environment = environment
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.runBoundToTest()
        try output.close()

        // Generous: each step inside waits at most 10 s; a healthy run takes well under 5 s.
        let deadline = ContinuousClock.now + .seconds(120)
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let timedOut = process.isRunning
        if timedOut { stopProcess(process) }
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let ran = FileManager.default.fileExists(atPath: marker)
        #expect(!timedOut, "umockdev scenario \(name) did not finish within 120 s:\n\(text)", sourceLocation: sourceLocation)
        #expect(ran, "umockdev scenario \(name) did not run in the child (filter matched nothing?):\n\(text)", sourceLocation: sourceLocation)
        #expect(
            process.terminationStatus == 0, "umockdev scenario \(name) failed (exit \(process.terminationStatus)):\n\(text)",
            sourceLocation: sourceLocation)
    }

    /// In the child: records that the scenario started (see `runScenario`).
    static func markStarted() {
        if let marker = ProcessInfo.processInfo.environment[markerVariable] {
            // A failure shows in the parent as "did not run".
            _ = FileManager.default.createFile(atPath: marker, contents: Data("started\n".utf8))
        }
    }
}

/// A umockdev testbed in this process, through libumockdev's C API loaded with dlopen.
/// Creating it sets $UMOCKDEV_DIR, so it is only useful in a process started with the
/// preload library (the child of `Umockdev.runScenario`); there is one per process.
final class UmockdevTestbed {
    private typealias NewFunction = @convention(c) () -> OpaquePointer?
    private typealias AddFromStringFunction =
        @convention(c) (OpaquePointer, UnsafePointer<CChar>, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
    private typealias UeventFunction = @convention(c) (OpaquePointer, UnsafePointer<CChar>, UnsafePointer<CChar>) -> Void
    private typealias RemoveDeviceFunction = @convention(c) (OpaquePointer, UnsafePointer<CChar>) -> Void
    private typealias UnrefFunction = @convention(c) (OpaquePointer) -> Void
    private typealias ErrorFreeFunction = @convention(c) (UnsafeMutableRawPointer) -> Void

    private let library: UnsafeMutableRawPointer
    private let testbed: OpaquePointer
    private let addFromString: AddFromStringFunction
    private let sendUevent: UeventFunction
    private let removeDevice: RemoveDeviceFunction
    private let unref: UnrefFunction
    private let errorFree: ErrorFreeFunction

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init() throws {
        guard let library = dlopen(Umockdev.library, RTLD_NOW) else {
            throw Failure(description: "cannot load \(Umockdev.library): \(String(cString: dlerror()))")
        }
        self.library = library
        func symbol<T>(_ name: String, as type: T.Type) throws -> T {
            // dlsym on the handle also searches its dependencies (GObject for g_object_unref).
            guard let address = dlsym(library, name) else {
                throw Failure(description: "\(Umockdev.library) has no \(name)")
            }
            return unsafeBitCast(address, to: type)
        }
        let new = try symbol("umockdev_testbed_new", as: NewFunction.self)
        addFromString = try symbol("umockdev_testbed_add_from_string", as: AddFromStringFunction.self)
        sendUevent = try symbol("umockdev_testbed_uevent", as: UeventFunction.self)
        removeDevice = try symbol("umockdev_testbed_remove_device", as: RemoveDeviceFunction.self)
        unref = try symbol("g_object_unref", as: UnrefFunction.self)
        errorFree = try symbol("g_error_free", as: ErrorFreeFunction.self)
        guard getenv("LD_PRELOAD").map({ String(cString: $0).contains(Umockdev.preload) }) == true else {
            throw Failure(description: "this process was not started with \(Umockdev.preload) in LD_PRELOAD")
        }
        // Sets $UMOCKDEV_DIR for this process. Nothing else runs in the child while the
        // scenario starts, so the setenv cannot race with the preload library's getenv.
        guard let testbed = new() else { throw Failure(description: "umockdev_testbed_new failed") }
        self.testbed = testbed
    }

    deinit {
        unref(testbed)  // removes the testbed directory and unsets $UMOCKDEV_DIR
    }

    /// Adds devices described in umockdev-record's format (`P:`, `E:`, `A:`, `L:` lines;
    /// a blank line between devices). umockdev 0.17 (Debian 12) sends an `add` uevent
    /// for each device as it creates it, in the order given.
    func add(_ record: String) throws {
        var error: UnsafeMutableRawPointer?
        guard addFromString(testbed, record, &error) != 0 else {
            // GError: { GQuark domain; gint code; gchar *message; }
            let message = error.flatMap { $0.load(fromByteOffset: 8, as: UnsafePointer<CChar>?.self) }.map { String(cString: $0) }
            if let error { errorFree(error) }
            throw Failure(description: "umockdev_testbed_add_from_string: \(message ?? "failed")")
        }
    }

    /// Sends a uevent ("add", "remove", "change") for the device at `syspath`
    /// (`/sys/devices/…`) to every udev monitor of this process. The device must still
    /// be in the testbed: umockdev reads it to build the message.
    func uevent(_ action: String, _ syspath: String) {
        sendUevent(testbed, syspath, action)
    }

    /// Removes a device and everything below it from the testbed.
    func remove(_ syspath: String) {
        removeDevice(testbed, syspath)
    }

    /// Emulates the ioctls on device node `devnode` (`/dev/…`, added with an `N:` line)
    /// for this process with umockdev's own ioctl emulation
    /// (`umockdev_testbed_attach_ioctl`): `respond` maps each request number to the
    /// result and errno the caller sees. The handler runs on umockdev's worker thread
    /// while the calling thread waits in `ioctl(2)`. Keep the emulator alive as long as
    /// the testbed.
    func attachIoctl(
        _ devnode: String, respond: @escaping @Sendable (UInt) -> (result: Int, errno: Int32)
    ) throws -> UmockdevIoctlEmulator {
        typealias AttachFunction =
            @convention(c) (OpaquePointer, UnsafePointer<CChar>, OpaquePointer, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
        guard let address = dlsym(library, "umockdev_testbed_attach_ioctl") else {
            throw Failure(description: "\(Umockdev.library) has no umockdev_testbed_attach_ioctl")
        }
        let attach = unsafeBitCast(address, to: AttachFunction.self)
        let emulator = try UmockdevIoctlEmulator(library: library, respond: respond)
        var error: UnsafeMutableRawPointer?
        guard attach(testbed, devnode, emulator.handler, &error) != 0 else {
            let message = error.flatMap { $0.load(fromByteOffset: 8, as: UnsafePointer<CChar>?.self) }.map { String(cString: $0) }
            if let error { errorFree(error) }
            throw Failure(description: "umockdev_testbed_attach_ioctl \(devnode): \(message ?? "failed")")
        }
        return emulator
    }
}

/// Answers the ioctls of one emulated device node (see `UmockdevTestbed.attachIoctl`)
/// and records their request numbers. Only argument-less answers: no data is copied to
/// the caller.
///
/// `@unchecked Sendable`: the GObject handler and the libumockdev function pointers are
/// set in `init` and never change; the answers and the record are behind mutexes.
final class UmockdevIoctlEmulator: @unchecked Sendable {
    private typealias BaseNewFunction = @convention(c) () -> OpaquePointer?
    private typealias SignalConnectFunction =
        @convention(c) (OpaquePointer, UnsafePointer<CChar>, UnsafeRawPointer, UnsafeMutableRawPointer?, UnsafeRawPointer?, UInt32) -> UInt
    private typealias GetRequestFunction = @convention(c) (OpaquePointer) -> UInt
    private typealias CompleteFunction = @convention(c) (OpaquePointer, Int, Int32) -> Void
    private typealias HandlerFunction = @convention(c) (OpaquePointer?, OpaquePointer?, UnsafeMutableRawPointer?) -> Int32

    /// The UMockdevIoctlBase whose "handle-ioctl" signal this emulator answers.
    fileprivate let handler: OpaquePointer
    private let getRequest: GetRequestFunction
    private let complete: CompleteFunction
    private let respond: Mutex<@Sendable (UInt) -> (result: Int, errno: Int32)>
    private let seen = Mutex<[UInt]>([])

    fileprivate init(library: UnsafeMutableRawPointer, respond: @escaping @Sendable (UInt) -> (result: Int, errno: Int32)) throws {
        func symbol<T>(_ name: String, as type: T.Type) throws -> T {
            guard let address = dlsym(library, name) else {
                throw UmockdevTestbed.Failure(description: "\(Umockdev.library) has no \(name)")
            }
            return unsafeBitCast(address, to: type)
        }
        let new = try symbol("umockdev_ioctl_base_new", as: BaseNewFunction.self)
        let connect = try symbol("g_signal_connect_data", as: SignalConnectFunction.self)
        getRequest = try symbol("umockdev_ioctl_client_get_request", as: GetRequestFunction.self)
        complete = try symbol("umockdev_ioctl_client_complete", as: CompleteFunction.self)
        self.respond = Mutex(respond)
        guard let base = new() else { throw UmockdevTestbed.Failure(description: "umockdev_ioctl_base_new failed") }
        handler = base
        let handle: HandlerFunction = { _, client, userData in
            guard let client, let userData else { return 0 }
            Unmanaged<UmockdevIoctlEmulator>.fromOpaque(userData).takeUnretainedValue().handle(client)
            return 1
        }
        // Unretained: the test keeps the emulator alive as long as the testbed (which
        // holds the handler) can call it.
        _ = connect(
            base, "handle-ioctl", unsafeBitCast(handle, to: UnsafeRawPointer.self),
            Unmanaged.passUnretained(self).toOpaque(), nil, 0)
    }

    /// Replaces the answers from now on.
    func respond(_ respond: @escaping @Sendable (UInt) -> (result: Int, errno: Int32)) {
        self.respond.withLock { $0 = respond }
    }

    /// The ioctl requests answered so far, in order.
    var requests: [UInt] { seen.withLock { $0 } }

    private func handle(_ client: OpaquePointer) {
        let request = getRequest(client)
        seen.withLock { $0.append(request) }
        let answer = respond.withLock { $0 }(request)
        complete(client, answer.result, answer.errno)
    }
}

/// A directory under $TMPDIR, removed with its contents when released.
final class TemporaryDirectory {
    let path: String

    init() throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((base + "/nmbridge-udev-test.XXXXXX").utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw UmockdevTestbed.Failure(description: "mkdtemp in \(base): \(String(cString: strerror(errno)))")
        }
        path = String(cString: created)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

extension Trait where Self == ConditionTrait {
    /// The umockdev scenarios need libumockdev and its preload library (scripts/test
    /// installs both).
    static var umockdevInstalled: Self {
        .enabled(
            if: Umockdev.isInstalled,
            "umockdev is not installed (libumockdev.so.0 from libumockdev0, libumockdev-preload.so.0 from umockdev): scripts/test installs them"
        )
    }

    /// A umockdev child runs only its scenario, never the suites that start children.
    static var notUmockdevChild: Self { .enabled(if: Umockdev.scenario == nil, "this process is a umockdev child") }
}
