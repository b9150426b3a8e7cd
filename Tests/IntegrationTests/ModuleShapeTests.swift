import Foundation
import NMBridgeCore
import TestSupport
import Testing

/// Holds the module graph that docs/architecture.md draws: read from Package.swift (as
/// SwiftPM evaluates it, `swift package dump-package`) and from the `import` lines of
/// every source file.
@Suite struct ModuleShapeTests {
    /// A target of Package.swift: its kind, its declared dependencies (targets and
    /// products) and the modules its Swift files import.
    struct Target {
        var name: String
        var kind: String
        var dependencies: Set<String>
        var imports: [String: Set<String>]  // module → files importing it
        var path: String?
    }

    static func loadTargets() async throws -> [String: Target] {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/opt/swift/usr/bin"]
        let swift = try #require(
            directories.map { $0 + "/swift" }.first { FileManager.default.isExecutableFile(atPath: $0) }, "no swift executable on PATH")
        // A scratch path of its own: the running `swift test` holds the lock on .build.
        let scratch = try makeTemporaryDirectory("dump")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let dump = try await runToEnd(
            swift, ["package", "--package-path", repositoryRoot, "--scratch-path", scratch, "dump-package"], includeStandardError: false)
        #expect(dump.status == 0, "swift package dump-package failed")
        let package = try JSONValue.parse(dump.output)
        guard case .array(let list)? = package["targets"] else { throw HarnessError("dump-package: no targets in \(dump.output.prefix(500))") }
        var targets: [String: Target] = [:]
        for item in list {
            let name = try #require(item["name"]?.stringValue)
            let kind = item["type"]?.stringValue ?? ""
            var dependencies: Set<String> = []
            if case .array(let entries)? = item["dependencies"] {
                for entry in entries {
                    // {"byName": ["X", null]}, {"target": ["X", null]}, {"product": ["X", "package", …]}
                    guard case .object(let fields) = entry, let first = fields.first?.value, case .array(let values) = first,
                        let dependency = values.first?.stringValue
                    else { continue }
                    dependencies.insert(dependency)
                }
            }
            let folder = item["path"]?.stringValue ?? (kind == "test" ? "Tests/\(name)" : "Sources/\(name)")
            targets[name] = Target(
                name: name, kind: kind, dependencies: dependencies, imports: try imports(in: repositoryRoot + "/" + folder), path: folder)
        }
        return targets
    }

    /// Module → files, for every `import` line of the Swift files under `folder`.
    static func imports(in folder: String) throws -> [String: Set<String>] {
        var found: [String: Set<String>] = [:]
        guard let files = FileManager.default.enumerator(atPath: folder) else { return found }
        let pattern = /^\s*(?:@\w+\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?import\s+(?:(?:class|struct|enum|protocol|func|var|let|typealias)\s+)?([A-Za-z_][A-Za-z0-9_]*)/
        for case let file as String in files where file.hasSuffix(".swift") {
            let text = try String(contentsOfFile: folder + "/" + file, encoding: .utf8)
            for line in text.split(separator: "\n") {
                if let match = line.firstMatch(of: pattern) { found[String(match.1), default: []].insert(file) }
            }
        }
        return found
    }

    /// The targets `name` depends on, directly or through others.
    static func closure(_ name: String, _ targets: [String: Target]) -> Set<String> {
        var seen: Set<String> = []
        var queue = [name]
        while let next = queue.popLast() {
            for dependency in targets[next]?.dependencies ?? [] where targets[dependency] != nil && seen.insert(dependency).inserted {
                queue.append(dependency)
            }
        }
        return seen
    }

    static let drivers: Set<String> = ["ScriptDriver", "DoseCalibrator", "ModbusGantry", "DicomStore"]
    static let consumers: Set<String> = ["NMJournal", "NMShipper", "NMQualityControl", "NMForward", "NMServer", "NMCatalog"]

    @Test func theModuleGraphKeepsItsShape() async throws {
        let targets = try await Self.loadTargets()
        let project = Set(targets.keys)
        // Core stands on the TOML parser alone; the parser on nothing of ours.
        let core = try #require(targets["NMBridgeCore"])
        let coreMay: Set<String> = ["NMTOML"]
        #expect(core.dependencies.intersection(project).isSubset(of: coreMay), "NMBridgeCore depends on \(core.dependencies.intersection(project).sorted())")
        #expect(Set(core.imports.keys).intersection(project).isSubset(of: coreMay), "NMBridgeCore imports \(Set(core.imports.keys).intersection(project).sorted())")
        let toml = try #require(targets["NMTOML"])
        #expect(toml.dependencies.isDisjoint(with: project), "NMTOML depends on \(toml.dependencies.intersection(project).sorted())")

        // The CLI is a client of the daemon: it never links it.
        #expect(!Self.closure("nmbridge", targets).contains("NMServer"), "nmbridge depends on NMServer: \(Self.closure("nmbridge", targets).sorted())")
        // The API client stands alone (on AsyncHTTPClient, with our own SSE parser), so the benchmarks
        // and the tests use it without the CLI's or the daemon's modules.
        let client = try #require(targets["NMClient"])
        #expect(client.dependencies.isDisjoint(with: project), "NMClient depends on \(client.dependencies.intersection(project).sorted())")
        #expect(client.dependencies.contains("AsyncHTTPClient"), "NMClient is built on AsyncHTTPClient")
        #expect(targets["NMClientTests"]?.dependencies.contains("NMClient") == true, "the client's tests are a target of their own")

        // Data flows one way: drivers know neither each other nor the journal's readers.
        for driver in Self.drivers {
            let reach = Self.closure(driver, targets)
            #expect(reach.isDisjoint(with: Self.drivers.union(Self.consumers)), "\(driver) depends on \(reach.intersection(Self.drivers.union(Self.consumers)).sorted())")
        }

        // Only the composition root (NMServer) and what this build knows (NMCatalog: drivers
        // and event kinds) reach every subsystem.
        let subsystems = Self.drivers.union(["NMJournal", "NMShipper", "NMQualityControl", "NMForward"])
        for target in targets.values where target.kind != "test" && target.path?.hasPrefix("bench/") != true {
            if subsystems.isSubset(of: Self.closure(target.name, targets)) {
                #expect(["NMServer", "NMCatalog", "nmbridged", "nmbridge"].contains(target.name), "\(target.name) reaches every subsystem")
            }
        }

        // One Swift module per C library.
        let cModules = targets.values.filter { $0.kind == "system" || ["CTerminal", "CSpool"].contains($0.name) }.map(\.name)
        #expect(cModules.count >= 5, "\(cModules)")
        for module in cModules {
            let importers = targets.values.filter { $0.imports[module] != nil }.map(\.name)
            #expect(importers.count == 1, "\(module) is imported by \(importers.sorted()), not by exactly one module")
            let dependents = targets.values.filter { $0.dependencies.contains(module) }.map(\.name)
            #expect(dependents == importers, "\(module): declared by \(dependents.sorted()), imported by \(importers.sorted())")
        }
    }

    /// Package.swift says what each module uses: no project module imported without being
    /// declared (it would build only by accident of another dependency), no target
    /// declared and never imported (a stale dependency links code for nothing).
    @Test func declaredDependenciesAreTheImportedOnes() async throws {
        let targets = try await Self.loadTargets()
        let project = Set(targets.keys)
        for target in targets.values.sorted(by: { $0.name < $1.name }) {
            let importedProjectModules = Set(target.imports.keys).intersection(project).subtracting([target.name])
            let undeclared = importedProjectModules.subtracting(target.dependencies)
            #expect(undeclared.isEmpty, "\(target.name) imports \(undeclared.sorted()) without declaring it in Package.swift")
            guard target.kind != "test" else { continue }
            let unused = target.dependencies.filter { target.imports[$0] == nil }
            #expect(unused.isEmpty, "\(target.name) declares \(unused.sorted()) in Package.swift but no file of it imports them")
        }
    }

    /// Which module owns which configuration section (`ConfigurationSection`, by type name):
    /// the subsystem it configures. Core reads only its own tables.
    static let sectionOwners: [String: String] = [
        "Dicom": "DicomStore",
        "QualityControl": "NMQualityControl",
        "Shipper": "NMShipper",
    ]
    static let coreTables: Set<String> = ["daemon", "journal", "api", "supervisor", "device"]

    @Test func eachSubsystemOwnsItsConfigurationSection() async throws {
        let targets = try await Self.loadTargets()
        let conformance = /(?:struct|enum|final class|class|extension)\s+(?:DaemonConfiguration\.)?([A-Za-z_][\w.]*)\s*:[^{]*\bConfigurationSection\b/
        var found: [String: String] = [:]
        for target in targets.values where target.kind != "test" {
            let folder = repositoryRoot + "/" + (target.path ?? "Sources/\(target.name)")
            guard let files = FileManager.default.enumerator(atPath: folder) else { continue }
            for case let file as String in files where file.hasSuffix(".swift") {
                let text = try String(contentsOfFile: folder + "/" + file, encoding: .utf8)
                for match in text.matches(of: conformance) {
                    let type = String(match.1)
                    #expect(found[type] == nil, "\(type) conforms to ConfigurationSection twice")
                    found[type] = target.name
                }
            }
        }
        #expect(found == Self.sectionOwners, "sections found: \(found)")
        // Core reads its own tables only: every other top-level table is some module's section.
        let loader = try String(contentsOfFile: repositoryRoot + "/Sources/NMBridgeCore/DaemonConfiguration.swift", encoding: .utf8)
        let tables = Set(loader.matches(of: /reader\.tables?\("([a-z_]+)"/).map { String($0.1) })
        #expect(tables == Self.coreTables, "DaemonConfiguration.load reads \(tables.sorted())")
    }

    /// Who declares which event kinds: a kind belongs to the module of its longest matching
    /// prefix here. A module declares the kinds it produces (`EventKindRegistry.<module>Kinds`,
    /// in its own sources); `NMCatalog` only assembles them into `EventKindRegistry.standard`.
    static let kindOwners: [String: String] = [
        "daemon": "NMBridgeCore", "device": "NMBridgeCore", "driver": "NMBridgeCore",
        "journal": "NMJournal",
        "shipper": "NMShipper",
        "dosecal": "DoseCalibrator",
        "dicom": "DicomStore", "dicom.forward": "NMForward", "dicom.rrdsr": "NMForward",
        "gantry": "ModbusGantry",
        "qc": "NMQualityControl",
    ]

    static func owner(of kind: String) -> String? {
        var prefix = Substring(kind)
        while true {
            if let owner = kindOwners[String(prefix)] { return owner }
            guard let dot = prefix.lastIndex(of: ".") else { return nil }
            prefix = prefix[..<dot]
        }
    }

    @Test func eachModuleDeclaresItsOwnEventKinds() async throws {
        let targets = try await Self.loadTargets()
        let declaration = /EventKind\(\s*"([a-z0-9_]+(?:\.[a-z0-9_]+)+)"/
        var declared: Set<String> = []
        for target in targets.values where target.kind != "test" {
            let folder = repositoryRoot + "/" + (target.path ?? "Sources/\(target.name)")
            guard let files = FileManager.default.enumerator(atPath: folder) else { continue }
            for case let file as String in files where file.hasSuffix(".swift") {
                let text = try String(contentsOfFile: folder + "/" + file, encoding: .utf8)
                for match in text.matches(of: declaration) {
                    let kind = String(match.1)
                    let owner = Self.owner(of: kind)
                    #expect(owner == target.name, "\(target.name)/\(file) declares \(kind), which kindOwners gives to \(owner ?? "no module")")
                    #expect(declared.insert(kind).inserted, "\(kind) is declared twice")
                }
            }
        }
        #expect(Set(Self.kindOwners.keys).allSatisfy { prefix in declared.contains { $0.hasPrefix(prefix + ".") } }, "declared: \(declared.sorted())")
    }
}
