import Foundation
import NMBridgeCore

extension DaemonConfiguration.Dicom {
    /// What `[dicom]` says about sending onward: `[[dicom.destination]]`, `[[dicom.route]]`
    /// and `[dicom.outbound]` (docs/configuration.md, "Forwarding"). Empty: nothing is sent.
    public struct Outbound: Sendable {
        public var destinations: [Destination] = []
        public var routes: [Route] = []
        /// Seconds before the first retry of a destination that failed; doubled per failure.
        public var initialBackoff: Double = 2
        /// The longest wait between two attempts.
        public var maxBackoff: Double = 300
        /// A job still undelivered this long after it was queued is given up (journaled).
        public var giveUpAfter: Double = 7 * 86_400
        /// Jobs sent on one association at most (then it is released and a new one opened).
        public var batchSize = 1000
        /// Where the queue's cursor file is kept (the journal holds the jobs themselves).
        public var cursorFile: String
        /// Build a Radiopharmaceutical Radiation Dose SR for each reconciled administration.
        public var rrdsr = false
        /// Series Number of the RRDSR series.
        public var rrdsrSeriesNumber = 9901

        public init(cursorFile: String) {
            self.cursorFile = cursorFile
        }

        /// Whether anything is configured that the outbound service has to do.
        public var isActive: Bool { !destinations.isEmpty || rrdsr }
    }

    /// `[[dicom.destination]]`: a DICOM peer that instances and reports are sent to.
    public struct Destination: Sendable, Equatable {
        /// The name routes use (also the `destination` of dicom.forward.* events).
        public var name: String
        /// The peer's AE title (Called AE).
        public var aeTitle: String
        public var host: String
        public var port: Int
        /// Our AE title on these associations (Calling AE); `[dicom] ae_title` by default.
        public var callingAE: String
        /// Seconds to connect and to get the A-ASSOCIATE answer.
        public var connectTimeout: Double = 10
        /// Seconds without any byte moving after which an association is aborted.
        public var timeout: Double = 60
        /// DICOM TLS (BCP 195) to this peer, when set.
        public var tls: TLS?
        /// The TOML line, for messages.
        public var line: Int?

        public struct TLS: Sendable, Equatable {
            /// PEM file of the CAs that may have issued the peer's certificate (system roots when nil).
            public var ca: String?
            /// Our client certificate and key (PEM), for peers that require one.
            public var certificate: String?
            public var key: String?
            /// Check that the peer's certificate names `host` (or this name).
            public var verifyHostname: Bool = false
            public var serverName: String?

            public init(ca: String? = nil, certificate: String? = nil, key: String? = nil) {
                self.ca = ca
                self.certificate = certificate
                self.key = key
            }
        }

        public init(name: String, aeTitle: String, host: String, port: Int, callingAE: String) {
            self.name = name
            self.aeTitle = aeTitle
            self.host = host
            self.port = port
            self.callingAE = callingAE
        }
    }

    /// `[[dicom.route]]`: which received instances go to which destinations, and when.
    public struct Route: Sendable, Equatable {
        public enum When: String, Sendable, CaseIterable {
            /// Each instance as soon as it is stored.
            case instance
            /// A study's instances once the study is stable (`dicom.study.stable`).
            case stable
        }

        public var name: String
        public var destinations: [String]
        /// Case-insensitive globs; an empty list matches everything.
        public var devices: [String] = []
        public var modalities: [String] = []
        public var seriesDescriptions: [String] = []
        public var studyDescriptions: [String] = []
        public var when = When.instance
        /// Forward received instances (false: the route only sends RRDSRs).
        public var instances = true
        /// Send the RRDSRs of the studies this route matches.
        public var rrdsr = false
        /// Also forward camera QC acquisitions (floods, COR), which are left out otherwise.
        public var qualityControl = false

        public init(name: String, destinations: [String]) {
            self.name = name
            self.destinations = destinations
        }
    }

