import Foundation
import Logging
import NMBridgeCore
import NMTransport
import Synchronization
import TestSupport
import Testing

@testable import ModbusGantry

/// Real peers: pymodbus as an independent server (TCP, and RTU over a socat pty pair),
/// mbpoll as an independent client of the simulator, and the driver against both.
/// scripts/test installs them (pymodbus into .venv-test); these tests fail, not skip, without.
enum Peers {
    static let root = repositoryRoot
    static let python = testPython

    static func temporaryDirectory(_ name: String = #function) throws -> String { try makeTemporaryDirectory("modbus", name) }

    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    static func start(_ executable: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.runBoundToTest()
        return process
    }

    /// pymodbus serving `values` (see Tests/Peers/modbus_server.py) on a TCP port.
    static func pymodbusTCP(values: String, directory: String, port: Int) async throws -> Process {
        #expect(FileManager.default.isExecutableFile(atPath: python), "pymodbus venv missing: run scripts/test")
        try values.write(toFile: directory + "/values.json", atomically: true, encoding: .utf8)
        let server = try start(python, [root + "/Tests/Peers/modbus_server.py", directory + "/values.json", "--tcp", "\(port)"])
        for _ in 0..<1500 where !accepts(port: port) { try await Task.sleep(for: .milliseconds(20)) }
        return server
    }

    /// A socat pty pair: `directory/driver` and `directory/device`.
    static func ptyPair(directory: String) async throws -> Process {
        let socat = try start(
            "/usr/bin/socat", ["pty,raw,echo=0,link=\(directory)/driver", "pty,raw,echo=0,link=\(directory)/device"])
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: directory + "/device") {
            try await Task.sleep(for: .milliseconds(20))
        }
        return socat
    }

    /// A program's standard output, once it has ended.
    static func output(_ executable: String, _ arguments: [String]) async throws -> String {
        try await runToEnd(executable, arguments, includeStandardError: false).output
    }
}

/// A modbus driver configured from TOML as the daemon would, recording what it reports.
struct GantryRig {
    let sink = RecordingSink(kinds: EventKindRegistry.gantryKinds)
    let task: Task<Void, any Error>

    init(_ device: String, id: String = "gantry-test") throws {
        let configuration = try DaemonConfiguration.load(
            text: "[[device]]\nid = \"\(id)\"\ndriver = \"modbus\"\n" + device, file: "test.toml",
            drivers: DriverCatalog([ModbusGantryDriver.self]), defaultNode: "test", baseDirectory: profilesDirectory)
        let settings = configuration.devices[0].settings as! ModbusGantrySettings
        let context = DriverContext(deviceID: id, driverName: "modbus", logger: Logger(label: "test"), clock: ContinuousClock(), sink: sink)
        let driver = ModbusGantryDriver(settings: settings, context: context)
        task = Task { try await driver.run() }
    }

    func stop() async {
        task.cancel()
        _ = await task.result
    }

    var linkKinds: [String] {
        sink.links.withLock { $0.map { if case .up = $0 { "up" } else { "down" } } }
    }

    func downReasons() -> [String] {
        sink.links.withLock { $0.compactMap { if case .down(let reason) = $0 { reason } else { nil } } }
    }

    func lastValue(_ field: String) -> JSONValue? {
        sink.events("gantry.state").last { $0.data["values"]?.objectValue?[field] != nil }?.data["values"]?.objectValue?[field]
    }
}

@Suite(.serialized) struct ModbusPeerTests {
    /// Every type and word order, with the values pymodbus is asked to encode.
    static let cases: [(resource: ModbusResource, json: String, expected: ModbusValue)] = {
        var cases: [(ModbusResource, String, ModbusValue)] = []
        var address = 0
        func add(_ name: String, _ type: ModbusDataType, _ order: ModbusWordOrder, _ value: String, _ expected: ModbusValue,
                 scale: Double = 1, offset: Double = 0, bits: [Int: String] = [:], pythonType: String? = nil)
        {
            let resource = ModbusResource(
                name: name, table: .holding, address: address, type: type, order: order, scale: scale, offset: offset, bits: bits)
            var length = ""
            if case .string(let registers) = type { length = ", \"length\": \(registers)" }
            cases.append(
                (resource,
                 "{\"table\": \"holding\", \"address\": \(address), \"type\": \"\(pythonType ?? type.description)\", \"order\": \"\(order.rawValue)\"\(length), \"value\": \(value)}",
                 expected))
            address += type.width + 1
        }
        add("u16", .u16, .abcd, "40000", .number(40000))
        add("i16", .i16, .abcd, "-1234", .number(-1234))
        add("scaled", .u16, .abcd, "5500", .number(850), scale: 0.1, offset: 300)
        add("flags", .bitfield, .abcd, "18", .flags(["door", "bit1"]), bits: [4: "door"])
        add("text", .string(registers: 4), .abcd, "\"GX-2.4\"", .text("GX-2.4"))
        for order in ModbusWordOrder.allCases {
            let o = order.rawValue.lowercased()
            add("u32_\(o)", .u32, order, "3000000000", .number(3_000_000_000))
            add("i32_\(o)", .i32, order, "-123456", .number(-123_456))
            add("u64_\(o)", .u64, order, "9007199254740991", .number(9_007_199_254_740_991))
            add("i64_\(o)", .i64, order, "-9007199254740991", .number(-9_007_199_254_740_991))
            add("f32_\(o)", .f32, order, "123.456", .number(123.456))
            add("f64_\(o)", .f64, order, "-98765.4321", .number(-98765.4321))
        }
        return cases
    }()

