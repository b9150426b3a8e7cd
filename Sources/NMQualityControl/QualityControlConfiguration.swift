import Foundation
import NMBridgeCore
import NMTOML

extension DaemonConfiguration {
    /// `[qc]`: the quality-control service (docs/qc.md). Absent or `enabled = false`: off.
    public struct QualityControl: ConfigurationSection, Equatable {
        public static let key = "qc"

        public static func read(_ table: ConfigTableReader, context: ConfigurationContext) -> QualityControl? {
            DaemonConfiguration.readQualityControl(table, context: context)
        }

        /// A long-lived source measured every day of use on one calibrator.
        public struct CheckSource: Sendable, Equatable {
            public var device: String
            /// Canonical nuclide name (Cs-137, Co-57, Ba-133…).
            public var nuclide: String
            public var referenceBq: Double
            public var referenceDate: Date
            public var serial: String
            /// Readings of this source on other settings (`[[qc.check_source.reading]]`,
            /// QualityControlConfiguration+Dosecal.swift).
            public var readings: [SettingReading] = []

            public init(device: String, nuclide: String, referenceBq: Double, referenceDate: Date, serial: String) {
                self.device = device
                self.nuclide = nuclide
                self.referenceBq = referenceBq
                self.referenceDate = referenceDate
                self.serial = serial
            }
        }

        /// Which series a protocol applies to and what it expects of them. A criterion left
        /// empty matches everything; a series must match every criterion given (one of its
        /// patterns each). Patterns are case-insensitive globs (`*bone*`).
        public struct ProtocolRule: Sendable, Equatable {
            public var name: String
            /// Matched against the series description and the study description.
            public var descriptions: [String] = []
            /// Matched against the radiopharmaceutical (agent) name.
            public var agents: [String] = []
            public var modalities: [String] = []
            /// Canonical nuclide names.
            public var nuclides: [String] = []
            /// Acquisition minus injection, in minutes; nil: no uptake-delay check.
            public var uptakeMinutes: ClosedRange<Double>?
            /// Photopeaks that need a window; empty: no energy-window check.
            public var photopeaksKeV: [Double] = []
            /// Window width as a percentage of the photopeak (upper − lower over the peak).
            public var windowWidthPct: ClosedRange<Double> = 15...20
            /// How far the window's centre may be from the photopeak, percent of the peak.
            public var windowCenterTolerancePct = 2.0
            /// The line it was defined on (0: built in).
            public var line = 0

            // Study-level judging and protocol parameters (docs/qc.md, "Studies").
            /// Image Type (0008,0008) values, case-insensitive globs, that make a series the
            /// study's primary acquisition; empty: the first acquired series is the primary.
            public var primaryImageTypes: [String] = []
            /// Photopeaks per canonical nuclide: each radiopharmaceutical of the header gets
            /// its own energy-window finding. Used instead of `photopeaksKeV` when not empty.
            public var photopeaksByNuclide: [String: [Double]] = [:]
            /// Administered activity limits in MBq (header Radionuclide Total Dose); nil: unchecked.
            public var activityMinMBq: Double?
            public var activityMaxMBq: Double?
            /// Weight-based activity: Patient's Weight × this, clamped to the limits above,
            /// ± `activityTolerancePct`. Without a weight in the header the limits apply.
            public var activityMBqPerKg: Double?
            public var activityTolerancePct = 10.0
            /// Whole-body scan speed limits in cm/min; nil: unchecked.
            public var scanSpeedCmPerMin: ClosedRange<Double>?
            /// Collimator names (globs, case-insensitive) every detector must have; empty: unchecked.
            public var collimators: [String] = []

            /// Whether any administered-activity limit is set.
            public var checksActivity: Bool { activityMinMBq != nil || activityMaxMBq != nil || activityMBqPerKg != nil }

            public init(name: String) { self.name = name }

