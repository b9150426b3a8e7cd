import Crypto
import Foundation
import NMBridgeCore

/// A coded concept: (code value, coding scheme designator, code meaning).
public struct CodedConcept: Sendable, Equatable, CustomStringConvertible {
    public var value: String
    public var scheme: String
    public var meaning: String

    public init(_ value: String, _ scheme: String, _ meaning: String) {
        self.value = value
        self.scheme = scheme
        self.meaning = meaning
    }

    public var description: String { "(\(value), \(scheme), \"\(meaning)\")" }

    /// The first item of a code sequence in a dataset.
    static func first(_ dataset: Dataset, _ tag: Tag) -> CodedConcept? {
        guard let item = dataset.items(tag).first, let value = item.string(Tag(0x0008, 0x0100)),
            let scheme = item.string(Tag(0x0008, 0x0102))
        else { return nil }
        return CodedConcept(value, scheme, item.string(Tag(0x0008, 0x0104)) ?? value)
    }
}

/// A Radiopharmaceutical Radiation Dose SR (PS3.3 A.35.14, SOP class
/// 1.2.840.10008.5.1.4.1.1.88.68) for one administration, following TID 10021 with one
/// TID 10022 Radiopharmaceutical Administration Event and, when the images say the
/// patient's weight or height, TID 10023 Patient Characteristics.
///
/// The patient and study identity is copied from one of the study's images, so the report
/// carries the same Study Instance UID and the PACS files it with the study. Optional
/// content the caller does not know is left out; nothing is made up.
public struct RadiationDoseReport: Sendable {
    public static let sopClass = "1.2.840.10008.5.1.4.1.1.88.68"

    /// A dose-calibrator measurement (pre- or post-administration), as measured.
    public struct Measurement: Sendable {
        public var bq: Double
        public var time: Date
        /// The calibrator: device id, driver family, and its serial number when known.
        public var device: String
        public var driver: String?
        public var serialNumber: String?

        public init(bq: Double, time: Date, device: String, driver: String? = nil, serialNumber: String? = nil) {
            self.bq = bq
            self.time = time
            self.device = device
            self.driver = driver
            self.serialNumber = serialNumber
        }
    }

    /// One image of the study: where patient, study and radiopharmaceutical codes come from.
    public var image: Dataset
    public var sopInstance: String
    public var seriesInstance: String
    public var seriesNumber = 9901
    public var administrationEventUID: String
    public var agent: CodedConcept
    public var radionuclide: CodedConcept
    public var halfLifeSeconds: Double
    public var administeredBq: Double
    public var injection: Date
    public var route: CodedConcept?
    public var procedure: CodedConcept
    public var pre: Measurement?
    public var post: Measurement?
    /// When the report is dated (Content Date/Time): the reconciliation's time.
    public var created: Date
    /// The site's zone, for DA/TM/DT values.
    public var zone: TimeZone
    /// The equipment that writes the report (Enhanced General Equipment): our node name.
    public var node: String
    public var aeTitle: String

    public init(
        image: Dataset, sopInstance: String, seriesInstance: String, administrationEventUID: String, agent: CodedConcept,
        radionuclide: CodedConcept, halfLifeSeconds: Double, administeredBq: Double, injection: Date, procedure: CodedConcept,
        created: Date, zone: TimeZone, node: String, aeTitle: String
    ) {
        self.image = image
        self.sopInstance = sopInstance
        self.seriesInstance = seriesInstance
        self.administrationEventUID = administrationEventUID
        self.agent = agent
        self.radionuclide = radionuclide
        self.halfLifeSeconds = halfLifeSeconds
        self.administeredBq = administeredBq
        self.injection = injection
        self.procedure = procedure
        self.created = created
        self.zone = zone
        self.node = node
        self.aeTitle = aeTitle
    }

    // MARK: What the images say

