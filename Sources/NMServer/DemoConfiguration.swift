import DicomStore
import DoseCalibrator
import Foundation
import ModbusGantry
import NMBridgeCore
import NMCatalog
import NMQualityControl
import ScriptDriver

/// The configuration of `nmbridged --demo`: no hardware, no root, everything under one
/// state directory. The dose calibrators and the gantry are real drivers talking to
/// instrument simulators (serial protocols on ptys, Modbus TCP on loopback); a flaky
/// device replays a built-in script.
public enum DemoConfiguration {
    /// What the demo runs: the daemon's configuration and the simulators it talks to.
    public struct Demo: Sendable {
        public let configuration: DaemonConfiguration
        /// Tells the simulators where the daemon listens (a demo port 0 is chosen at bind).
        public var listening: @Sendable (Daemon.Listeners) -> Void = { _ in }
        /// Stops the simulators (when the daemon has stopped).
        public let stopSimulators: @Sendable () -> Void
    }

    /// `${TMPDIR:-/tmp}/nmbridge-demo-<uid>`: writable without root, separate per user.
    public static var defaultStateDirectory: String {
        let tmp = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return "\(tmp)/nmbridge-demo-\(getuid())"
    }

    /// The demo's DICOM port unless `nmbridged --demo --dicom-port N` says otherwise.
    public static let defaultDicomPort = 11112

    /// Builds the demo configuration and starts the simulators (stop them when done).
    /// `dicomPort` 0 lets the system pick a free port (`Daemon.Listeners` tells which);
    /// the gantry simulator always gets a free loopback port, the calibrators ptys.
    /// `httpPort`: the API and web dashboard on 127.0.0.1 (0: a free port, in `Daemon.Listeners`),
    /// with a token the demo makes once (`demoTokenFile`).
    public static func make(stateDirectory: String, node: String, dicomPort: Int = defaultDicomPort, httpPort: Int = 0) throws -> Demo {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        let tokenFile = try demoTokenFile(stateDirectory: stateDirectory)
        let hotlab = try DoseCalibratorSimulator(model: .crc15r, script: .demo, link: stateDirectory + "/dosecal-hotlab.tty")
        let pet = try DoseCalibratorSimulator(model: .crc35r, script: .demoPET, link: stateDirectory + "/dosecal-pet.tty")
        let profile = try ModbusProfileLoader.load(path: ModbusProfileLoader.path(forReference: "spect-gantry-example") ?? "spect-gantry-example.toml")
        let gantry = try GantrySimulator(
            profile: profile, transport: .tcp(host: "127.0.0.1", port: 0),
            script: try GantryScript.parse(GantryScript.demoText, source: "builtin:gantry", profile: profile))
        // The instruments are configured as an administrator would write them.
        let instruments = try DaemonConfiguration.load(
            text: """
                [[device]]
                id = "dosecal-hotlab"
                driver = "capintec-crc15r"
                path = "\(hotlab.path)"
                poll_ms = 500

                [[device]]
                id = "dosecal-pet"
                driver = "capintec-crc35r"
                path = "\(pet.path)"
                poll_ms = 500

                [[device]]
                id = "gantry-1"
                driver = "modbus"
                profile = "spect-gantry-example"
                modbus = { tcp = "\(gantry.address)", unit = 1 }
                poll_ms = 250
                """, file: "demo", drivers: .standard, defaultNode: node
        ).devices
        hotlab.start()
        pet.start()
        gantry.start()
        func script(_ name: String) throws -> ScriptDriver.Settings {
            ScriptDriver.Settings(script: try ScriptParser.parse(BuiltinScripts.text(named: name)!, source: "builtin:\(name)", registry: .standard), source: "builtin:\(name)")
        }
        var journal = DaemonConfiguration.Journal(path: stateDirectory + "/journal.db")
        journal.retentionDays = 7
        journal.maxSizeMB = 256
        var supervisor = DaemonConfiguration.Supervisor()
        supervisor.initialBackoff = 2
        supervisor.maxBackoff = 30
        var api = DaemonConfiguration.API(socketPath: stateDirectory + "/api.sock")
        api.tcpHost = "127.0.0.1"
        api.tcpPort = httpPort
        api.tokenFile = tokenFile
        var configuration = DaemonConfiguration(
            daemon: DaemonConfiguration.Daemon(node: node, stateDirectory: stateDirectory),
            journal: journal,
            api: api,
            supervisor: supervisor,
            devices: [
                .init(id: "flaky-1", driver: "script", staleAfter: 5, settings: try script("flaky-demo")),
            ] + instruments,
            demo: true)
        // The DICOM receiver: AE NMBRIDGE on port 11112 (or --dicom-port), any calling AE (DESIGN.md).
        var dicom = DaemonConfiguration.Dicom(storage: stateDirectory + "/dicom")
        dicom.acceptAnyCallingAE = true
        dicom.port = dicomPort
        configuration.dicom = dicom
        // QC: the hot-lab calibrator measures its Cs-137 check source (6.93 MBq) each round;
        // the reference is back-computed so that it passes on any day the demo runs. The PET
        // calibrator's source is never measured: its doses show a missed constancy check.
        var qc = DaemonConfiguration.QualityControl(cursorFile: stateDirectory + "/qc-cursor.json")
        let referenceDate = Date(timeIntervalSince1970: 1_704_067_200)  // 2024-01-01T00:00:00Z
        let cesium = Radionuclide.named("Cs-137")!
        qc.checkSources = [
            .init(
                device: "dosecal-hotlab", nuclide: "Cs-137", referenceBq: 6.90e6 / cesium.decay(1, over: Date().timeIntervalSince(referenceDate)),
                referenceDate: referenceDate, serial: "DEMO-CS137-1"),
            .init(device: "dosecal-pet", nuclide: "Cs-137", referenceBq: 7.4e6, referenceDate: referenceDate, serial: "DEMO-CS137-2"),
        ]
        // Camera QC: the simulated camera (DemoCamera) sends three weeks of daily two-head
        // floods and a COR acquisition to the receiver; head 2 drifts towards its limit.
        var camera = DaemonConfiguration.QualityControl.Camera(id: "demo-camera")
        camera.stationNames = [DemoCamera.stationName]
        qc.cameras = [camera]
        let demoCamera = DemoCamera(port: dicom.port, lastDay: DemoCamera.firstStart(stateDirectory: stateDirectory))
        demoCamera.start()
        configuration.qualityControl = qc
        var demo = Demo(configuration: configuration) {
            hotlab.stop()
            pet.stop()
            gantry.stop()
            demoCamera.stop()
        }
        demo.listening = { listeners in if let port = listeners.dicomPort { demoCamera.receiverListens(on: port) } }
        return demo
    }

    /// The demo's API token, `<state dir>/api.token` (mode 0600), made on first use: the
    /// dashboard's login asks for it.
    static func demoTokenFile(stateDirectory: String) throws -> String {
        let path = stateDirectory + "/api.token"
        if DaemonConfiguration.API.token(path: path).token != nil { return path }
        var generator = SystemRandomNumberGenerator()
        let token = (0..<3).map { _ in String(format: "%016llx", generator.next() as UInt64) }.joined()
        guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw NMBridgeError(.invalidConfiguration, "cannot write the demo's API token to \(path)")
        }
        return path
    }
}
