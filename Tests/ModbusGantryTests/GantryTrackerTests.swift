import Foundation
import NMBridgeCore
import Testing

@testable import ModbusGantry

/// The example profile, loaded once.
let exampleProfile: ModbusProfile = try! ModbusProfileLoader.load(path: profilesDirectory + "/spect-gantry-example.toml")

@Suite struct GantryTrackerTests {
    /// Values by resource name, in the tracker's input form.
    func read(_ values: [String: ModbusValue], profile: ModbusProfile = exampleProfile) -> [(resource: ModbusResource, value: ModbusValue)] {
        values.keys.sorted().map { (profile[$0]!, values[$0]!) }
    }

    @Test func theFirstReadReportsEveryValueAndNoTransitions() {
        var tracker = GantryTracker(profile: exampleProfile)
        let events = tracker.update(
            read([
                "rotation_angle": .number(12.5), "motion_state": .state("moving"), "acquisition_state": .state("acquiring"),
                "fault_word": .flags([]), "emergency_stop": .bool(false),
            ]))
        #expect(events.map(\.kind) == ["gantry.state"])
        let values = events[0].data["values"]?.objectValue
        #expect(values?["rotation_angle_deg"] == .double(12.5))
        #expect(values?["motion_state"] == .string("moving"))
        #expect(values?["fault_word"] == .array([]))
        #expect(values?["emergency_stop"] == .bool(false))
    }

    @Test func theDeadbandIsMeasuredFromTheLastReportedValue() {
        var tracker = GantryTracker(profile: exampleProfile)  // rotation_angle deadband 0.05°
        _ = tracker.update(read(["rotation_angle": .number(10)]))
        #expect(tracker.update(read(["rotation_angle": .number(10.03)])).isEmpty)
        #expect(tracker.update(read(["rotation_angle": .number(10.05)])).isEmpty, "0.05 is inside the deadband")
        // 10.06 is only 0.01 from the last read but 0.06 from the last report: reported.
        let drift = tracker.update(read(["rotation_angle": .number(10.06)]))
        #expect(drift.first?.data["values"]?.objectValue?["rotation_angle_deg"] == .double(10.06))
        #expect(tracker.update(read(["rotation_angle": .number(10.06)])).isEmpty, "unchanged")
    }

    @Test func motionStartsAndStopsWithPositions() {
        var tracker = GantryTracker(profile: exampleProfile)
        _ = tracker.update(read(["motion_state": .state("idle"), "rotation_angle": .number(0), "table_height": .number(850)]))
        let start = tracker.update(read(["motion_state": .state("homing"), "rotation_angle": .number(1)]))
        #expect(start.map(\.kind) == ["gantry.state", "gantry.motion"])
        #expect(start[1].data["state"] == .string("started"))
        #expect(start[1].data["motion_state"] == .string("homing"))
        #expect(start[1].data["positions"]?.objectValue?["rotation_angle_deg"] == .double(1))
        #expect(start[1].data["positions"]?.objectValue?["table_height_mm"] == .double(850))
        // homing → moving is still motion: no event but the state change.
        #expect(tracker.update(read(["motion_state": .state("moving")])).map(\.kind) == ["gantry.state"])
        let stop = tracker.update(read(["motion_state": .state("fault"), "rotation_angle": .number(90)]))
        #expect(stop.map(\.kind) == ["gantry.state", "gantry.motion"])
        #expect(stop[1].data["state"] == .string("stopped"))
        #expect(stop[1].data["positions"]?.objectValue?["rotation_angle_deg"] == .double(90))
    }

    @Test func acquisitionStartsPausesResumesAndStops() {
        var tracker = GantryTracker(profile: exampleProfile)
        _ = tracker.update(read(["acquisition_state": .state("idle")]))
        let states = ["acquiring", "paused", "acquiring", "idle", "paused"].map { state in
            tracker.update(read(["acquisition_state": .state(state)])).first { $0.kind == "gantry.acquisition" }?.data["state"]
        }
        #expect(states == [.string("started"), .string("paused"), .string("resumed"), .string("stopped"), .string("paused")])
    }