    /// Codes a console puts in the Radiopharmaceutical Information Sequence (0054,0016)
    /// item for the radionuclide `nuclide`: agent (0054,0304), radionuclide (0054,0300),
    /// route (0054,0302); for those without codes, the text (0018,0031 agent name,
    /// 0018,1070 route) when it names one of the few concepts listed here.
    public static func codes(in image: Dataset, nuclide: String?) -> (agent: CodedConcept?, radionuclide: CodedConcept?, route: CodedConcept?, agentName: String?) {
        let items = image.items(Tag(0x0054, 0x0016))
        let item =
            items.first { item in
                let meaning = CodedConcept.first(item, Tag(0x0054, 0x0300))?.meaning ?? ""
                return nuclide.map { n in Radionuclide.canonicalName(meaning.replacingOccurrences(of: "^", with: "")) == n } ?? false
            } ?? items.first ?? Dataset()
        let agentName = item.string(Tag(0x0018, 0x0031))
        let agent = CodedConcept.first(item, Tag(0x0054, 0x0304)) ?? agentName.flatMap(knownAgent)
        let radionuclide = CodedConcept.first(item, Tag(0x0054, 0x0300)) ?? nuclide.flatMap { knownRadionuclides[$0] }
        var route = CodedConcept.first(item, Tag(0x0054, 0x0302))
        if route == nil, let text = item.string(Tag(0x0018, 0x1070))?.lowercased(),
            ["iv", "i.v.", "intravenous", "intravenous route", "intravenously"].contains(text)
        {
            route = intravenous
        }
        return (agent, radionuclide, route, agentName)
    }

    /// The study's procedure: the images' Procedure Code Sequence (0008,1032), else the
    /// generic nuclear medicine procedure.
    public static func procedure(in image: Dataset) -> CodedConcept {
        CodedConcept.first(image, Tag(0x0008, 0x1032)) ?? nuclearMedicineProcedure
    }

    /// CID 11 "Intravenous route".
    public static let intravenous = CodedConcept("47625008", "SCT", "Intravenous route")
    /// CID 3108 has specific procedures; this is the generic one used when the images carry
    /// no Procedure Code Sequence (0008,1032).
    public static let nuclearMedicineProcedure = CodedConcept("371572003", "SCT", "Nuclear medicine procedure")

    /// CID 18 radionuclides (SNOMED CT) of the nuclides nmbridge knows.
    static let knownRadionuclides: [String: CodedConcept] = [
        "Tc-99m": CodedConcept("72454006", "SCT", "^99m^Technetium"), "F-18": CodedConcept("77004003", "SCT", "^18^Fluorine"),
        "I-131": CodedConcept("1368003", "SCT", "^131^Iodine"), "I-123": CodedConcept("21572004", "SCT", "^123^Iodine"),
        "In-111": CodedConcept("56609000", "SCT", "^111^Indium"), "Tl-201": CodedConcept("60057003", "SCT", "^201^Thallium"),
        "Lu-177": CodedConcept("447553000", "SCT", "^177^Lutetium"),
    ]

    /// CID 25 agents recognised by name (the console's free text), for images without a
    /// Radiopharmaceutical Code Sequence.
    static func knownAgent(_ name: String) -> CodedConcept? {
        let text = name.lowercased()
        if text.contains("oxidronate") || text.contains("hdp") { return CodedConcept("53951001", "SCT", "Technetium Tc^99m^ oxidronate") }
        if text.contains("medronate") || text.contains("mdp") { return CodedConcept("96390006", "SCT", "Technetium Tc^99m^ medronate") }
        if text.contains("fluorodeoxyglucose") || text.contains("fludeoxyglucose") || text.contains("fdg") {
            return CodedConcept("35321007", "SCT", "Fluorodeoxyglucose F^18^")
        }
        return nil
    }

    // MARK: The document

