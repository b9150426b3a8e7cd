import DicomStore
import Foundation
import NMCatalog
import NMQualityControl
import ScriptDriver
import TestSupport
import Testing

@testable import NMBridgeCore

let catalog = DriverCatalog([ScriptDriver.self], eventKinds: .standard)

func load(_ text: String) throws(ConfigurationError) -> DaemonConfiguration {
    try DaemonConfiguration.load(
        text: text, file: "test.toml", drivers: catalog, sections: .standard, defaultNode: "host-a", baseDirectory: "/etc/nmbridge")
}

@Suite struct ConfigurationTests {
    @Test func defaultsAndAFullConfiguration() throws {
        let directory = try makeTemporaryDirectory("config")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tokenFile = directory + "/api.token"
        try "0123456789abcdef-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let minimal = try load("")
        #expect(minimal.daemon.node == "host-a")
        #expect(minimal.journal.path == "/var/lib/nmbridge/journal.db")
        #expect(minimal.journal.sync == .full)
        #expect(minimal.journal.retentionDays == 365)
        #expect(minimal.api.socketPath == "/run/nmbridge/api.sock")
        #expect(minimal.api.socketMode == 0o660)
        #expect(minimal.devices.isEmpty)

        let full = try load(
            """
            [daemon]
            node = "spect-ws-01"
            state_dir = "/srv/nmbridge"
            time_zone = "Europe/Berlin"
            [journal]
            sync = "normal"
            retention_days = 0
            max_size_mb = 512
            [api]
            socket = "run/api.sock"
            socket_mode = "0600"
            tcp = "127.0.0.1:8470"
            token_file = "\(tokenFile)"
            [supervisor]
            initial_backoff_s = 0.5
            max_backoff_s = 10
            [[device]]
            id = "replay-1"
            driver = "script"
            builtin = "gantry-demo"
            stale_after_s = 30
            """)
        #expect(full.daemon.node == "spect-ws-01")
        #expect(full.journal.path == "/srv/nmbridge/journal.db")
        #expect(full.journal.sync == .normal)
        #expect(full.journal.retentionDays == nil, "0 means keep forever")
        #expect(full.journal.maxSizeMB == 512)
        #expect(full.api.socketPath == "/etc/nmbridge/run/api.sock", "relative to the configuration file")
        #expect(full.api.socketMode == 0o600)
        #expect(full.api.tcpHost == "127.0.0.1")
        #expect(full.api.tcpPort == 8470)
        #expect(full.api.tokenFile == tokenFile)
        #expect(full.supervisor.maxBackoff == 10)
        #expect(full.devices.map(\.id) == ["replay-1"])
        #expect(full.devices.first?.staleAfter == 30)
        #expect(full.devices.first?.line == 17)
    }

    @Test func everyProblemIsReportedWithKeyAndLine() {
        let text = """
            [daemon]
            nod = "x"
            [journal]
            sync = 1
            max_size_mb = -3
            [api]
            tcp = "localhost"
            [[device]]
            id = "a"
            driver = "script"
            builtin = "nope"
            [[device]]
            id = "a"
            driver = "modbus-magic"
            [[device]]
            driver = "script"
            script = "/nonexistent/file.script"
            [qc]
            enabeld = true
            """
        let error = #expect(throws: ConfigurationError.self) { try load(text) }
        let problems = error?.problems.map(\.description) ?? []
        let expected = [
            "test.toml:2: daemon.nod: unknown key",
            "test.toml:4: journal.sync: expected a string, found integer",
            "test.toml:5: journal.max_size_mb: -3.0 is out of range",
            "test.toml:7: api.tcp: \"localhost\" is not HOST:PORT",
            "test.toml:7: api.tcp: the TCP API requires token_file",
            "test.toml:11: device[a].builtin: no built-in script \"nope\"",
            "test.toml:13: device[a].id: duplicate device id \"a\" (first defined on line 9)",
            "test.toml:14: device[a].driver: unknown driver \"modbus-magic\"; known drivers: script",
            "test.toml:15: device[#3].id: is required",
            "test.toml:17: device[#3].script: cannot read script file /nonexistent/file.script",
            "test.toml:19: qc.enabeld: unknown key",
        ]
        for line in expected {
            #expect(problems.contains { $0.hasPrefix(line) }, "missing: \(line)\nin: \(problems.joined(separator: "\n"))")
        }
        #expect(problems.count == expected.count, "\(problems.joined(separator: "\n"))")
    }