    @Test func faultsAreRaisedPerBitIncludingAtStartupAndCleared() {
        var tracker = GantryTracker(profile: exampleProfile)
        // Present at the first read: raised (a fault must not hide behind a restart).
        let first = tracker.update(read(["fault_word": .flags(["door_open"]), "emergency_stop": .bool(false)]))
        let raisedFirst = first.filter { $0.kind == "gantry.fault.raised" }
        #expect(raisedFirst.map { $0.data["fault"] } == [.string("door_open")])
        #expect(raisedFirst.first?.data["word"] == .string("fault_word=0x10"))

        let next = tracker.update(read(["fault_word": .flags(["overtravel", "bit9"]), "emergency_stop": .bool(true)]))
        let raised = next.filter { $0.kind == "gantry.fault.raised" }.compactMap { $0.data["fault"]?.stringValue }
        let cleared = next.filter { $0.kind == "gantry.fault.cleared" }.compactMap { $0.data["fault"]?.stringValue }
        #expect(Set(raised) == ["overtravel", "bit9", "emergency_stop"], "an unnamed bit is still a fault")
        #expect(cleared == ["door_open"])
        #expect(next.first?.kind == "gantry.state", "the state comes first")
    }

    @Test func withoutAGantryTableEveryBitfieldIsAFaultWordAndNothingElseHasARole() throws {
        let profile = try ModbusProfileLoader.load(
            text: """
                [[resource]]
                name = "status"
                table = "holding"
                address = 0
                type = "bitfield"
                bits = { 0 = "low_air" }

                [[resource]]
                name = "mode"
                table = "holding"
                address = 1
                type = "u16"
                enum = { 0 = "idle", 1 = "moving" }
                """, file: "t.toml")
        #expect(profile.gantry.faults == ["status"])
        #expect(profile.gantry.motion == nil)
        var tracker = GantryTracker(profile: profile)
        _ = tracker.update(read(["mode": .state("idle"), "status": .flags([])], profile: profile))
        let events = tracker.update(read(["mode": .state("moving"), "status": .flags(["low_air"])], profile: profile))
        #expect(events.map(\.kind) == ["gantry.state", "gantry.fault.raised"])
    }
}

@Suite struct GantryRolesTests {
    static let base = """
        [[resource]]
        name = "angle"
        table = "input"
        address = 0
        type = "i16"

        [[resource]]
        name = "mode"
        table = "input"
        address = 1
        type = "u16"
        enum = { 0 = "idle", 1 = "moving" }

        [[resource]]
        name = "label"
        table = "input"
        address = 2
        type = "string"
        length = 2

        """

    @Test func problemsNameTheKeyAndLine() {
        let text = Self.base + """
            [gantry]
            motion = "mode"
            moving_states = ["moving", "spinning"]
            acquisition = "angle"
            positions = ["angle", "label", "nothing"]
            faults = ["mode"]
            colour = "red"
            """
        let found = problems(text)
        func has(_ key: String, _ marker: String, _ fragment: String) -> Bool {
            found.contains { $0.key == key && $0.line == line(of: marker, in: text) && $0.message.contains(fragment) }
        }
        #expect(has("gantry.moving_states", "moving_states", "\"spinning\" is not a state of \"mode\""))
        #expect(has("gantry.acquisition", "acquisition =", "has no enum states"))
        #expect(has("gantry.positions", "positions", "\"label\" is not a number"))
        #expect(has("gantry.positions", "positions", "no resource is named \"nothing\""))
        #expect(has("gantry.faults", "faults", "faults are bitfields or bools"))
        #expect(has("gantry.colour", "colour", "unknown key"))
        #expect(found.count == 6, "\(found)")
    }

    @Test func theExampleProfileDeclaresItsRoles() {
        let roles = exampleProfile.gantry
        #expect(roles.motion == "motion_state" && roles.movingStates == ["moving", "homing"])
        #expect(roles.acquisition == "acquisition_state" && roles.pausedStates == ["paused"])
        #expect(roles.faults == ["fault_word", "emergency_stop"])
        #expect(roles.positions.count == 6)
    }
}

@Suite struct GantryScriptTests {
    @Test func theBuiltInSessionFitsTheExampleProfile() throws {
        let script = try GantryScript.parse(GantryScript.demoText, source: "builtin", profile: exampleProfile)
        #expect(script.loops)
        #expect(script.steps.contains(.raise(resource: "fault_word", bit: "door_open")))
        #expect(script.steps.contains(.fault(.exception(6), requests: 2)))
        #expect(script.steps.contains(.set(resource: "controller_firmware", value: .text("GX-2.4.1"))))
    }