    /// The dataset (explicit VR little endian).
    public func dataset() -> DatasetWriter {
        var ds = DatasetWriter()
        func copy(_ tag: Tag, _ vr: String) {
            if let value = image.string(tag) { ds.text(tag, vr, value) } else { ds.empty(tag, vr) }
        }
        if let charset = image.elements[Tag(0x0008, 0x0005)].map({ String(decoding: $0.value, as: UTF8.self).trimmingCharacters(in: [" ", "\0"]) }),
            !charset.isEmpty
        {
            ds.text(Tag(0x0008, 0x0005), "CS", charset)
        }
        // SOP Common
        ds.uid(Tag(0x0008, 0x0016), Self.sopClass)
        ds.uid(Tag(0x0008, 0x0018), sopInstance)
        ds.text(Tag(0x0008, 0x0012), "DA", Self.date(created, zone))
        ds.text(Tag(0x0008, 0x0013), "TM", Self.time(created, zone))
        // Patient
        copy(Tag(0x0010, 0x0010), "PN")
        copy(Tag(0x0010, 0x0020), "LO")
        if let issuer = image.string(Tag(0x0010, 0x0021)) { ds.text(Tag(0x0010, 0x0021), "LO", issuer) }
        copy(Tag(0x0010, 0x0030), "DA")
        copy(Tag(0x0010, 0x0040), "CS")
        // General Study
        ds.uid(Tag(0x0020, 0x000D), image.string(Tag(0x0020, 0x000D)) ?? "")
        copy(Tag(0x0008, 0x0020), "DA")
        copy(Tag(0x0008, 0x0030), "TM")
        copy(Tag(0x0008, 0x0090), "PN")
        copy(Tag(0x0020, 0x0010), "SH")
        copy(Tag(0x0008, 0x0050), "SH")
        if let description = image.string(Tag(0x0008, 0x1030)) { ds.text(Tag(0x0008, 0x1030), "LO", description) }
        // Patient Study
        if let weight = image.string(Tag(0x0010, 0x1030)) { ds.text(Tag(0x0010, 0x1030), "DS", weight) }
        if let size = image.string(Tag(0x0010, 0x1020)) { ds.text(Tag(0x0010, 0x1020), "DS", size) }
        // SR Document Series
        ds.text(Tag(0x0008, 0x0060), "CS", "SR")
        ds.uid(Tag(0x0020, 0x000E), seriesInstance)
        ds.text(Tag(0x0020, 0x0011), "IS", String(seriesNumber))
        ds.text(Tag(0x0008, 0x103E), "LO", "Radiopharmaceutical Radiation Dose")
        ds.empty(Tag(0x0008, 0x1111), "SQ")
        // General Equipment, Enhanced General Equipment
        ds.text(Tag(0x0008, 0x0070), "LO", "nmbridge")
        ds.text(Tag(0x0008, 0x1090), "LO", "nmbridge")
        ds.text(Tag(0x0018, 0x1000), "LO", String(node.prefix(64)))
        ds.text(Tag(0x0018, 0x1020), "LO", NMBridgeVersion.current)
        ds.text(Tag(0x0008, 0x1010), "SH", String(aeTitle.prefix(16)))
        // SR Document General
        ds.text(Tag(0x0020, 0x0013), "IS", "1")
        ds.text(Tag(0x0040, 0xA491), "CS", "COMPLETE")
        ds.text(Tag(0x0040, 0xA493), "CS", "UNVERIFIED")
        ds.text(Tag(0x0008, 0x0023), "DA", Self.date(created, zone))
        ds.text(Tag(0x0008, 0x0033), "TM", Self.time(created, zone))
        ds.empty(Tag(0x0040, 0xA372), "SQ")
        var evidence = DatasetWriter()
        evidence.uid(Tag(0x0020, 0x000D), image.string(Tag(0x0020, 0x000D)) ?? "")
        var series = DatasetWriter()
        series.uid(Tag(0x0020, 0x000E), image.string(Tag(0x0020, 0x000E)) ?? "")
        var reference = DatasetWriter()
        reference.uid(Tag(0x0008, 0x1150), image.string(Tag(0x0008, 0x0016)) ?? "")
        reference.uid(Tag(0x0008, 0x1155), image.string(Tag(0x0008, 0x0018)) ?? "")
        series.sequence(Tag(0x0008, 0x1199), [reference])
        evidence.sequence(Tag(0x0008, 0x1115), [series])
        ds.sequence(Tag(0x0040, 0xA375), [evidence])
        // SR Document Content: the root container of TID 10021
        ds.text(Tag(0x0040, 0xA040), "CS", "CONTAINER")
        ds.sequence(Tag(0x0040, 0xA043), [Self.code(CodedConcept("113500", "DCM", "Radiopharmaceutical Radiation Dose Report"))])
        ds.text(Tag(0x0040, 0xA050), "CS", "SEPARATE")
        var template = DatasetWriter()
        template.text(Tag(0x0008, 0x0105), "CS", "DCMR")
        template.text(Tag(0x0040, 0xDB00), "CS", "10021")
        ds.sequence(Tag(0x0040, 0xA504), [template])
        ds.sequence(Tag(0x0040, 0xA730), rootContent())
        return ds
    }

    /// The Part-10 file.
    public func partTen() -> [UInt8] {
        dataset().partTen(sopClass: Self.sopClass, sopInstance: sopInstance, sourceAE: aeTitle)
    }

