import Foundation
import TestSupport
import Testing

/// Runs scripts/check-packaging: systemd unit (verify + security score),
/// sysusers/tmpfiles snippets, udev rules under umockdev, Makefile layout.
/// Needs Debian 12 as root (it installs systemd/udev/umockdev when missing).
/// Where that is not possible, e.g. no systemd-analyze, it fails: never skips.
@Test func packagingChecksPass() async throws {
    let script = repositoryRoot + "/scripts/check-packaging"
    let result = try await runProgram("/bin/bash", ["-c", "cd \"$1\" && exec bash \"$2\" 2>&1", "check", repositoryRoot, script])
    let output = result.stdout
    #expect(result.status == 0, "scripts/check-packaging failed:\n\(output)")
    #expect(output.contains("PASS: all packaging checks passed"), "no PASS line from scripts/check-packaging:\n\(output)")
}

/// Runs scripts/check-systemd: the installed unit under a real systemd 252 (booted as PID 1
/// of its own namespaces, the host untouched) starts the daemon built here through
/// READY=1 in the unit's whole sandbox, the CLI reads it over the API socket, the Modbus
/// driver polls a simulator, the shipper delivers to PostgreSQL, storescu stores an image
/// on port 104 through the socket unit,
/// the watchdog restarts it when frozen, and `systemctl stop` ends it with status 0.
@Test func theInstalledUnitRunsTheDaemonUnderSystemd() async throws {
    let script = repositoryRoot + "/scripts/check-systemd"
    let result = try await runProgram(
        "/bin/bash", ["-c", "BINDIR_SRC=\"$1\" exec bash \"$2\" 2>&1", "check", productsDirectory, script])
    let output = result.stdout
    #expect(result.status == 0, "scripts/check-systemd failed:\n\(output)")
    #expect(output.contains("systemd check passed"), "no pass line from scripts/check-systemd:\n\(output)")
    #expect(output.contains("watchdog timeout, restarted"), "\(output)")
    #expect(output.contains("port 104 → systemd's socket → nmbridged: stored and journaled"), "\(output)")
    #expect(output.contains("the shipper delivers to PostgreSQL over TCP"), "\(output)")
}

/// Runs scripts/check-deb: `make deb` packages the debug binaries built here (twice, as
/// revisions 1 and 2), and under a real systemd booted as in the test above the package
/// is installed with dpkg, the shipped configuration filled in for a simulated CRC-35R, the
/// gantry simulator and a DICOM sender, the service started and its events read with
/// `nmbridge tail`; then upgraded (the edited conffile kept, the daemon restarted),
/// removed (configuration and journal kept) and purged (configuration gone, journal kept).
@Test func theDebianPackageInstallsUpgradesAndPurges() async throws {
    let script = repositoryRoot + "/scripts/check-deb"
    let result = try await runProgram(
        "/bin/bash", ["-c", "BINDIR_SRC=\"$1\" exec bash \"$2\" 2>&1", "check", productsDirectory, script])
    let output = result.stdout
    #expect(result.status == 0, "scripts/check-deb failed:\n\(output)")
    #expect(output.contains("package check passed"), "no pass line from scripts/check-deb:\n\(output)")
    #expect(output.contains("exit 2, the six placeholders by key and line"), "\(output)")
    #expect(output.contains("dosecal.measurement from dosecal-pet, gantry.state from gantry-1"), "\(output)")
    #expect(output.contains("the new example in /etc/nmbridge/nmbridge.toml.dpkg-dist"), "\(output)")
    #expect(output.contains("/var/lib/nmbridge (journal, DICOM files) and user nmbridge kept"), "\(output)")
}

/// docs/nmbridge.example.toml, the configuration the package installs, through
/// `nmbridge config check` as an administrator runs it: as shipped it fails and names each
/// `<FILL IN: …>` placeholder; with them filled in it passes and describes the two
/// calibrators, the gantry, the DICOM peer and the check source.
@Suite struct ExampleConfiguration {
    static let examplePath = repositoryRoot + "/docs/nmbridge.example.toml"