            /// The protocol used when none is configured: whole-body bone scintigraphy with
            /// Tc-99m MDP/HDP (EANM 2016 / SNMMI): delayed images 2–5 h after injection, a
            /// 15–20 % window centred on 140 keV.
            public static let boneScan: ProtocolRule = {
                var rule = ProtocolRule(name: "tc99m-bone")
                rule.agents = ["*MDP*", "*HDP*", "*medronate*", "*oxidronate*", "*diphosphonate*"]
                rule.nuclides = ["Tc-99m"]
                rule.modalities = ["NM"]
                rule.uptakeMinutes = 120...300
                rule.photopeaksKeV = [140]
                rule.primaryImageTypes = ["WHOLE BODY"]
                return rule
            }()
        }

        public var investigatePct = 5.0
        public var failPct = 10.0
        public var checkSources: [CheckSource] = []
        /// Minutes before the injection in which the syringe measurement is looked for.
        public var reconciliationWindowMinutes = 120.0
        public var reconciliationTolerancePct = 10.0
        /// Minutes after the injection in which a residual measurement is looked for.
        public var residualWindowMinutes = 30.0
        public var protocols: [ProtocolRule] = [.boneScan]
        /// Where the cursor is kept (absolute).
        public var cursorFile: String
        /// `[[qc.camera]]`: gamma cameras whose QC acquisitions are judged (camera QC).
        public var cameras: [Camera] = []
        /// `[[qc.reference_source]]` and `[qc.dosecal]`: accuracy, linearity, Mo-99, due dates.
        public var referenceSources: [ReferenceSource] = []
        public var dosecal = DosecalTests()

        public init(cursorFile: String) { self.cursorFile = cursorFile }
    }

    /// The QC service, when `[qc]` is present and enabled.
    public var qualityControl: QualityControl? {
        get { self[QualityControl.self] }
        set { self[QualityControl.self] = newValue }
    }

