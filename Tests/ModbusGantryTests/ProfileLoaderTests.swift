import Foundation
import NMBridgeCore
import TestSupport
import Testing

@testable import ModbusGantry

/// The profiles shipped in the source tree (the tests run from the package's build folder).
let profilesDirectory = repositoryRoot + "/Drivers/ModbusGantry/profiles"

/// The 1-based line of the first line of `text` containing `marker`, so tests name lines
/// by content rather than by counting.
func line(of marker: String, in text: String) -> Int {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    return (lines.firstIndex { $0.contains(marker) } ?? -1) + 1
}

/// Loads profile text, returning the problems as (line, key) pairs (empty when it loads).
func problems(_ text: String) -> [ConfigProblem] {
    do {
        _ = try ModbusProfileLoader.load(text: text, file: "test.toml")
        return []
    } catch {
        return error.problems
    }
}

@Suite struct ProfileLoaderTests {
    @Test func theExampleProfileLoadsCleanly() throws {
        let profile = try ModbusProfileLoader.load(path: profilesDirectory + "/spect-gantry-example.toml")
        #expect(profile.name == "spect-gantry-example")
        #expect(profile.addressing == .zeroBased)
        #expect(profile.resources.count == 12)

        let angle = try #require(profile["rotation_angle"])
        #expect(angle.table == .input && angle.address == 0 && angle.type == .i32 && angle.order == .cdab)
        #expect(angle.scale == 0.01 && angle.deadband == 0.05)
        #expect(angle.fieldName == "rotation_angle_deg")
        #expect(profile["detector_radius"]?.type == .f32)
        #expect(profile["detector_radius"]?.order == .abcd, "the default order")
        #expect(profile["table_height"]?.offset == 300)
        #expect(profile["motion_state"]?.states == [0: "idle", 1: "moving", 2: "homing", 3: "fault"])
        #expect(profile["acquisition_state"]?.states.values.sorted() == ["acquiring", "idle", "paused"])
        #expect(profile["collimator"]?.states[1] == "LEHR")
        #expect(profile["collimator"]?.pollMilliseconds == 5000)
        #expect(profile["rotation_angle"]?.pollMilliseconds == nil)
        #expect(
            profile["fault_word"]?.bits
                == [0: "overtravel", 1: "collision_sensor", 2: "motor_overcurrent", 3: "encoder_error", 4: "door_open"])
        #expect(profile["controller_firmware"]?.type == .string(registers: 8))
        let stop = try #require(profile["emergency_stop"])
        #expect(stop.table == .discrete && stop.type == .bool && stop.fieldName == "emergency_stop")