    func rootContent() -> [DatasetWriter] {
        var items: [DatasetWriter] = []
        // TID 10021 row 2: Associated Procedure (CID 3108 when the images say which).
        items.append(Self.codeItem("HAS CONCEPT MOD", CodedConcept("363589002", "SCT", "Associated Procedure"), procedure))
        // TID 10022: the administration.
        items.append(Self.container("CONTAINS", CodedConcept("113502", "DCM", "Radiopharmaceutical Administration"), administration()))
        // TID 10023: what the images say of the patient.
        var patient: [DatasetWriter] = []
        if let kg = image.number(Tag(0x0010, 0x1030)), kg > 0 {
            patient.append(Self.numItem("CONTAINS", CodedConcept("29463-7", "LN", "Patient Weight"), kg, CodedConcept("kg", "UCUM", "kg")))
        }
        if let metres = image.number(Tag(0x0010, 0x1020)), metres > 0 {
            patient.append(
                Self.numItem("CONTAINS", CodedConcept("8302-2", "LN", "Patient Height"), metres * 100, CodedConcept("cm", "UCUM", "cm")))
        }
        if !patient.isEmpty { items.append(Self.container("CONTAINS", CodedConcept("121118", "DCM", "Patient Characteristics"), patient)) }
        return items
    }

    func administration() -> [DatasetWriter] {
        let mbq = CodedConcept("MBq", "UCUM", "MBq")
        var agentItem = Self.codeItem("CONTAINS", CodedConcept("349358000", "SCT", "Radiopharmaceutical agent"), agent)
        agentItem.sequence(
            Tag(0x0040, 0xA730),
            [
                Self.codeItem("HAS PROPERTIES", CodedConcept("89457008", "SCT", "Radionuclide"), radionuclide),
                Self.numItem(
                    "HAS PROPERTIES", CodedConcept("304283002", "SCT", "Radionuclide Half Life"), halfLifeSeconds, CodedConcept("s", "UCUM", "s")),
            ])
        var items = [agentItem]
        var uid = Self.item("CONTAINS", "UIDREF", CodedConcept("113503", "DCM", "Radiopharmaceutical Administration Event UID"))
        uid.uid(Tag(0x0040, 0xA124), administrationEventUID)
        items.append(uid)
        var start = Self.item("CONTAINS", "DATETIME", CodedConcept("123003", "DCM", "Radiopharmaceutical Start DateTime"))
        start.text(Tag(0x0040, 0xA120), "DT", Self.dateTime(injection, zone))
        items.append(start)
        items.append(Self.numItem("CONTAINS", CodedConcept("113507", "DCM", "Administered activity"), administeredBq / 1e6, mbq))
        for (measurement, concept) in [
            (pre, CodedConcept("113508", "DCM", "Pre-Administration Measured Activity")),
            (post, CodedConcept("113509", "DCM", "Post-Administration Measured Activity")),
        ] {
            guard let measurement else { continue }
            var item = Self.numItem("CONTAINS", concept, measurement.bq / 1e6, mbq)
            item.sequence(Tag(0x0040, 0xA730), calibrator(measurement))
            items.append(item)
        }
        if let route { items.append(Self.codeItem("CONTAINS", CodedConcept("410675002", "SCT", "Route of administration"), route)) }
        // The measurement times have no row of their own in TID 10022: they are said in a comment.
        var lines: [String] = []
        if let pre { lines.append("Pre-administration activity measured \(Self.dateTime(pre.time, zone)) on \(pre.device).") }
        if let post { lines.append("Post-administration (residual) activity measured \(Self.dateTime(post.time, zone)) on \(post.device).") }
        lines.append("Administered activity: the pre-administration measurement decayed to the start time\(post == nil ? "" : ", minus the residual decayed back to it").")
        var comment = Self.item("CONTAINS", "TEXT", CodedConcept("121106", "DCM", "Comment"))
        comment.text(Tag(0x0040, 0xA160), "UT", lines.joined(separator: " "))
        items.append(comment)
        return items
    }

    /// The calibrator of a measurement: Activity Measurement Device and a TID 1004 device observer.
    func calibrator(_ measurement: Measurement) -> [DatasetWriter] {
        var items = [
            Self.codeItem("HAS PROPERTIES", CodedConcept("113540", "DCM", "Activity Measurement Device"), CodedConcept("113541", "DCM", "Dose Calibrator")),
            Self.codeItem("HAS OBS CONTEXT", CodedConcept("121005", "DCM", "Observer Type"), CodedConcept("121007", "DCM", "Device")),
        ]
        var uid = Self.item("HAS OBS CONTEXT", "UIDREF", CodedConcept("121012", "DCM", "Device Observer UID"))
        uid.uid(Tag(0x0040, 0xA124), Self.derivedUID("device", node, measurement.device))
        items.append(uid)
        var name = Self.item("HAS OBS CONTEXT", "TEXT", CodedConcept("121013", "DCM", "Device Observer Name"))
        name.text(Tag(0x0040, 0xA160), "UT", measurement.device)
        items.append(name)
        if let driver = measurement.driver {
            var model = Self.item("HAS OBS CONTEXT", "TEXT", CodedConcept("121015", "DCM", "Device Observer Model Name"))
            model.text(Tag(0x0040, 0xA160), "UT", driver)
            items.append(model)
        }
        if let serial = measurement.serialNumber {
            var item = Self.item("HAS OBS CONTEXT", "TEXT", CodedConcept("121016", "DCM", "Device Observer Serial Number"))
            item.text(Tag(0x0040, 0xA160), "UT", serial)
            items.append(item)
        }
        return items
    }