    /// What the daemon would refuse at start, `config check` reports (with key and line).
    @Test func anUnusableTokenFileIsAConfigurationProblem() throws {
        let directory = try makeTemporaryDirectory("config")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let short = directory + "/short.token"
        try "too-short\n".write(toFile: short, atomically: true, encoding: .utf8)
        for (file, message) in [
            (directory + "/missing.token", "cannot read \(directory)/missing.token"),
            (short, "the token in \(short) has 9 characters; it must have at least 16"),
        ] {
            let error = #expect(throws: ConfigurationError.self) {
                try load(
                    """
                    [api]
                    tcp = "127.0.0.1:8470"
                    token_file = "\(file)"
                    """)
            }
            #expect(error?.problems.map(\.description) == ["test.toml:3: api.token_file: \(message)"])
        }
    }

    @Test func qualityControlSettingsAreRead() throws {
        let configuration = try load(
            """
            [[device]]
            id = "dosecal-hotlab"
            driver = "script"
            builtin = "flaky-demo"
            [qc]
            [qc.constancy]
            investigate_pct = 4
            fail_pct = 8.5
            [[qc.check_source]]
            device = "dosecal-hotlab"
            nuclide = "CS137"
            reference_bq = 7.4e6
            reference_date = 2020-01-01T00:00:00Z
            serial = "CS137-0042"
            [qc.reconciliation]
            window_min = 90
            tolerance_pct = 7.5
            [[qc.protocol]]
            name = "in111-octreotide"
            agent = ["*octreo*"]
            nuclide = ["In-111"]
            uptake_min_h = 4
            uptake_max_h = 24
            photopeak_kev = [171, 245]
            window_max_pct = 20
            """)
        let qc = try #require(configuration.qualityControl)
        #expect(qc.investigatePct == 4 && qc.failPct == 8.5)
        #expect(qc.checkSources == [.init(device: "dosecal-hotlab", nuclide: "Cs-137", referenceBq: 7.4e6, referenceDate: Timestamp.parse("2020-01-01T00:00:00Z")!, serial: "CS137-0042")])
        #expect(qc.reconciliationWindowMinutes == 90 && qc.reconciliationTolerancePct == 7.5)
        #expect(qc.protocols.map(\.name) == ["in111-octreotide"], "configured protocols replace the built-in one")
        #expect(qc.protocols[0].uptakeMinutes == 240...1440)
        #expect(qc.protocols[0].photopeaksKeV == [171, 245])
        #expect(qc.cursorFile.hasSuffix("/qc-cursor.json"))
        #expect(try load("[qc]\nenabled = false\n").qualityControl == nil)
        #expect(try load("").qualityControl == nil)
        #expect(try load("[qc]\n").qualityControl?.protocols.map(\.name) == ["tc99m-bone"])
    }

    @Test func qualityControlProblemsNameKeyAndLine() {
        let text = """
            [qc]
            [qc.constancy]
            investigate_pct = 12
            fail_pct = 10
            [[qc.check_source]]
            device = "nowhere"
            nuclide = "Unobtainium-1"
            reference_bq = 7.4e6
            reference_date = "last tuesday"
            [[qc.protocol]]
            name = "bone"
            uptake_min_h = 2
            photopeak_kev = "140"
            window_min_pct = 25
            """
        let error = #expect(throws: ConfigurationError.self) { try load(text) }
        let problems = error?.problems.map(\.description) ?? []
        let expected = [
            "test.toml:4: qc.constancy.fail_pct: 10.0 must not be smaller than investigate_pct 12.0",
            "test.toml:6: qc.check_source[#1].device: \"nowhere\" is not a configured [[device]] id",
            "test.toml:7: qc.check_source[#1].nuclide: \"Unobtainium-1\" is not a nuclide with a known half-life",
            "test.toml:9: qc.check_source[#1].reference_date: \"last tuesday\" is not an RFC 3339 date-time",
            "qc.check_source[#1].serial: is required",
            "test.toml:10: qc.protocol[bone].uptake_max_h: give both uptake_min_h and uptake_max_h",
            "test.toml:13: qc.protocol[bone].photopeak_kev: expected a photopeak in keV",
            "qc.protocol[bone].window_max_pct: 20.0 is smaller than window_min_pct 25.0",
        ]
        for line in expected {
            #expect(problems.contains { $0.contains(line) }, "missing: \(line)\nin: \(problems.joined(separator: "\n"))")
        }
        #expect(problems.count == expected.count, "\(problems.joined(separator: "\n"))")
    }

    @Test func ipAddressesHaveOneSpelling() throws {
        #expect(IPAddress.canonical("10.0.0.5") == "10.0.0.5")
        #expect(IPAddress.canonical("::ffff:10.0.0.5") == "10.0.0.5", "an IPv4 peer on a dual-stack socket")
        #expect(IPAddress.canonical("fe80:0:0:0::1") == "fe80::1")
        #expect(IPAddress.canonical("FD00::5") == "fd00::5")
        for bad in ["", "localhost", "10.0.0", "10.0.0.256", "::g", "10.0.0.5 "] {
            #expect(IPAddress.canonical(bad) == nil, "\(bad)")
        }
        let configuration = try load("[dicom]\n[[dicom.peer]]\nae_title = \"CONSOLE\"\nhost = \"::ffff:10.0.0.5\"\ndevice = \"spect-1\"\n")
        #expect(configuration.dicom?.peers.first?.host == "10.0.0.5")
        let error = #expect(throws: ConfigurationError.self) {
            try load("[dicom]\n[[dicom.peer]]\nae_title = \"CONSOLE\"\nhost = \"console.example\"\ndevice = \"spect-1\"\n")
        }
        #expect(error?.problems.map(\.description) == [
            "test.toml:4: dicom.peer[CONSOLE].host: \"console.example\" is not an IP address (such as \"10.0.0.5\" or \"fd00::5\")"
        ])
    }

    @Test func overlongSocketPathIsAProblem() {
        let long = "/run/" + String(repeating: "n", count: 110) + "/api.sock"
        #expect { try load("[api]\nsocket = \"\(long)\"") } throws: { error in
            "\(error)".contains("test.toml:2: api.socket") && "\(error)".contains("at most 107")
        }
        #expect(throws: Never.self) { try load("[api]\nsocket = \"/run/nmbridge/api.sock\"") }
    }

    @Test func syntaxErrorsAreAllReportedWithLines() {
        let error = #expect(throws: ConfigurationError.self) { try load("[daemon\nnode = spect\n[journal]\nsync = \"full\"\n") }
        let lines = error?.problems.compactMap(\.line) ?? []
        #expect(lines == [1, 2])
    }

    @Test func scriptErrorsNameFileAndLine() throws {
        let dir = FileManager.default.temporaryDirectory.path + "/nmb-cfg-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "link up\nwait 1\nemit dosecal.measurement {\"nuclide\": \"Tc-99m\"}\n".write(toFile: dir + "/bad.script", atomically: true, encoding: .utf8)
        let error = #expect(throws: ConfigurationError.self) {
            try DaemonConfiguration.load(
                text: "[[device]]\nid = \"r\"\ndriver = \"script\"\nscript = \"bad.script\"\n", file: "t.toml", drivers: catalog,
                defaultNode: "h", baseDirectory: dir)
        }
        let message = error?.problems.first?.description ?? ""
        #expect(message.contains("t.toml:4: device[r].script: \(dir)/bad.script:3: dosecal.measurement: missing field \"activity_bq\""), "\(message)")
    }
}

