import Foundation
import NMBridgeCore

extension DaemonConfiguration.QualityControl {
    /// `[[qc.camera]]`: a gamma camera whose QC acquisitions (floods, COR) the QC service
    /// recognizes among the instances it receives and judges (docs/qc.md, "Camera QC").
    public struct Camera: Sendable, Equatable {
        /// Which instances are a kind of QC acquisition: every criterion given must match
        /// (one of its case-insensitive globs); an empty matcher matches nothing.
        public struct Match: Sendable, Equatable {
            public var seriesDescription: [String] = []
            public var protocolName: [String] = []
            public var patientID: [String] = []
            public var patientName: [String] = []
            /// Matched against each value of Image Type (0008,0008), e.g. `TOMO`.
            public var imageType: [String] = []
            public init() {}
            public var isEmpty: Bool {
                seriesDescription.isEmpty && protocolName.isEmpty && patientID.isEmpty && patientName.isEmpty && imageType.isEmpty
            }
        }

        /// Investigate beyond `investigate`, fail beyond `fail` (both inclusive of pass).
        public struct Limit: Sendable, Equatable {
            public var investigate: Double
            public var fail: Double
            public init(investigate: Double, fail: Double) {
                self.investigate = investigate
                self.fail = fail
            }
            /// "pass", "investigate" or "fail" for a value judged by its magnitude.
            public func judge(_ value: Double) -> String { abs(value) > fail ? "fail" : abs(value) > investigate ? "investigate" : "pass" }
        }

        public var id: String
        /// DICOM peer device ids (`[[dicom.peer]] device`) the camera sends as.
        public var devices: [String] = []
        /// Globs on Station Name (0008,1010).
        public var stationNames: [String] = []
        /// The detector heads, 1-based (Detector Vector values).
        public var heads = 2
        public var flood: Match = Camera.defaultFlood
        public var cor: Match = Camera.defaultCOR
        /// NEMA NU 1 integral/differential uniformity limits in % (docs/qc.md has the sources).
        public var ufovIntegral = Limit(investigate: 5, fail: 7)
        public var cfovIntegral = Limit(investigate: 4, fail: 6)
        public var ufovDifferential = Limit(investigate: 4, fail: 6)
        public var cfovDifferential = Limit(investigate: 3.5, fail: 5)
        /// |COR offset| and axial drift in pixels of the acquisition matrix.
        public var corOffsetPx = Limit(investigate: 0.5, fail: 1.0)
        public var axialDriftPx = Limit(investigate: 0.5, fail: 1.0)
        /// The baseline: the median UFOV integral uniformity of this many latest passing floods.
        public var baselineCount = 20
        /// A flood this many percentage points above its baseline is investigated (0: off).
        public var baselineInvestigatePP = 1.5
        /// A flood is `low_counts` when counting noise alone would give at least this
        /// fraction of the UFOV integral investigate limit.
        public var lowCountsFraction = 0.75
        /// The line it was defined on.
        public var line = 0

        public init(id: String) { self.id = id }

        /// The default matchers: floods and COR acquisitions by their series description.
        public static let defaultFlood: Match = {
            var m = Match()
            m.seriesDescription = ["*flood*", "*unif*"]
            return m
        }()
        public static let defaultCOR: Match = {
            var m = Match()
            m.seriesDescription = ["*COR*", "*cent* of rot*"]
            return m
        }()
    }