    // MARK: Content items

    static func code(_ concept: CodedConcept) -> DatasetWriter {
        var item = DatasetWriter()
        item.text(Tag(0x0008, 0x0100), "SH", concept.value)
        item.text(Tag(0x0008, 0x0102), "SH", concept.scheme)
        item.text(Tag(0x0008, 0x0104), "LO", concept.meaning)
        return item
    }

    static func item(_ relationship: String, _ valueType: String, _ name: CodedConcept) -> DatasetWriter {
        var item = DatasetWriter()
        item.text(Tag(0x0040, 0xA010), "CS", relationship)
        item.text(Tag(0x0040, 0xA040), "CS", valueType)
        item.sequence(Tag(0x0040, 0xA043), [code(name)])
        return item
    }

    static func codeItem(_ relationship: String, _ name: CodedConcept, _ value: CodedConcept) -> DatasetWriter {
        var item = item(relationship, "CODE", name)
        item.sequence(Tag(0x0040, 0xA168), [code(value)])
        return item
    }

    static func numItem(_ relationship: String, _ name: CodedConcept, _ value: Double, _ unit: CodedConcept) -> DatasetWriter {
        var item = item(relationship, "NUM", name)
        var measured = DatasetWriter()
        measured.sequence(Tag(0x0040, 0x08EA), [code(unit)])
        measured.text(Tag(0x0040, 0xA30A), "DS", decimalString(value))
        item.sequence(Tag(0x0040, 0xA300), [measured])
        return item
    }

    static func container(_ relationship: String, _ name: CodedConcept, _ content: [DatasetWriter]) -> DatasetWriter {
        var item = item(relationship, "CONTAINER", name)
        item.text(Tag(0x0040, 0xA050), "CS", "SEPARATE")
        item.sequence(Tag(0x0040, 0xA730), content)
        return item
    }

    /// A DS value: at most 16 characters, no exponent for the values we write.
    static func decimalString(_ value: Double) -> String {
        for digits in stride(from: 4, through: 0, by: -1) {
            var text = String(format: "%.\(digits)f", value)
            if text.contains(".") {
                while text.hasSuffix("0") { text.removeLast() }
                if text.hasSuffix(".") { text.removeLast() }
            }
            if text.count <= 16 { return text }
        }
        return String(format: "%.6e", value)
    }

    // MARK: Dates and UIDs

    static func components(_ date: Date, _ zone: TimeZone) -> DateComponents {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        return calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
    }

    static func date(_ date: Date, _ zone: TimeZone) -> String {
        let c = components(date, zone)
        return String(format: "%04d%02d%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
    }

    static func time(_ date: Date, _ zone: TimeZone) -> String {
        let c = components(date, zone)
        return String(format: "%02d%02d%02d", c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
    }

    /// DT with the zone's offset at that instant: `YYYYMMDDHHMMSS+HHMM`.
    static func dateTime(_ date: Date, _ zone: TimeZone) -> String {
        let offset = zone.secondsFromGMT(for: date) / 60
        return self.date(date, zone) + time(date, zone) + (offset < 0 ? "-" : "+") + String(format: "%02d%02d", abs(offset) / 60, abs(offset) % 60)
    }

    /// A UID under 2.25 derived from names (a SHA-256 of them, 128 bits as a decimal), so that
    /// the same administration always gets the same UIDs.
    public static func derivedUID(_ parts: String...) -> String {
        let digest = Array(SHA256.hash(data: Array(parts.joined(separator: "\u{1F}").utf8))).prefix(16)
        // 128-bit unsigned as decimal, by repeated division of the big-endian bytes.
        var number = Array(digest)
        var digits: [UInt8] = []
        while number.contains(where: { $0 != 0 }) {
            var remainder = 0
            for index in number.indices {
                let value = remainder * 256 + Int(number[index])
                number[index] = UInt8(value / 10)
                remainder = value % 10
            }
            digits.append(UInt8(remainder))
        }
        let text = digits.isEmpty ? "0" : String(digits.reversed().map { Character(String($0)) })
        return "2.25." + text
    }
}