/// The example configuration's `"<FILL IN: …>"` values (docs/nmbridge.example.toml).
@Suite struct PlaceholderTests {
    /// A placeholder is one problem with its key and line, whatever type the key expects;
    /// `<…>` without FILL IN is an ordinary value.
    @Test func aPlaceholderIsOneProblemNamingItsKey() throws {
        let text = """
            [journal]
            retention_days = "<FILL IN: days>"

            [api]
            socket = "<FILL IN: path>"

            [[device]]
            id = "replay-1"
            driver = "script"
            builtin = "dosecal-demo"

            [qc]
            [[qc.check_source]]
            device = "replay-1"
            nuclide = "Cs-137"
            reference_bq = 7.4e6
            reference_date = "<FILL IN: certificate date>"
            serial = "<FILL IN: serial>"

            [daemon]
            state_dir = "/srv/<site>"
            """
        do {
            _ = try load(text)
            Issue.record("a configuration with placeholders loaded")
        } catch {
            let placeholders = error.problems.filter { $0.message.hasPrefix("still the example's placeholder \"<FILL IN") }
            #expect(
                placeholders.map { "\($0.line ?? 0) \($0.key)" } == [
                    "2 journal.retention_days", "5 api.socket", "17 qc.check_source[#1].reference_date", "18 qc.check_source[#1].serial",
                ], "\(error)")
            // Nothing else: no "expected a number" or "not an RFC 3339 date-time" besides.
            #expect(error.problems.count == 4, "\(error)")
        }
    }

    @Test func recognisedOnlyWithFillIn() {
        #expect(ConfigTableReader.isPlaceholder("<FILL IN: the adapter's serial number>"))
        #expect(!ConfigTableReader.isPlaceholder("<(?<activity>[0-9.]+)>"))
        #expect(!ConfigTableReader.isPlaceholder("FILL IN"))
        #expect(!ConfigTableReader.isPlaceholder("<FILL IN: unterminated"))
    }
}