    @Test(arguments: [
        ("set nothing 1", "line 1: profile spect-gantry-example has no resource \"nothing\""),
        ("wait 1s\nset motion_state flying", "line 2: \"flying\" is not a value for motion_state"),
        ("set table_height 99999", "line 1: table_height:"),
        ("ramp motion_state to 1 over 2s", "line 1: only a number can ramp"),
        ("raise fault_word sparks", "line 1: \"sparks\" is not a bit of fault_word"),
        ("exception angry for 2 requests", "line 1: \"angry\" is not an exception"),
        ("delay 2s", "line 1: expected `for N requests`"),
        ("set collimator LEHR\nloop", "line 2: a loop needs a `wait` or a `ramp`"),
        ("wait 1s\nloop\nwait 1s", "line 3: nothing may follow `loop`"),
        ("teleport", "line 1: unknown step \"teleport\""),
    ])
    func badScriptsNameTheLine(text: String, message: String) {
        do {
            _ = try GantryScript.parse(text, source: "s.txt", profile: exampleProfile)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.message.contains("s.txt " + message), "\(error.message)")
        }
    }

    @Test func playerRampsFromWhereTheValueIsAndHoldsFaultsForTheirRequests() {
        let script = GantryScript(
            steps: [.fault(.exception(6), requests: 2), .ramp(resource: "rotation_angle", to: 90, over: .seconds(10)), .wait(.seconds(1))],
            loops: false)
        var player = ScriptPlayer(script: script)
        let t0 = ContinuousClock.now
        #expect(player.due(now: t0).isEmpty, "nothing before the first request")
        player.started()
        #expect(player.due(now: t0).isEmpty)
        #expect(player.takeFault() == .exception(6))
        #expect(player.due(now: t0 + .seconds(5)).isEmpty, "the ramp waits for the fault's requests")
        #expect(player.takeFault() == .exception(6))
        #expect(player.takeFault() == nil)
        guard case .ramp(_, let start, 90, _)? = player.due(now: t0 + .seconds(5)).first else {
            Issue.record("no ramp")
            return
        }
        #expect(start == 0)
        guard case .ramp(_, let half, 90, _)? = player.due(now: t0 + .seconds(10)).first else {
            Issue.record("no ramp")
            return
        }
        #expect(half == 0.5)
    }

    @Test func aRequestCountedWaitIgnoresTime() throws {
        let script = try GantryScript.parse(
            "set motion_state idle\nwait 3 requests\nset motion_state moving\nwait 2 requests\nloop", source: "s.txt", profile: exampleProfile)
        #expect(script.steps[1] == .waitRequests(3))
        var player = ScriptPlayer(script: script)
        let t0 = ContinuousClock.now
        player.started()
        #expect(player.due(now: t0).count == 1, "idle is set by the first request")
        for n in 2...3 {
            player.started()
            #expect(player.due(now: t0 + .seconds(3600)).isEmpty, "request \(n): an hour is not three requests")
        }
        player.started()
        guard case .set("motion_state", _)? = player.due(now: t0).first else {
            Issue.record("moving not set on the fourth request")
            return
        }
    }
}

@Suite struct ModbusSettingsTests {
    func load(_ device: String) throws(ConfigurationError) -> DaemonConfiguration {
        try DaemonConfiguration.load(
            text: "[[device]]\nid = \"gantry-1\"\ndriver = \"modbus\"\n" + device, file: "nmbridge.toml",
            drivers: DriverCatalog([ModbusGantryDriver.self]), defaultNode: "test", baseDirectory: profilesDirectory)
    }

    @Test func aTCPDeviceWithABundledProfile() throws {
        let configuration = try load(
            """
            profile = "spect-gantry-example"
            modbus = { tcp = "192.0.2.20:502", unit = 3 }
            poll_ms = 200
            """)
        let settings = try #require(configuration.devices[0].settings as? ModbusGantrySettings)
        #expect(settings.endpoint == .tcp(host: "192.0.2.20", port: 502))
        #expect(settings.unit == 3 && settings.line == nil)
        #expect(settings.pollInterval == .milliseconds(200))
        #expect(settings.profile.name == "spect-gantry-example")
        #expect(configuration.devices[0].staleAfter == 5, "five polls, at least 5 s")
    }