    /// Reads `[qc]`; problems go to `table` with key and line. `nil` when disabled.
    static func readQualityControl(_ table: ConfigTableReader, context: ConfigurationContext) -> QualityControl? {
        let (stateDirectory, deviceIDs) = (context.stateDirectory, context.deviceIDs)
        var qc = QualityControl(cursorFile: stateDirectory + "/qc-cursor.json")
        let enabled = table.bool("enabled") ?? true
        if let file = table.string("cursor_file") {
            qc.cursorFile = file.hasPrefix("/") ? file : stateDirectory + "/" + file
        }
        if let constancy = table.table("constancy") {
            qc.investigatePct = constancy.double("investigate_pct", in: 0.1...100) ?? qc.investigatePct
            qc.failPct = constancy.double("fail_pct", in: 0.1...100) ?? qc.failPct
            if qc.failPct < qc.investigatePct {
                constancy.problem("fail_pct", "\(qc.failPct) must not be smaller than investigate_pct \(qc.investigatePct)")
            }
            constancy.reportUnknownKeys()
        }
        if let reconciliation = table.table("reconciliation") {
            qc.reconciliationWindowMinutes = reconciliation.double("window_min", in: 1...(7 * 1440)) ?? qc.reconciliationWindowMinutes
            qc.reconciliationTolerancePct = reconciliation.double("tolerance_pct", in: 0.1...100) ?? qc.reconciliationTolerancePct
            qc.residualWindowMinutes = reconciliation.double("residual_window_min", in: 0...1440) ?? qc.residualWindowMinutes
            reconciliation.reportUnknownKeys()
        }
        // A serial still holding the example's placeholder does not name the table.
        let serialName: (TOMLTable) -> String? = { t in t["serial"]?.string.flatMap { ConfigTableReader.isPlaceholder($0) ? nil : $0 } }
        for source in table.tables("check_source", name: { index, t in "check_source[\(serialName(t) ?? "#\(index + 1)")]" }) {
            let device = source.string("device", required: true)
            let nuclideText = source.string("nuclide", required: true)
            let reference = source.double("reference_bq", in: 1...1e15, required: true)
            let serial = source.string("serial", required: true)
            var referenceDate: Date?
            if let node = source.table["reference_date"] {
                source.markUsed("reference_date")
                if let stamp = node.dateTime {
                    referenceDate = stamp.date
                    if stamp.date == nil {
                        source.problem("reference_date", "\(stamp.text) names no moment: give a zone, e.g. \(stamp.text)Z")
                    }
                } else if let text = node.string {
                    referenceDate = Timestamp.parse(text)
                    if referenceDate == nil {
                        source.problem("reference_date", "\"\(text)\" is not an RFC 3339 date-time such as \"2020-01-01T00:00:00Z\"")
                    }
                } else {
                    source.problem("reference_date", "expected a date-time such as \"2020-01-01T00:00:00Z\"")
                }
            } else {
                source.problem("reference_date", "required key is missing")
            }
            var nuclide: String?
            if let nuclideText {
                nuclide = Radionuclide.canonicalName(nuclideText)
                if nuclide == nil || Radionuclide.named(nuclide!) == nil {
                    source.problem(
                        "nuclide", "\"\(nuclideText)\" is not a nuclide with a known half-life (\(Radionuclide.known.map(\.name).joined(separator: ", ")))")
                    nuclide = nil
                }
            }
            if let device, !deviceIDs.contains(device) {
                source.problem("device", "\"\(device)\" is not a configured [[device]] id")
            }
            let readings = QualityControl.readSettingReadings(source)
            source.reportUnknownKeys()
            if let device, let nuclide, let reference, let referenceDate, let serial {
                var checkSource = QualityControl.CheckSource(device: device, nuclide: nuclide, referenceBq: reference, referenceDate: referenceDate, serial: serial)
                checkSource.readings = readings
                qc.checkSources.append(checkSource)
            }
        }
        let protocolTables = table.tables("protocol", name: { index, t in "protocol[\(t["name"]?.string ?? "#\(index + 1)")]" })
        if !protocolTables.isEmpty { qc.protocols = [] }
        var protocolLines: [String: Int] = [:]
        for entry in protocolTables {
            guard let name = entry.string("name", required: true) else {
                entry.reportUnknownKeys()
                continue
            }
            if let first = protocolLines[name] {
                entry.problem("name", "duplicate protocol \"\(name)\" (first on line \(first))")
            }
            protocolLines[name] = entry.line(of: "name") ?? 0
            var rule = QualityControl.ProtocolRule(name: name)
            rule.line = entry.table.location.line
            rule.descriptions = entry.strings("description") ?? []
            rule.agents = entry.strings("agent") ?? []
            rule.modalities = (entry.strings("modality") ?? []).map { $0.uppercased() }
            for text in entry.strings("nuclide") ?? [] {
                if let canonical = Radionuclide.canonicalName(text) {
                    rule.nuclides.append(canonical)
                } else {
                    entry.problem("nuclide", "\"\(text)\" is not a nuclide name such as \"Tc-99m\"")
                }
            }
            let low = entry.double("uptake_min_h", in: 0...(24 * 14))
            let high = entry.double("uptake_max_h", in: 0...(24 * 14))
            switch (low, high) {
            case (let low?, let high?) where low <= high: rule.uptakeMinutes = (low * 60)...(high * 60)
            case (let low?, let high?): entry.problem("uptake_max_h", "\(high) is smaller than uptake_min_h \(low)")
            case (nil, nil): break
            default: entry.problem(low == nil ? "uptake_min_h" : "uptake_max_h", "give both uptake_min_h and uptake_max_h")
            }
            if let peaks = entry.table["photopeak_kev"] {
                entry.markUsed("photopeak_kev")
                if let perNuclide = peaks.table {
                    // { "Tc-99m" = 140, "In-111" = [171, 245] }: per radiopharmaceutical.
                    for item in perNuclide.entries {
                        let values = Self.numbers(item.node)
                        guard let nuclide = Radionuclide.canonicalName(item.key) else {
                            entry.problem("photopeak_kev", "\"\(item.key)\" is not a nuclide name such as \"Tc-99m\"")
                            continue
                        }
                        if values.isEmpty || values.contains(where: { !(1...2000).contains($0) }) {
                            entry.problem("photopeak_kev", "\(item.key): expected a photopeak in keV (1–2000) or a list of them, e.g. [171, 245]")
                        } else {
                            rule.photopeaksByNuclide[nuclide] = values
                        }
                    }
                } else {
                    let values = Self.numbers(peaks)
                    if values.isEmpty || values.contains(where: { !(1...2000).contains($0) }) {
                        entry.problem(
                            "photopeak_kev",
                            "expected a photopeak in keV (1–2000), a list of them, e.g. [171, 245], or a table by nuclide, e.g. { \"Tc-99m\" = 140, \"In-111\" = [171, 245] }")
                    } else {
                        rule.photopeaksKeV = values
                    }
                }
            }
            Self.readProtocolParameters(entry, into: &rule)
            let minWidth = entry.double("window_min_pct", in: 0.1...100) ?? rule.windowWidthPct.lowerBound
            let maxWidth = entry.double("window_max_pct", in: 0.1...100) ?? rule.windowWidthPct.upperBound
            if minWidth <= maxWidth {
                rule.windowWidthPct = minWidth...maxWidth
            } else {
                entry.problem("window_max_pct", "\(maxWidth) is smaller than window_min_pct \(minWidth)")
            }
            rule.windowCenterTolerancePct = entry.double("window_center_tolerance_pct", in: 0...50) ?? rule.windowCenterTolerancePct
            entry.reportUnknownKeys()
            qc.protocols.append(rule)
        }
        qc.cameras = QualityControl.readCameras(table, root: context.root)  // camera QC (QualityControlConfiguration+Camera.swift)
        QualityControl.readDosecal(table, deviceIDs: deviceIDs, into: &qc)  // QualityControlConfiguration+Dosecal.swift
        return enabled ? qc : nil
    }

    /// The study-level keys of a `[[qc.protocol]]` (docs/qc.md, "Protocol parameters").
    private static func readProtocolParameters(_ entry: ConfigTableReader, into rule: inout QualityControl.ProtocolRule) {
        if let types = entry.strings("primary_image_type") { rule.primaryImageTypes = types }
        rule.activityMinMBq = entry.double("activity_min_mbq", in: 0.001...1e6)
        rule.activityMaxMBq = entry.double("activity_max_mbq", in: 0.001...1e6)
        if let low = rule.activityMinMBq, let high = rule.activityMaxMBq, low > high {
            entry.problem("activity_max_mbq", "\(high) is smaller than activity_min_mbq \(low)")
        }
        rule.activityMBqPerKg = entry.double("activity_mbq_per_kg", in: 0.001...1000)
        rule.activityTolerancePct = entry.double("activity_tolerance_pct", in: 0...100) ?? rule.activityTolerancePct
        let slow = entry.double("scan_speed_min_cm_per_min", in: 0.1...1000)
        let fast = entry.double("scan_speed_max_cm_per_min", in: 0.1...1000)
        switch (slow, fast) {
        case (let slow?, let fast?) where slow <= fast: rule.scanSpeedCmPerMin = slow...fast
        case (let slow?, let fast?): entry.problem("scan_speed_max_cm_per_min", "\(fast) is smaller than scan_speed_min_cm_per_min \(slow)")
        case (nil, nil): break
        default:
            entry.problem(slow == nil ? "scan_speed_min_cm_per_min" : "scan_speed_max_cm_per_min", "give both scan_speed_min_cm_per_min and scan_speed_max_cm_per_min")
        }
        if let names = entry.strings("collimator") { rule.collimators = names }
    }

    /// A number or an array of numbers; empty if anything else.
    private static func numbers(_ node: TOMLNode) -> [Double] {
        if let single = node.double { return [single] }
        guard let items = node.array else { return [] }
        var values: [Double] = []
        for item in items {
            guard let value = item.double else { return [] }
            values.append(value)
        }
        return values
    }
}