@Suite struct ScriptParserTests {
    @Test func parsesEveryStatement() throws {
        let script = try ScriptParser.parse(
            """
            # comment
            link up "bench power"
            wait 0.5
            emit gantry.acquisition {"state": "started"}
            emit device.protocol_error {"error": "bad checksum"} raw 0241ff03
            heartbeat
            link down cable pulled
            fail "firmware hang"
            loop
            """, source: "s", registry: .standard)
        #expect(
            script.steps == [
                .link(up: true, reason: "bench power"), .wait(0.5), .emit(kind: "gantry.acquisition", data: ["state": "started"], raw: nil),
                .emit(kind: "device.protocol_error", data: ["error": "bad checksum"], raw: [0x02, 0x41, 0xFF, 0x03]), .heartbeat,
                .link(up: false, reason: "cable pulled"), .fail("firmware hang"), .loop,
            ])
        #expect(script.lines == [2, 3, 4, 5, 6, 7, 8, 9])
    }

    @Test func rejectsWhatARealDriverCouldNotDo() {
        let cases: [(String, Int, String)] = [
            ("wait -1", 1, "wait needs a number"),
            ("\n\nemit dosecal.measurment {}", 3, "not registered"),
            ("emit gantry.motion [1,2]", 1, "one JSON object"),
            ("emit gantry.motion {\"state\": 3}", 1, "should be string"),
            ("emit experimental.x {} raw xyz", 1, "raw must be hex"),
            ("jump 3", 1, "unknown statement"),
            ("emit experimental.x {}\nloop", 2, "needs a wait > 0 before loop"),
            ("heartbeat\nloop\nwait 1", 3, "unreachable"),
            ("emit experimental.x\r\u{1}id {}", 1, "not registered"),
            ("# only a comment", 1, "no statements"),
        ]
        for (text, line, message) in cases {
            do {
                _ = try ScriptParser.parse(text, source: "f.script", registry: .standard)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.line == line, "\(text): \(error)")
                #expect(error.description.hasPrefix("f.script:\(line): "), "\(error)")
                #expect(error.message.contains(message), "\(text): \(error.message)")
            }
        }
    }

    @Test func builtinScriptsParse() throws {
        for name in BuiltinScripts.names {
            let text = try #require(BuiltinScripts.text(named: name))
            #expect(try ScriptParser.parse(text, source: name, registry: .standard).steps.isEmpty == false)
        }
    }
}

@Suite struct EventModelTests {
    @Test func docsEventsMdMatchesTheRegistry() throws {
        let doc = try String(contentsOfFile: repositoryRoot + "/docs/events.md", encoding: .utf8)
        #expect(doc == EventKindRegistry.standard.markdown(), "docs/events.md is stale: regenerate it with `nmbridge kinds --markdown > docs/events.md`")
    }