    /// The example with every placeholder replaced by a value an administrator might write.
    static func filled() throws -> String {
        let replacements: [(String, String)] = [
            (#"usb_serial = "<FILL IN"#, #"usb_serial = "A1B2C3D4""#),
            (#"modbus = { tcp = "<FILL IN"#, #"modbus = { tcp = "192.0.2.20:502", unit = 1 }"#),
            (#"host = "<FILL IN"#, #"host = "192.0.2.31""#),
            (#"reference_bq = "<FILL IN"#, "reference_bq = 7.4e6"),
            (#"reference_date = "<FILL IN"#, "reference_date = 2020-01-01T00:00:00Z"),
            (#"serial = "<FILL IN"#, #"serial = "CS137-0042""#),
        ]
        var lines = try String(contentsOfFile: examplePath, encoding: .utf8).components(separatedBy: "\n")
        for (prefix, replacement) in replacements {
            let matches = lines.indices.filter { lines[$0].hasPrefix(prefix) }
            #expect(matches.count == 1, "the example should have one line starting \(prefix)")
            for index in matches { lines[index] = replacement }
        }
        return lines.joined(separator: "\n")
    }

    @Test func asShippedItNamesEveryPlaceholderAndNothingElse() async throws {
        let check = try await runProgram(productsDirectory + "/nmbridge", ["config", "check", Self.examplePath])
        #expect(check.status == 2, "\(check.stdout)\(check.stderr)")
        let problems = check.stderr.split(separator: "\n").filter { $0.hasPrefix("  ") }
        #expect(problems.count == 6, "\(check.stderr)")
        for key in [
            "device[dosecal-hotlab].usb_serial", "device[gantry-1].modbus.tcp", "dicom.peer[SPECTCT1].host",
            "qc.check_source[#1].reference_bq", "qc.check_source[#1].reference_date", "qc.check_source[#1].serial",
        ] {
            #expect(
                problems.contains { $0.contains(": \(key): still the example's placeholder \"<FILL IN") },
                "no placeholder problem for \(key):\n\(check.stderr)")
        }
    }

    @Test func filledInItPasses() async throws {
        let directory = try makeTemporaryDirectory("example")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/nmbridge.toml"
        try Self.filled().write(toFile: path, atomically: true, encoding: .utf8)
        let check = try await runProgram(productsDirectory + "/nmbridge", ["config", "check", path])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("3 device(s)"), "\(check.stdout)")
        #expect(check.stdout.contains("journal /var/lib/nmbridge/journal.db"), "\(check.stdout)")
        // The sections the example teaches are there, not commented out; [shipper] is.
        let lines = try Self.filled().components(separatedBy: "\n")
        for header in ["[dicom]", "[[dicom.peer]]", "[qc]", "[[qc.check_source]]", "# [shipper]"] {
            #expect(lines.contains(header), "no line \(header) in the example")
        }
        #expect(!lines.contains("[shipper]"))
    }
}

/// Static checks of udev-rules/70-nmbridge.rules that need neither root nor udevd (the
/// behaviour under udev itself is checked by scripts/check-packaging, step d).
///
/// Syntax: `udevadm verify` where this udevadm has it (systemd 254 and later); always
/// also `UdevRulesLint`, since Debian 12's udevadm (systemd 252) has no verify.
/// Policy: no rule, active or one of the commented examples an admin uncomments, names a
/// USB chip id or hands a device to nmbridge without naming the adapter's serial.
@Suite struct UdevRulesFile {
    static let rulesPath = repositoryRoot + "/udev-rules/70-nmbridge.rules"

    @Test func parsesAndNeverSelectsByChipIDAlone() throws {
        let lint = UdevRulesLint(text: try String(contentsOfFile: Self.rulesPath, encoding: .utf8))
        #expect(lint.problems == [], "70-nmbridge.rules:\n\(lint.problems.joined(separator: "\n"))")
        // The parser really saw the file: its GOTO/LABEL skeleton and the examples.
        #expect(lint.activeRules >= 6)
        #expect(lint.exampleRules >= 6)
    }

    @Test(.enabled(if: udevadmHasVerify, "udevadm verify needs systemd 254 or later; UdevRulesLint checks the syntax instead"))
    func udevadmVerifyAcceptsIt() throws {
        let (status, output) = try run("/usr/bin/env", ["udevadm", "verify", "--resolve-names=never", Self.rulesPath])
        #expect(status == 0, "udevadm verify:\n\(output)")
    }

    /// Controls: the lint finds each kind of mistake it is there for.
    @Test func lintFlagsChipIDRulesAndSyntaxErrors() {
        let cases: [(rule: String, says: String)] = [
            (#"ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", ENV{NMBRIDGE_DEVICE}="x""#, "chip id"),
            (#"# ATTRS{idVendor}=="0403", ENV{NMBRIDGE_DEVICE}="x""#, "chip id"),
            (#"SUBSYSTEM=="tty", ENV{ID_VENDOR_ID}=="0403", MODE="0666""#, "chip id"),
            (#"SUBSYSTEM=="tty", ENV{NMBRIDGE_DEVICE}="x""#, "without naming the adapter's serial"),
            (#"ATTRS{serial}=="A1", ENV{NMBRIDGE_DEVICE}="x"#, "unterminated"),
            (#"ATTRS{serial}=="A1" ENV{NMBRIDGE_DEVICE}="x""#, "expected ','"),
            (#"ATTRS{serial}="A1", ENV{NMBRIDGE_DEVICE}="x""#, "ATTRS only matches"),
            (#"ATTRS=="A1", ENV{NMBRIDGE_DEVICE}="x""#, "ATTRS needs"),
            (#"SERIAL=="A1", ENV{NMBRIDGE_DEVICE}="x""#, "unknown key SERIAL"),
            (#"GOTO="nowhere""#, "no LABEL"),
        ]
        for (rule, says) in cases {
            let problems = UdevRulesLint(text: rule + "\n").problems
            #expect(problems.contains { $0.contains(says) }, "\(rule) → \(problems)")
        }
        let good = #"ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", ATTRS{serial}=="A1B2C3D4", ENV{NMBRIDGE_DEVICE}="dose-calibrator-1""#
        #expect(UdevRulesLint(text: good + "\n# just a comment, == not a rule\n").problems == [])
    }

    static let udevadmHasVerify: Bool = {
        guard let (status, _) = try? run("/usr/bin/env", ["udevadm", "verify", "--help"]) else { return false }
        return status == 0
    }()
}

/// A parser for udev rules files, as strict as udev: every rule line is comma-separated
/// `KEY`, `KEY{attribute}` pairs with an operator and a double-quoted value. Lines of
/// comments that read like a rule (`# ATTRS{…}=="…", …`) are examples for the admin to
/// uncomment and are checked the same way.
struct UdevRulesLint {
    private(set) var problems: [String] = []
    private(set) var activeRules = 0
    private(set) var exampleRules = 0

    private struct Assignment {
        var key: String
        var attribute: String?
        var op: String
        var value: String
        var isMatch: Bool { op == "==" || op == "!=" }
    }

    static let matchOnly: Set = ["ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER", "DRIVERS", "ATTRS", "TAGS", "TEST", "RESULT", "CONST", "PROGRAM"]
    static let assignOnly: Set = ["OWNER", "GROUP", "MODE", "SECLABEL", "OPTIONS", "RUN", "LABEL", "GOTO", "IMPORT"]
    static let either: Set = ["NAME", "SYMLINK", "ENV", "TAG", "ATTR", "SYSCTL"]
    static let needsAttribute: Set = ["ATTR", "ATTRS", "ENV", "SYSCTL", "SECLABEL", "CONST", "IMPORT"]
    static let mayHaveAttribute: Set = ["TEST", "RUN"]
    /// Keys that name a USB chip (vendor/product id), and those that name one adapter.
    static let chipKeys: Set = ["ATTRS{idVendor}", "ATTRS{idProduct}", "ENV{ID_VENDOR_ID}", "ENV{ID_MODEL_ID}"]
    static let serialKeys: Set = ["ATTRS{serial}", "ENV{ID_SERIAL_SHORT}", "ENV{ID_SERIAL}"]

    init(text: String) {
        var labels: Set<String> = []
        var gotos: [(line: Int, label: String)] = []
        var pending = ""
        var pendingStart = 0
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            // Continuation lines: a trailing backslash joins the next line.
            if pending.isEmpty { pendingStart = index + 1 }
            if raw.hasSuffix("\\") {
                pending += raw.dropLast()
                continue
            }
            let line = (pending + raw).trimmingCharacters(in: .whitespaces)
            pending = ""
            var ruleText = line
            var example = false
            if line.hasPrefix("#") {
                let body = line.dropFirst().trimmingCharacters(in: .whitespaces)
                guard body.range(of: #"^[A-Z]+(\{[^}]*\})?\s*(==|!=|\+=|-=|:=|=)\s*""#, options: .regularExpression) != nil else { continue }
                ruleText = body
                example = true
            }
            if ruleText.isEmpty { continue }
            let where_ = "line \(pendingStart)\(example ? " (commented example)" : ""): \(line)"
            guard let pairs = parse(ruleText, where_) else { continue }
            if example { exampleRules += 1 } else { activeRules += 1 }
            for pair in pairs {
                if pair.key == "LABEL", !example { labels.insert(pair.value) }
                if pair.key == "GOTO", !example { gotos.append((pendingStart, pair.value)) }
            }
            check(pairs, where_)
        }
        for (line, label) in gotos where !labels.contains(label) {
            problems.append("line \(line): GOTO=\"\(label)\" has no LABEL=\"\(label)\"")
        }
    }

    /// The key=value pairs of one rule, or nil (with a problem recorded).
    private mutating func parse(_ rule: String, _ where_: String) -> [Assignment]? {
        var pairs: [Assignment] = []
        var rest = Substring(rule)
        func skipSpaces() { rest = rest.drop { $0 == " " || $0 == "\t" } }
        while true {
            skipSpaces()
            let key = String(rest.prefix { $0.isUppercase || $0 == "_" })
            guard !key.isEmpty else {
                problems.append("\(where_): expected a key at \"\(rest.prefix(20))\"")
                return nil
            }
            rest = rest.dropFirst(key.count)
            var attribute: String?
            if rest.first == "{" {
                guard let close = rest.firstIndex(of: "}") else {
                    problems.append("\(where_): \(key){ is not closed")
                    return nil
                }
                attribute = String(rest[rest.index(after: rest.startIndex)..<close])
                rest = rest[rest.index(after: close)...]
            }
            skipSpaces()
            guard let op = ["==", "!=", "+=", "-=", ":=", "="].first(where: { rest.hasPrefix($0) }) else {
                problems.append("\(where_): expected an operator after \(key)")
                return nil
            }
            rest = rest.dropFirst(op.count)
            skipSpaces()
            guard rest.first == "\"" else {
                problems.append("\(where_): the value of \(key) must be in double quotes")
                return nil
            }
            rest = rest.dropFirst()
            var value = ""
            var escaped = false
            var closed = false
            while let c = rest.first {
                rest = rest.dropFirst()
                if escaped {
                    value.append(c)
                    escaped = false
                } else if c == "\\" {
                    escaped = true
                } else if c == "\"" {
                    closed = true
                    break
                } else {
                    value.append(c)
                }
            }
            guard closed else {
                problems.append("\(where_): unterminated value of \(key)")
                return nil
            }
            pairs.append(Assignment(key: key, attribute: attribute, op: op, value: value))
            skipSpaces()
            if rest.isEmpty { return pairs }
            guard rest.first == "," else {
                problems.append("\(where_): expected ',' after \(key)")
                return nil
            }
            rest = rest.dropFirst()
        }
    }

    private mutating func check(_ pairs: [Assignment], _ where_: String) {
        for pair in pairs {
            let key = pair.key
            guard Self.matchOnly.contains(key) || Self.assignOnly.contains(key) || Self.either.contains(key) else {
                problems.append("\(where_): unknown key \(key)")
                continue
            }
            if Self.needsAttribute.contains(key), pair.attribute == nil {
                problems.append("\(where_): \(key) needs an attribute, \(key){name}")
            }
            if pair.attribute != nil, !Self.needsAttribute.contains(key), !Self.mayHaveAttribute.contains(key) {
                problems.append("\(where_): \(key) takes no {attribute}")
            }
            if Self.matchOnly.contains(key), !pair.isMatch {
                problems.append("\(where_): \(key) only matches (== or !=), found \(pair.op)")
            }
            if Self.assignOnly.contains(key), pair.isMatch {
                problems.append("\(where_): \(key) only assigns, found \(pair.op)")
            }
        }
        // The policy of DOMAIN.md: the same chips are in countless devices.
        let matched = Set(pairs.filter { $0.isMatch && $0.op == "==" }.map { "\($0.key){\($0.attribute ?? "")}" })
        let namesSerial = !matched.isDisjoint(with: Self.serialKeys)
        if !matched.isDisjoint(with: Self.chipKeys), !namesSerial {
            problems.append("\(where_): matches a USB chip id without ATTRS{serial} (or ENV{ID_SERIAL_SHORT}): such chips are in countless devices")
        }
        if pairs.contains(where: { $0.key == "ENV" && $0.attribute == "NMBRIDGE_DEVICE" && !$0.isMatch }), !namesSerial {
            problems.append("\(where_): sets NMBRIDGE_DEVICE without naming the adapter's serial (ATTRS{serial} or ENV{ID_SERIAL_SHORT})")
        }
    }
}


/// Runs a program, returning its exit status and combined output.
private func run(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.runBoundToTest()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}