    /// Reads `[[dicom.destination]]`, `[[dicom.route]]` and `[dicom.outbound]` of `[dicom]`.
    static func readOutbound(_ table: ConfigTableReader, aeTitle: String, storage: String) -> Outbound {
        var outbound = Outbound(cursorFile: storage + "/.outbound-cursor.json")
        if let settings = table.table("outbound") {
            outbound.initialBackoff = settings.double("initial_backoff_s", in: 0.1...3600) ?? outbound.initialBackoff
            outbound.maxBackoff = settings.double("max_backoff_s", in: 0.1...86_400) ?? outbound.maxBackoff
            outbound.giveUpAfter = (settings.double("give_up_after_h", in: 0.01...8760).map { $0 * 3600 }) ?? outbound.giveUpAfter
            outbound.batchSize = Int(settings.int("batch_size", in: 1...100_000) ?? Int64(outbound.batchSize))
            outbound.rrdsr = settings.bool("rrdsr") ?? false
            outbound.rrdsrSeriesNumber = Int(settings.int("rrdsr_series_number", in: 1...99_999) ?? Int64(outbound.rrdsrSeriesNumber))
            if let file = settings.string("cursor_file") {
                outbound.cursorFile = file.hasPrefix("/") ? file : storage + "/" + file
            }
            settings.reportUnknownKeys()
        }
        var names: [String: Int] = [:]
        for entry in table.tables("destination", name: { index, t in "destination[\(t["name"]?.string ?? "#\(index + 1)")]" }) {
            let name = entry.string("name", required: true)
            let title = entry.string("ae_title", required: true)
            let host = entry.string("host", required: true)
            let port = entry.int("port", in: 1...65535, required: true)
            let calling = entry.string("calling_ae") ?? aeTitle
            if let name {
                if !DaemonConfiguration.isValidDeviceID(name) {
                    entry.problem("name", "\"\(name)\" must be 1–64 characters of a–z, A–Z, 0–9, '-', '_' or '.'")
                } else if let first = names[name] {
                    entry.problem("name", "duplicate destination \"\(name)\" (first on line \(first))")
                }
            }
            for (key, value) in [("ae_title", title), ("calling_ae", calling)] {
                if let value, !DaemonConfiguration.isValidAETitle(value) {
                    entry.problem(key, "\"\(value)\" must be 1–16 printable ASCII characters without backslash or leading/trailing spaces")
                }
            }
            if let host, host.isEmpty { entry.problem("host", "must not be empty") }
            var destination: Destination?
            if let name, let title, let host, let port {
                var d = Destination(name: name, aeTitle: title, host: host, port: Int(port), callingAE: calling)
                d.connectTimeout = entry.double("connect_timeout_s", in: 0.1...600) ?? d.connectTimeout
                d.timeout = entry.double("timeout_s", in: 1...86_400) ?? d.timeout
                d.line = entry.table.location.line
                destination = d
            }
            if entry.table["tls"]?.bool != nil {
                if entry.bool("tls") == true { destination?.tls = Destination.TLS() }
            } else if let tls = entry.table("tls") {
                var settings = Destination.TLS(
                    ca: tls.string("ca").map(table.resolvePath), certificate: tls.string("certificate").map(table.resolvePath),
                    key: tls.string("key").map(table.resolvePath))
                settings.verifyHostname = tls.bool("verify_hostname") ?? false
                settings.serverName = tls.string("server_name")
                for (key, path) in [("ca", settings.ca), ("certificate", settings.certificate), ("key", settings.key)] {
                    if let path, !FileManager.default.isReadableFile(atPath: path) { tls.problem(key, "cannot read \(path)") }
                }
                if (settings.certificate == nil) != (settings.key == nil) {
                    tls.tableProblem("certificate and key go together: give both or neither")
                }
                tls.reportUnknownKeys()
                destination?.tls = settings
            }
            entry.reportUnknownKeys()
            if let destination {
                names[destination.name] = destination.line ?? 0
                outbound.destinations.append(destination)
            }
        }
        for entry in table.tables("route", name: { index, t in "route[\(t["name"]?.string ?? "#\(index + 1)")]" }) {
            let name = entry.string("name") ?? "route-\(outbound.routes.count + 1)"
            let destinations = entry.strings("destinations", required: true) ?? []
            for destination in destinations where names[destination] == nil {
                entry.problem("destinations", "no [[dicom.destination]] is named \"\(destination)\"")
            }
            if destinations.isEmpty, entry.has("destinations") { entry.problem("destinations", "names no destination") }
            var route = Route(name: name, destinations: destinations)
            route.devices = entry.strings("devices") ?? []
            route.modalities = entry.strings("modalities") ?? []
            route.seriesDescriptions = entry.strings("series_descriptions") ?? []
            route.studyDescriptions = entry.strings("study_descriptions") ?? []
            if let when = entry.choice("when", Route.When.allCases.map(\.rawValue)) { route.when = Route.When(rawValue: when)! }
            route.instances = entry.bool("instances") ?? true
            route.rrdsr = entry.bool("rrdsr") ?? false
            route.qualityControl = entry.bool("qc_acquisitions") ?? false
            entry.reportUnknownKeys()
            outbound.routes.append(route)
        }
        if outbound.routes.contains(where: \.rrdsr) { outbound.rrdsr = true }
        return outbound
    }
}