    @Test func registryChecksKindsAndFields() {
        let registry = EventKindRegistry.standard
        #expect(registry.accepts("dosecal.measurement"))
        #expect(registry.accepts("experimental.anything"))
        #expect(!registry.accepts("experimental."))
        #expect(!registry.accepts("dosecal.measurment"))
        #expect(!registry.accepts("experimental.x\rid:99"), "kinds go into SSE lines: plain characters only")
        #expect(!registry.accepts("experimental.Upper"))
        #expect(registry.problems(kind: "device.stale", data: ["silent_s": 3, "stale_after_s": 2]).isEmpty)
        #expect(registry.problems(kind: "device.stale", data: ["silent_s": "3"]) == [
            "device.stale: field \"silent_s\" should be number, got string", "device.stale: missing field \"stale_after_s\"",
        ])
        let names = registry.kinds.map(\.name)
        #expect(Set(names).count == names.count, "no kind registered twice")
        for kind in registry.kinds {
            for field in kind.fields where field.unit != nil {
                // A rate names both units: mm/s → `_mm_per_s`, MBq/kg → `_mbq_per_kg`.
                let suffix = field.unit == "%" ? "pct" : field.unit!.lowercased().replacingOccurrences(of: "/", with: "_per_")
                #expect(field.name.hasSuffix("_" + suffix), "\(kind.name).\(field.name) carries its unit in the name")
            }
        }
    }

    @Test func jsonSerializationIsCanonicalAndEscapes() throws {
        let value: JSONValue = ["b": 1, "a": [true, nil, 2.5, "x\"y\\z\n\u{01}é"], "big": 7.4e8, "nan": .double(.nan), "small": 1e-7]
        #expect(value.jsonText == #"{"a":[true,null,2.5,"x\"y\\z\n\u0001é"],"b":1,"big":740000000,"nan":null,"small":1e-07}"#)
        let back = try JSONValue.parse(value.jsonText)
        #expect(back["a"] == value["a"])
        #expect(back["big"]?.doubleValue == 7.4e8)
    }

    @Test func timestampsRoundTripAndParseTheUsualForms() throws {
        for text in ["2026-11-29T07:00:00.123456Z", "1970-01-01T00:00:00.000000Z", "2024-02-29T23:59:59.999999Z", "1999-12-31T00:00:00.000001Z"] {
            #expect(Timestamp.format(try #require(Timestamp.parse(text))) == text)
        }
        // Out-of-range dates are clamped to the four-digit years, never wider.
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1e12)) == "9999-12-31T23:59:59.999999Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -1e12)) == "0001-01-01T00:00:00.000000Z")
        #expect(Timestamp.format(.distantFuture) == "4001-01-01T00:00:00.000000Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: .nan)) == "0001-01-01T00:00:00.000000Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: .infinity)) == "9999-12-31T23:59:59.999999Z")
        #expect(Timestamp.parse("2026-11-29T08:00:00+01:00") == Timestamp.parse("2026-11-29T07:00:00Z"))
        #expect(Timestamp.parse("2026-11-29 07:00:00Z") == Timestamp.parse("2026-11-29T07:00:00Z"))
        #expect(Timestamp.parse("2026-11-29") == Timestamp.parse("2026-11-29T00:00:00Z"))
        for bad in ["", "2026-13-01", "2026-02-30", "2026-11-29T25:00:00Z", "2026-11-29T07:00:00", "yesterday", "2026-11-29T07:00:00.Z"] {
            #expect(Timestamp.parse(bad) == nil, "\(bad)")
        }
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(Timestamp.parseTimeSpec("2h", now: now) == now.addingTimeInterval(-7200))
        #expect(Timestamp.parseTimeSpec("7d", now: now) == now.addingTimeInterval(-7 * 86_400))
        #expect(Timestamp.parseTimeSpec("soon", now: now) == nil)
    }

    @Test func globMatchesLikeSQLite() {
        #expect(Glob.matches(pattern: "dosecal.*", "dosecal.measurement"))
        #expect(Glob.matches(pattern: "*.fault.*", "gantry.fault.raised"))
        #expect(Glob.matches(pattern: "device.?tale", "device.stale"))
        #expect(!Glob.matches(pattern: "dosecal.*", "gantry.state"))
        #expect(!Glob.matches(pattern: "device", "device.stale"))
        #expect(Glob.matches(pattern: "*", ""))
    }
}
