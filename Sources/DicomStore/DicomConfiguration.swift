import Foundation
import NMBridgeCore

extension DaemonConfiguration {
    /// `[dicom]`: the DICOM C-STORE receiver (docs/configuration.md). Absent: no receiver.
    /// Its outbound part (destinations, routes) is in DicomOutboundConfiguration.swift.
    public struct Dicom: ConfigurationSection {
        public static let key = "dicom"

        public static func read(_ table: ConfigTableReader, context: ConfigurationContext) -> Dicom? {
            DaemonConfiguration.readDicom(table, stateDirectory: context.stateDirectory)
        }

        /// A sender allowed to associate, and the device id its events carry.
        public struct Peer: Sendable, Equatable {
            public var aeTitle: String
            /// When set, the association must also come from this address.
            public var host: String?
            public var device: String

            public init(aeTitle: String, host: String? = nil, device: String) {
                self.aeTitle = aeTitle
                self.host = host
                self.device = device
            }
        }

        /// What to do when an instance arrives whose file exists with other bytes.
        public enum Duplicates: String, Sendable, CaseIterable {
            case replace, keep, reject
        }

        public var aeTitle = "NMBRIDGE"
        public var listen = "0.0.0.0"
        public var port = 11112
        /// Where instances are stored (absolute).
        public var storage: String
        public var peers: [Peer] = []
        /// Accept any calling AE (the demo); its events carry device `dicom-<AE title>`.
        public var acceptAnyCallingAE = false
        /// Accept SOP classes that are not in the standard storage list.
        public var acceptUnknownSOPClasses = false
        /// Transfer syntaxes accepted (nil: the receiver's default list).
        public var transferSyntaxes: [String]?
        /// Storage SOP classes accepted (nil: the receiver's built-in list).
        public var sopClasses: [String]?
        /// Largest P-DATA-TF we receive (announced in the A-ASSOCIATE-AC).
        public var maxPDULength = 262_144
        public var maxAssociations = 16
        /// Seconds to wait for the A-ASSOCIATE-RQ after a connection is accepted (ARTIM).
        public var artimTimeout: Double = 30
        /// Seconds without a PDU after which an association is aborted.
        public var idleTimeout: Double = 300
        /// Seconds without a new instance after which a study is reported stable.
        public var stableAfter: Double = 60
        public var duplicates = Duplicates.replace
        /// DICOM TLS (BCP 195) on a port of its own, when set.
        public var tls: TLS?
        /// Forwarding and RRDSRs: destinations, routes, queue settings (DicomOutboundConfiguration.swift).
        public var outbound = Outbound(cursorFile: "")
        /// The write-ahead spool's size in MiB (`spool_mb`); 0: no spool, each instance is
        /// made durable on its own before its C-STORE response (a file fsync, a rename and
        /// a directory fsync).
        public var spoolMB = 256

        public struct TLS: Sendable, Equatable {
            public var port: Int
            /// PEM files: our certificate chain and its private key.
            public var certificate: String
            public var key: String
            /// When set, senders must present a certificate issued by one of these CAs (PEM).
            public var clientCA: String?

            public init(port: Int, certificate: String, key: String, clientCA: String? = nil) {
                self.port = port
                self.certificate = certificate
                self.key = key
                self.clientCA = clientCA
            }
        }

        public init(storage: String) {
            self.storage = storage
        }
    }

    /// The DICOM receiver, when `[dicom]` is present.
    public var dicom: Dicom? {
        get { self[Dicom.self] }
        set { self[Dicom.self] = newValue }
    }