    static let bitCases: [(resource: ModbusResource, json: String, expected: ModbusValue)] = [
        (ModbusResource(name: "estop", table: .discrete, address: 3, type: .bool),
         "{\"table\": \"discrete\", \"address\": 3, \"type\": \"bool\", \"value\": true}", .bool(true)),
        (ModbusResource(name: "lamp", table: .coil, address: 5, type: .bool),
         "{\"table\": \"coil\", \"address\": 5, \"type\": \"bool\", \"value\": true}", .bool(true)),
        (ModbusResource(name: "off", table: .coil, address: 6, type: .bool),
         "{\"table\": \"coil\", \"address\": 6, \"type\": \"bool\", \"value\": false}", .bool(false)),
    ]

    static var valuesJSON: String { "[" + (cases + bitCases).map(\.json).joined(separator: ",\n") + "]" }

    /// Reads every case through a bus, request by request as the driver plans them.
    func readAll(_ endpoint: ModbusEndpoint, line: ModbusLineSettings? = nil) async throws -> [String: ModbusValue] {
        let bus = try ModbusBuses.acquire(endpoint, line: line, device: "test")
        defer { ModbusBuses.release(bus) }
        var values: [String: ModbusValue] = [:]
        for request in readPlan(resources: (Self.cases + Self.bitCases).map(\.resource)) {
            var raw: ModbusRawValue?
            for _ in 0..<50 where raw == nil {  // the server may still be starting
                raw = try? await bus.perform(timeout: .seconds(2)) { session throws(ModbusError) in
                    try session.read(unit: 1, table: request.table, address: request.address, count: request.count)
                }
                if raw == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            let response = try #require(raw, "no answer to \(request.table) \(request.address)")
            for resource in request.resources {
                values[resource.name] = try resource.decode(try #require(request.raw(for: resource, in: response)))
            }
        }
        return values
    }

    func expectAllDecoded(_ values: [String: ModbusValue]) {
        for (resource, _, expected) in Self.cases + Self.bitCases {
            #expect(values[resource.name] == expected, "\(resource.name) (\(resource.type) \(resource.order.rawValue))")
        }
    }

    @Test func everyTypeAndWordOrderMatchesPymodbusOverTCP() async throws {
        let directory = try Peers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try freeTCPPort()
        let server = try await Peers.pymodbusTCP(values: Self.valuesJSON, directory: directory, port: port)
        defer { stopProcess(server) }
        expectAllDecoded(try await readAll(.tcp(host: "127.0.0.1", port: port)))
    }

    @Test func everyTypeAndWordOrderMatchesPymodbusOverRTU() async throws {
        let directory = try Peers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socat = try await Peers.ptyPair(directory: directory)
        defer { stopProcess(socat) }
        try Self.valuesJSON.write(toFile: directory + "/values.json", atomically: true, encoding: .utf8)
        let server = try Peers.start(
            Peers.python, [Peers.root + "/Tests/Peers/modbus_server.py", directory + "/values.json", "--rtu", directory + "/device"])
        defer { stopProcess(server) }
        let line = ModbusLineSettings(serial: SerialSettings(baud: 19200))  // the peer's 8N1
        expectAllDecoded(try await readAll(.rtu(path: directory + "/driver"), line: line))
    }

    @Test func mbpollReadsWhatTheSimulatorServes() async throws {
        let script = try GantryScript.parse(
            """
            set rotation_angle -12.34
            set detector_radius 250.5
            set table_longitudinal -1234.5
            set motion_state homing
            raise fault_word door_open
            set emergency_stop true
            set controller_firmware "GX-2.4.1"
            wait 1m
            """, source: "test", profile: exampleProfile)
        let simulator = try GantrySimulator(profile: exampleProfile, transport: .tcp(host: "127.0.0.1", port: 0), script: script)
        simulator.start()
        defer { simulator.stop() }
        let port = String(try #require(simulator.address.split(separator: ":").last, "simulator address \(simulator.address)"))
        func mbpoll(_ arguments: [String]) async throws -> [Int: String] {
            let text = try await Peers.output("/usr/bin/mbpoll", ["-m", "tcp", "-p", port, "-a", "1", "-0", "-1"] + arguments + ["127.0.0.1"])
            var values: [Int: String] = [:]
            for line in text.split(separator: "\n") where line.hasPrefix("[") {
                let parts = line.split(whereSeparator: { $0 == "[" || $0 == "]" || $0 == ":" || $0 == " " || $0 == "\t" })
                if parts.count >= 2, let index = Int(parts[0]) { values[index] = String(parts[1]) }
            }
            return values
        }
        _ = try await mbpoll(["-t", "3", "-r", "0", "-c", "1"])  // the first request starts the script
        try await Task.sleep(for: .milliseconds(200))
        // mbpoll's own 32-bit decoding: little-endian word order by default (CDAB), -B for ABCD.
        #expect(try await mbpoll(["-t", "3:int", "-r", "0", "-c", "1"])[0] == "-1234", "rotation_angle, i32 CDAB, 0.01°")
        #expect(try await mbpoll(["-t", "3:float", "-B", "-r", "2", "-c", "1"])[2] == "250.5", "detector_radius, f32 ABCD")
        #expect(try await mbpoll(["-t", "3:int", "-B", "-r", "7", "-c", "1"])[7] == "-12345", "table_longitudinal, i32 ABCD, 0.1 mm")
        let registers = try await mbpoll(["-t", "3", "-r", "10", "-c", "4"])
        #expect(registers[10] == "2", "motion_state homing")
        #expect(registers[13] == "16", "fault_word bit 4, door_open")
        #expect(try await mbpoll(["-t", "1", "-r", "0", "-c", "1"])[0] == "1", "emergency_stop")
        let text = try await mbpoll(["-t", "3:hex", "-r", "20", "-c", "4"])
        #expect(text[20] == "0x4758" && text[21] == "0x2D32", "\"GX-2\" high byte first")
    }

    @Test func mbpollReadsTheSimulatorOverRTU() async throws {
        let script = try GantryScript.parse("set head1_radial 123.4\nwait 1m", source: "test", profile: exampleProfile)
        let simulator = try GantrySimulator(profile: exampleProfile, transport: .pty(link: nil), unit: 5, script: script)
        simulator.start()
        defer { simulator.stop() }
        var answer = ""
        for _ in 0..<3 where !answer.contains("[4]:") || answer.contains("[4]: \t0\n") {
            answer = try await Peers.output(
                "/usr/bin/mbpoll", ["-m", "rtu", "-b", "19200", "-P", "even", "-a", "5", "-t", "3", "-r", "4", "-c", "1", "-0", "-1", simulator.address])
        }
        #expect(answer.contains("[4]: \t1234"), "\(answer)")
    }

    /// Each state lasts a number of answered requests, not a time: a poll delayed by a
    /// loaded machine (a second or more at load 20) cannot miss one.
    @Test func theDriverJournalsTheScriptedSessionInOrder() async throws {
        let script = try GantryScript.parse(
            """
            set motion_state idle
            wait 12 requests
            set motion_state moving
            wait 12 requests
            ramp rotation_angle to 45 over 1s
            set motion_state idle
            set acquisition_state acquiring
            wait 12 requests
            raise fault_word motor_overcurrent
            wait 12 requests
            exception busy for 2 requests
            clear fault_word motor_overcurrent
            set acquisition_state idle
            wait 1m
            """, source: "test", profile: exampleProfile)
        // RTU on a pty of its own: on a loopback port, another test's driver still retrying an
        // old port that the system handed to this simulator could start its script early.
        let directory = try Peers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let simulator = try GantrySimulator(profile: exampleProfile, transport: .pty(link: directory + "/tty"), script: script)
        simulator.start()
        defer { simulator.stop() }
        let rig = try GantryRig("profile = \"spect-gantry-example\"\nmodbus = { rtu = \"\(directory)/tty\" }\npoll_ms = 200\nretries = 0")
        defer { Task { await rig.stop() } }
        let finished = await rig.sink.wait { rig.sink.events("gantry.acquisition").count >= 2 }
        await rig.stop()
        #expect(finished)
        let kinds = rig.sink.drafts.withLock { $0.map(\.kind) }.filter { $0 != "gantry.state" }
        #expect(
            kinds == [
                "gantry.motion", "gantry.motion", "gantry.acquisition", "gantry.fault.raised", "device.protocol_error",
                // One poll sees both changes: the tracker reports acquisition before faults.
                "gantry.acquisition", "gantry.fault.cleared",
            ], "\(kinds)")
        let motions = rig.sink.events("gantry.motion")
        #expect(motions.last?.data["positions"]?.objectValue?["rotation_angle_deg"] == .double(45))
        #expect(rig.sink.events("device.protocol_error").first?.data["error"]?.stringValue?.contains("server device busy") == true)
        #expect(rig.sink.events("gantry.fault.raised").first?.data["fault"] == .string("motor_overcurrent"))
        #expect(rig.linkKinds == ["up"], "an exception is an answer: the link stays up")
        #expect(rig.lastValue("controller_firmware") == .string(""))
    }

    @Test func theDriverReconnectsWhenPymodbusIsKilledAndRestarted() async throws {
        let directory = try Peers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try freeTCPPort()
        let values = "[{\"table\": \"input\", \"address\": 10, \"type\": \"u16\", \"value\": 2}]"
        var server = try await Peers.pymodbusTCP(values: values, directory: directory, port: port)
        let rig = try GantryRig("profile = \"spect-gantry-example\"\nmodbus = { tcp = \"127.0.0.1:\(port)\" }\npoll_ms = 100\ntimeout_ms = 300")
        defer {
            stopProcess(server)
            Task { await rig.stop() }
        }
        #expect(await rig.sink.wait { rig.lastValue("motion_state") == .string("homing") })
        stopProcess(server)  // kill -9
        #expect(await rig.sink.wait { rig.linkKinds.last == "down" })
        let beatsWhileDown = rig.sink.heartbeats.load(ordering: .relaxed)
        server = try await Peers.pymodbusTCP(values: values, directory: directory, port: port)
        #expect(await rig.sink.wait { rig.linkKinds.last == "up" && rig.sink.heartbeats.load(ordering: .relaxed) > beatsWhileDown + 3 })
        await rig.stop()
        let kinds = rig.linkKinds
        #expect(kinds.first == "up" && kinds.last == "up" && kinds.contains("down"), "\(kinds)")
        #expect(rig.downReasons().allSatisfy { $0.contains("127.0.0.1:\(port)") }, "\(rig.downReasons())")
    }

    @Test func anIllegalAddressFailsOnlyItsOwnRequest() async throws {
        let directory = try Peers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try """
            [[resource]]
            name = "speed"
            table = "holding"
            address = 0
            type = "u16"

            [[resource]]
            name = "missing"
            table = "holding"
            address = 3000
            type = "u16"
            """.write(toFile: directory + "/p.toml", atomically: true, encoding: .utf8)
        let port = try freeTCPPort()
        let server = try await Peers.pymodbusTCP(
            values: "[{\"table\": \"holding\", \"address\": 0, \"type\": \"u16\", \"value\": 77}]", directory: directory, port: port)
        let rig = try GantryRig("profile = \"\(directory)/p.toml\"\nmodbus = { tcp = \"127.0.0.1:\(port)\" }\npoll_ms = 100")
        defer {
            stopProcess(server)
            Task { await rig.stop() }
        }
        #expect(await rig.sink.wait { rig.lastValue("speed") != nil && !rig.sink.events("device.protocol_error").isEmpty })
        await rig.stop()
        #expect(rig.lastValue("speed") == .double(77))
        let error = rig.sink.events("device.protocol_error").first?.data["error"]?.stringValue ?? ""
        #expect(error.contains("illegal data address") && error.contains("3000"), "\(error)")
        #expect(rig.linkKinds == ["up"])
    }

    @Test func aSilentUnitOnASharedBusDoesNotStallItsNeighbour() async throws {
        let simulator = try GantrySimulator(profile: exampleProfile, transport: .tcp(host: "127.0.0.1", port: 0), unit: 1, script: nil)
        simulator.start()
        defer { simulator.stop() }
        let common = "profile = \"spect-gantry-example\"\npoll_ms = 100\ntimeout_ms = 200\nretries = 0\nunit_backoff_max_s = 1\n"
        let alive = try GantryRig(common + "modbus = { tcp = \"\(simulator.address)\", unit = 1 }", id: "gantry-alive")
        let silent = try GantryRig(common + "modbus = { tcp = \"\(simulator.address)\", unit = 7 }", id: "gantry-silent")
        defer { Task { await alive.stop(); await silent.stop() } }
        #expect(await silent.sink.wait { silent.linkKinds.last == "down" })
        // Once the silent unit is backed off, the live one keeps being polled about every 100 ms.
        let before = alive.sink.heartbeats.load(ordering: .relaxed)
        let started = ContinuousClock.now
        #expect(await alive.sink.wait { alive.sink.heartbeats.load(ordering: .relaxed) >= before + 20 })
        let elapsed = started.duration(to: .now)
        await alive.stop()
        await silent.stop()
        #expect(alive.linkKinds == ["up"])
        #expect(silent.downReasons().contains { $0.contains("unit 7 has not answered 3 polls in a row") }, "\(silent.downReasons())")
        // Not a timing limit: a sanity bound far above 20 polls × 100 ms, to show the silent
        // unit's timeouts (200 ms each) are not paid on every one of the live unit's polls.
        #expect(elapsed < .seconds(60))
        #expect(silent.sink.heartbeats.load(ordering: .relaxed) == 0)
    }

    @Test func aDroppedConnectionIsReportedAndReopened() async throws {
        let script = try GantryScript.parse("set collimator LEAP\nwait 500ms\ndrop\nwait 1m", source: "test", profile: exampleProfile)
        let simulator = try GantrySimulator(profile: exampleProfile, transport: .tcp(host: "127.0.0.1", port: 0), script: script)
        simulator.start()
        defer { simulator.stop() }
        let rig = try GantryRig("profile = \"spect-gantry-example\"\nmodbus = { tcp = \"\(simulator.address)\" }\npoll_ms = 100")
        defer { Task { await rig.stop() } }
        #expect(await rig.sink.wait { rig.linkKinds == ["up", "down", "up"] })
        await rig.stop()
        #expect(rig.linkKinds == ["up", "down", "up"])
    }

    @Test func lateAnswersNeverDesynchroniseTheValues() async throws {
        // The first two answers after 300 ms come 800 ms late, after the driver gave up on
        // them: their bytes must not be taken for the answers to later requests.
        let script = try GantryScript.parse(
            "set collimator LEHR\nwait 300ms\ndelay 800ms for 2 requests\nset collimator HEGP\nwait 1m", source: "test",
            profile: exampleProfile)
        let simulator = try GantrySimulator(profile: exampleProfile, transport: .tcp(host: "127.0.0.1", port: 0), script: script)
        simulator.start()
        defer { simulator.stop() }
        let rig = try GantryRig(
            "profile = \"spect-gantry-example\"\nmodbus = { tcp = \"\(simulator.address)\" }\npoll_ms = 100\ntimeout_ms = 300\nretries = 0")
        defer { Task { await rig.stop() } }
        #expect(await rig.sink.wait { rig.lastValue("collimator") == .string("HEGP") })
        try await Task.sleep(for: .seconds(1))
        await rig.stop()
        let collimators = rig.sink.events("gantry.state").compactMap { $0.data["values"]?.objectValue?["collimator"] }
        #expect(collimators == [.string("LEHR"), .string("HEGP")], "\(collimators)")
        #expect(rig.sink.events("device.protocol_error").allSatisfy { $0.data["error"]?.stringValue?.contains("unknown state") != true })
    }

    @Test func garbageOnTheRTULineIsReportedAndSurvived() async throws {
        let script = try GantryScript.parse(
            "set collimator MEGP\nwait 300ms\ngarbage for 3 requests\nset collimator HEGP\nwait 1m", source: "test", profile: exampleProfile)
        let directory = try Peers.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let simulator = try GantrySimulator(profile: exampleProfile, transport: .pty(link: directory + "/tty"), script: script)
        simulator.start()
        defer { simulator.stop() }
        let rig = try GantryRig(
            "profile = \"spect-gantry-example\"\nmodbus = { rtu = \"\(directory)/tty\" }\npoll_ms = 100\nretries = 0\nprotocol_error_interval_s = 0")
        defer { Task { await rig.stop() } }
        #expect(await rig.sink.wait { rig.lastValue("collimator") == .string("HEGP") })
        await rig.stop()
        #expect(!rig.sink.events("device.protocol_error").isEmpty, "the garbage is reported")
        #expect(rig.sink.events("gantry.state").contains { $0.data["values"]?.objectValue?["collimator"] == .string("MEGP") })
    }
}