        // A gantry at 270.5° in the example layout decodes to 270.5°.
        let raw = angle.addresses.map { _ in UInt16(0) }
        #expect(try angle.decode(registers: raw) == .number(0))
        #expect(try angle.decode(angle.encode(.number(270.5))) == .number(270.5))
    }

    @Test func aBrokenProfileReportsEveryProblemWithLineAndKey() throws {
        let text = """
            name = "broken"
            adressing = "zero-based"
            [[resource]]
            name = "angle"
            table = "input"
            address = 0
            type = "i32"
            order = "ABDC"
            [[resource]]
            name = "radius"
            table = "input"
            address = 1
            type = "u16"
            [[resource]]
            name = "speed"
            table = "input"
            address = 20
            type = "u17"
            [[resource]]
            name = "angle"
            table = "input"
            address = 30
            type = "u16"
            [[resource]]
            name = "estop"
            table = "holding"
            address = 0
            type = "bool"
            [[resource]]
            name = "counter"
            table = "holding"
            address = 65535
            type = "u32"
            [[resource]]
            name = "state"
            table = "holding"
            address = 10
            type = "u16"
            order = "CDAB"
            scael = 2
            [[resource]]
            name = "temperature"
            table = "holding"
            address = 11
            type = "f32"
            enum = { 0 = "cold" }
            [[resource]]
            name = "flags"
            table = "coil"
            address = 3
            type = "bitfield"
            """
        let found = problems(text)
        let expected: [(marker: String, key: String, says: String)] = [
            ("adressing", "adressing", "did you mean \"addressing\""),
            ("ABDC", "resource[angle].order", "\"ABDC\" is not one of"),
            ("address = 1\n", "resource[radius].address", "overlaps \"angle\""),
            ("u17", "resource[speed].type", "\"u17\" is not one of"),
            ("address = 30", "resource[angle].name", "duplicate resource name \"angle\""),
            ("\"bool\"", "resource[estop].type", "bool is read from coil or discrete"),
            ("65535", "resource[counter].address", "past the last address 65535"),
            ("CDAB", "resource[state].order", "32- and 64-bit numbers only"),
            ("scael", "resource[state].scael", "did you mean \"scale\""),
            ("cold", "resource[temperature].enum", "integer types only"),
            ("bitfield", "resource[flags].type", "needs registers"),
        ]
        #expect(found.count == expected.count, "\(ConfigurationError(problems: found))")
        for item in expected {
            // The duplicate's name line is the line before its address; markers name a line nearby.
            var wanted = line(of: item.marker.trimmingCharacters(in: .newlines), in: text)
            if item.marker == "address = 1\n" { wanted = line(of: "name = \"radius\"", in: text) + 2 }
            if item.marker == "address = 30" { wanted -= 2 }
            #expect(
                found.contains { $0.line == wanted && $0.key == item.key && $0.message.contains(item.says) },
                "missing \(item.key) on line \(wanted) saying \(item.says)\n\(ConfigurationError(problems: found))")
        }
        #expect(found.map { $0.line ?? 0 } == found.map { $0.line ?? 0 }.sorted(), "sorted by line")
        #expect(found.allSatisfy { $0.description.hasPrefix("test.toml:") })
    }

    @Test func keyChecks() {
        func only(_ body: String) -> [String] {
            problems("[[resource]]\nname = \"x\"\n" + body).map { "\($0.key): \($0.message)" }
        }
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"").isEmpty)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"string\"").first?.contains("needs length") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\nlength = 2").first?.contains("string only") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"string\"\nlength = 126").first?.contains("out of range") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\nbits = { 0 = \"a\" }").first?.contains("bitfield only") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"bitfield\"\nbits = { 16 = \"a\" }").first?.contains("0–15") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\nenum = { 70000 = \"a\" }").first?.contains("0…65535") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\nenum = { 0 = \"a\", 1 = \"a\" }").first?.contains("already used") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\nenum = { 0 = \"a b\" }").first?.contains("must be") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\nenum = { 0 = \"a\" }\nscale = 2").first?.contains("enum") == true)
        #expect(only("table = \"coil\"\naddress = 0\ntype = \"bool\"\nunit = \"mm\"").first?.contains("numbers only") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\nscale = 0").first?.contains("must not be 0") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\ndeadband = -1").first?.contains("negative") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\nunit = \"m/s\"").first?.hasPrefix("resource[x].unit") == true)
        #expect(only("table = \"holding\"\naddress = -1\ntype = \"u16\"").first?.contains("out of range") == true)
        #expect(only("table = \"holding\"\naddress = 65535\ntype = \"u16\"").isEmpty)
        #expect(only("table = \"holding\"\naddress = 65535\ntype = \"f64\"").first?.contains("past the last") == true)
        #expect(only("table = \"holding\"\naddress = 0\ntype = \"u16\"\npoll_ms = 1").first?.contains("poll_ms") == true)
        #expect(only("table = \"register\"\naddress = 0\ntype = \"u16\"").first?.contains("\"register\" is not one of") == true)
        #expect(only("address = 0\ntype = \"u16\"").first == "resource[x].table: is required")
        #expect(problems("name = \"empty\"").first?.message.contains("at least one") == true)
        let twice = problems("[[resource]]\nname = \"x\"\ntype = \"u17\"\n[[resource]]\nname = \"x\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"")
        #expect(twice.contains { $0.line == 5 && $0.message.contains("duplicate") }, "found even when the first is broken")
        #expect(problems("[[resource]]\nname = \"x\"\nname = \"y\"").first?.key == "(syntax)")
    }

    @Test func oneBasedAddressing() throws {
        let text = """
            addressing = "one-based"
            [[resource]]
            name = "first"
            table = "holding"
            address = 1
            type = "u32"
            [[resource]]
            name = "last"
            table = "holding"
            address = 65536
            type = "u16"
            """
        let profile = try ModbusProfileLoader.load(text: text, file: nil)
        #expect(profile.addressing == .oneBased)
        #expect(profile["first"]?.address == 0, "one-based 1 is wire address 0")
        #expect(profile["last"]?.address == 65535)
        let zero = problems(text.replacingOccurrences(of: "address = 1\n", with: "address = 0\n"))
        #expect(zero.first?.key == "resource[first].address")
        #expect(zero.first?.message.contains("1…65536") == true)
        let past = problems(text.replacingOccurrences(of: "type = \"u16\"", with: "type = \"u32\""))
        #expect(past.first?.message.contains("65536…65537") == true, "messages quote addresses as written")
    }

    @Test func overlapsAcrossTablesAreAllowed() throws {
        let text = """
            [[resource]]
            name = "a"
            table = "holding"
            address = 0
            type = "u16"
            [[resource]]
            name = "b"
            table = "input"
            address = 0
            type = "f64"
            [[resource]]
            name = "c"
            table = "coil"
            address = 0
            type = "bool"
            [[resource]]
            name = "d"
            table = "discrete"
            address = 0
            type = "bool"
            [[resource]]
            name = "e"
            table = "input"
            address = 2
            type = "u16"
            """
        let found = problems(text)
        #expect(found.count == 1)
        #expect(found.first?.key == "resource[e].address")
        #expect(found.first?.message.contains("overlaps \"b\" (line 6, addresses 0…3)") == true)
    }

    @Test func anUnreadableFileIsOneProblem() {
        #expect {
            try ModbusProfileLoader.load(path: "/nonexistent/gantry.toml")
        } throws: { ($0 as? ConfigurationError)?.problems.first?.key == "(file)" }
    }
}