    /// Reads `[dicom]`; problems go to `table` with key and line.
    static func readDicom(_ table: ConfigTableReader, stateDirectory: String) -> Dicom? {
        var dicom = Dicom(storage: stateDirectory + "/dicom")
        if let title = table.string("ae_title") {
            if isValidAETitle(title) {
                dicom.aeTitle = title
            } else {
                table.problem("ae_title", "\"\(title)\" must be 1–16 printable ASCII characters without backslash or leading/trailing spaces")
            }
        }
        dicom.listen = table.string("listen") ?? dicom.listen
        dicom.port = Int(table.int("port", in: 1...65535) ?? Int64(dicom.port))
        if let storage = table.string("storage") {
            dicom.storage = storage.hasPrefix("/") ? storage : stateDirectory + "/" + storage
        }
        dicom.acceptAnyCallingAE = table.bool("accept_any_calling_ae") ?? false
        dicom.acceptUnknownSOPClasses = table.bool("accept_unknown") ?? false
        if let syntaxes = table.strings("transfer_syntaxes") {
            for syntax in syntaxes where !syntax.allSatisfy({ $0.isNumber || $0 == "." }) || syntax.isEmpty {
                table.problem("transfer_syntaxes", "\"\(syntax)\" is not a transfer syntax UID")
            }
            dicom.transferSyntaxes = syntaxes
        }
        if let classes = table.strings("sop_classes") {
            for uid in classes where uid.isEmpty || !uid.allSatisfy({ $0.isNumber || $0 == "." }) {
                table.problem("sop_classes", "\"\(uid)\" is not a SOP class UID")
            }
            dicom.sopClasses = classes
        }
        dicom.maxPDULength = Int(table.int("max_pdu", in: 4096...4_194_304) ?? Int64(dicom.maxPDULength))
        dicom.maxAssociations = Int(table.int("max_associations", in: 1...256) ?? Int64(dicom.maxAssociations))
        dicom.artimTimeout = table.double("artim_timeout_s", in: 1...3600) ?? dicom.artimTimeout
        dicom.idleTimeout = table.double("idle_timeout_s", in: 1...86_400) ?? dicom.idleTimeout
        dicom.stableAfter = table.double("stable_after_s", in: 1...86_400) ?? dicom.stableAfter
        if let policy = table.choice("duplicates", Dicom.Duplicates.allCases.map(\.rawValue)) {
            dicom.duplicates = Dicom.Duplicates(rawValue: policy)!
        }
        // The write-ahead spool (issue 14).
        if let spool = table.int("spool_mb", in: 0...65_536) {
            if spool > 0, spool < 16 {
                table.problem("spool_mb", "\(spool) is too small: at least 16 (MiB), or 0 for no spool")
            } else {
                dicom.spoolMB = Int(spool)
            }
        }
        if let tls = table.table("tls") {
            let port = tls.int("port", in: 1...65535, required: true)
            let certificate = tls.string("certificate", required: true).map(table.resolvePath)
            let key = tls.string("key", required: true).map(table.resolvePath)
            let clientCA = tls.string("client_ca").map(table.resolvePath)
            for (name, path) in [("certificate", certificate), ("key", key), ("client_ca", clientCA)] {
                if let path, !FileManager.default.isReadableFile(atPath: path) { tls.problem(name, "cannot read \(path)") }
            }
            if port.map(Int.init) == dicom.port { tls.problem("port", "must differ from [dicom] port \(dicom.port)") }
            tls.reportUnknownKeys()
            if let port, let certificate, let key {
                dicom.tls = Dicom.TLS(port: Int(port), certificate: certificate, key: key, clientCA: clientCA)
            }
        }
        var seen: [String: Int] = [:]
        for peer in table.tables("peer", name: { index, t in "peer[\(t["ae_title"]?.string ?? "#\(index + 1)")]" }) {
            let title = peer.string("ae_title", required: true)
            let device = peer.string("device", required: true)
            var host = peer.string("host")
            if let text = host {
                host = IPAddress.canonical(text)
                if host == nil { peer.problem("host", "\"\(text)\" is not an IP address (such as \"10.0.0.5\" or \"fd00::5\")") }
            }
            if let title, !isValidAETitle(title) {
                peer.problem("ae_title", "\"\(title)\" must be 1–16 printable ASCII characters without backslash or leading/trailing spaces")
            } else if let title, let first = seen[title] {
                peer.problem("ae_title", "duplicate peer \"\(title)\" (first on line \(first))")
            }
            if let device, !isValidDeviceID(device) {
                peer.problem("device", "\"\(device)\" must be 1–64 characters of a–z, A–Z, 0–9, '-', '_' or '.'")
            }
            peer.reportUnknownKeys()
            if let title, let device {
                seen[title] = peer.line(of: "ae_title") ?? 0
                dicom.peers.append(Dicom.Peer(aeTitle: title, host: host, device: device))
            }
        }
        dicom.outbound = Dicom.readOutbound(table, aeTitle: dicom.aeTitle, storage: dicom.storage)  // DicomOutboundConfiguration.swift
        if dicom.peers.isEmpty, !dicom.acceptAnyCallingAE {
            table.tableProblem("no [[dicom.peer]] is allowed to send: add one, or set accept_any_calling_ae = true")
        }
        return dicom
    }

    /// AE titles: 1–16 characters of printable ASCII without backslash (PS3.5 §6.2), and
    /// without leading or trailing spaces, which are not significant on the wire (a title
    /// written with them could never match).
    public static func isValidAETitle(_ title: String) -> Bool {
        let bytes = Array(title.utf8)
        return (1...16).contains(bytes.count) && bytes.allSatisfy { (0x20...0x7E).contains($0) && $0 != 0x5C }
            && bytes.first != 0x20 && bytes.last != 0x20
    }
}