    @Test func anRTUDeviceWithAProfilePathAndLineSettings() throws {
        let configuration = try load(
            """
            profile = "spect-gantry-example.toml"
            modbus = { rtu = "/dev/ttyUSB1", unit = 7, rs485 = true, rts = "up" }
            serial = { baud = 38400, parity = "none", stop_bits = 2 }
            """)
        let settings = try #require(configuration.devices[0].settings as? ModbusGantrySettings)
        #expect(settings.endpoint == .rtu(path: "/dev/ttyUSB1"))
        #expect(settings.line?.serial.description == "38400 8N2")
        #expect(settings.line?.rs485 == true && settings.line?.rts == .up)
    }

    @Test func everyProblemIsReportedWithKeyAndLine() {
        do {
            _ = try load(
                """
                profile = "no-such-profile"
                modbus = { tcp = "gantry", rtu = "/dev/ttyS0", unit = 300, rts = "sideways" }
                poll_ms = 5
                """)
            Issue.record("accepted")
        } catch {
            let keys = error.problems.map { "\($0.key)@\($0.line ?? 0)" }
            #expect(keys.contains("device[gantry-1].profile@4"))
            #expect(keys.contains("device[gantry-1].modbus.rtu@5"))
            #expect(keys.contains("device[gantry-1].modbus.unit@5"))
            #expect(keys.contains("device[gantry-1].modbus.rts@5"))
            #expect(keys.contains("device[gantry-1].poll_ms@6"))
            #expect(error.description.contains("looked for no-such-profile.toml in /etc/nmbridge/profiles"))
        }
    }

    @Test func aBrokenProfileReportsItsOwnFileAndLine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nmb-profile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "[[resource]]\nname = \"a\"\ntable = \"input\"\naddress = 0\ntype = \"u17\"\n".write(
            toFile: directory + "/bad.toml", atomically: true, encoding: .utf8)
        do {
            _ = try load("profile = \"\(directory)/bad.toml\"\nmodbus = { tcp = \"127.0.0.1:502\" }")
            Issue.record("accepted")
        } catch {
            #expect(error.problems.contains { $0.file == directory + "/bad.toml" && $0.line == 5 && $0.key == "resource[a].type" })
            #expect(error.problems.contains { $0.key == "device[gantry-1].profile" && $0.message.contains("1 problem") })
        }
    }

    @Test(arguments: [
        ("127.0.0.1:502", ModbusEndpoint.tcp(host: "127.0.0.1", port: 502)),
        ("[::1]:1502", ModbusEndpoint.tcp(host: "::1", port: 1502)),
        ("gantry.local:502", ModbusEndpoint.tcp(host: "gantry.local", port: 502)),
    ])
    func tcpEndpoints(text: String, endpoint: ModbusEndpoint) {
        #expect(ModbusEndpoint.tcp(text) == endpoint)
    }

    @Test(arguments: ["127.0.0.1", "127.0.0.1:0", ":502", "host:70000", "[::1]502", "a b:502"])
    func badTCPEndpoints(text: String) {
        #expect(ModbusEndpoint.tcp(text) == nil)
    }
}

@Suite struct PollScheduleTests {
    @Test func groupsFollowTheirOwnIntervals() {
        let fast = ModbusResource(name: "a", table: .input, address: 0, type: .u16)
        let slow = ModbusResource(name: "b", table: .input, address: 1, type: .u16, pollMilliseconds: 5000)
        var schedule = PollSchedule(resources: [fast, slow], defaultInterval: .seconds(1))
        let t0 = ContinuousClock.now
        #expect(Set(schedule.takeDue(now: t0).map(\.name)) == ["a", "b"])
        #expect(schedule.takeDue(now: t0 + .milliseconds(500)).isEmpty)
        #expect(schedule.takeDue(now: t0 + .seconds(1)).map(\.name) == ["a"])
        #expect(Set(schedule.takeDue(now: t0 + .seconds(5)).map(\.name)) == ["a", "b"])
        // Far behind: the deadline restarts from now instead of firing repeatedly.
        #expect(schedule.takeDue(now: t0 + .seconds(60)).map(\.name).count == 2)
        #expect(schedule.takeDue(now: t0 + .seconds(60)).isEmpty)
    }
}