    /// Reads `[[qc.camera]]` entries of `[qc]`. A `device` must be one the DICOM receiver
    /// can journal: a `[[dicom.peer]]` device, or `dicom-<AE title>` for an unlisted caller
    /// (a camera that matches nothing would silently be judged as patient studies).
    static func readCameras(_ table: ConfigTableReader, root: ConfigTableReader) -> [Camera] {
        let peerDevices = (root.table["dicom"]?.table?["peer"]?.array ?? []).compactMap { $0.table?["device"]?.string }
        var cameras: [Camera] = []
        var seen: [String: Int] = [:]
        for entry in table.tables("camera", name: { index, t in "camera[\(t["id"]?.string ?? "#\(index + 1)")]" }) {
            guard let id = entry.string("id", required: true) else {
                entry.reportUnknownKeys()
                continue
            }
            if let first = seen[id] { entry.problem("id", "duplicate camera \"\(id)\" (first on line \(first))") }
            seen[id] = entry.line(of: "id") ?? 0
            var camera = Camera(id: id)
            camera.line = entry.table.location.line
            camera.devices = stringOrStrings(entry, "device")
            for device in camera.devices where !peerDevices.contains(device) && !device.hasPrefix("dicom-") {
                entry.problem(
                    "device",
                    "\"\(device)\" is not the device of a [[dicom.peer]]"
                        + (peerDevices.isEmpty ? "" : " (\(peerDevices.joined(separator: ", ")))")
                        + "; an unlisted caller is journaled as \"dicom-<AE title>\"; or use station_name")
            }
            camera.stationNames = stringOrStrings(entry, "station_name")
            if camera.devices.isEmpty && camera.stationNames.isEmpty {
                entry.tableProblem("give device (the [[dicom.peer]] device id) and/or station_name to recognize the camera's images")
            }
            camera.heads = Int(entry.int("heads", in: 1...8) ?? 2)
            camera.flood = match(entry, "flood") ?? Camera.defaultFlood
            camera.cor = match(entry, "cor") ?? Camera.defaultCOR
            camera.ufovIntegral = limit(entry, "ufov_integral_pct", camera.ufovIntegral, 0.1...100)
            camera.cfovIntegral = limit(entry, "cfov_integral_pct", camera.cfovIntegral, 0.1...100)
            camera.ufovDifferential = limit(entry, "ufov_differential_pct", camera.ufovDifferential, 0.1...100)
            camera.cfovDifferential = limit(entry, "cfov_differential_pct", camera.cfovDifferential, 0.1...100)
            camera.corOffsetPx = limit(entry, "cor_offset_px", camera.corOffsetPx, 0.01...50)
            camera.axialDriftPx = limit(entry, "axial_drift_px", camera.axialDriftPx, 0.01...50)
            camera.baselineCount = Int(entry.int("baseline_count", in: 1...1000) ?? 20)
            camera.baselineInvestigatePP = entry.double("baseline_investigate_pp", in: 0...100) ?? camera.baselineInvestigatePP
            camera.lowCountsFraction = entry.double("low_counts_fraction", in: 0...10) ?? camera.lowCountsFraction
            entry.reportUnknownKeys()
            cameras.append(camera)
        }
        return cameras
    }

    private static func stringOrStrings(_ table: ConfigTableReader, _ key: String) -> [String] {
        guard let node = table.table[key] else { return [] }
        if node.string != nil { return table.string(key).map { [$0] } ?? [] }
        return table.strings(key) ?? []
    }

    private static func match(_ entry: ConfigTableReader, _ key: String) -> Camera.Match? {
        guard let sub = entry.table(key) else { return nil }
        var m = Camera.Match()
        m.seriesDescription = stringOrStrings(sub, "series_description")
        m.protocolName = stringOrStrings(sub, "protocol_name")
        m.patientID = stringOrStrings(sub, "patient_id")
        m.patientName = stringOrStrings(sub, "patient_name")
        m.imageType = stringOrStrings(sub, "image_type")
        sub.reportUnknownKeys()
        if m.isEmpty { entry.problem(key, "give at least one of series_description, protocol_name, patient_id, patient_name, image_type") }
        return m
    }

    /// `[investigate, fail]`.
    private static func limit(_ entry: ConfigTableReader, _ key: String, _ fallback: Camera.Limit, _ range: ClosedRange<Double>) -> Camera.Limit {
        guard let node = entry.table[key] else { return fallback }
        entry.markUsed(key)
        guard let items = node.array, items.count == 2, let a = items[0].double, let b = items[1].double, range.contains(a), range.contains(b) else {
            entry.problem(key, "expected [investigate, fail], two numbers within \(range.lowerBound)…\(range.upperBound), e.g. [\(fallback.investigate), \(fallback.fail)]")
            return fallback
        }
        guard a <= b else {
            entry.problem(key, "the fail limit \(b) is smaller than the investigate limit \(a)")
            return fallback
        }
        return Camera.Limit(investigate: a, fail: b)
    }
}
