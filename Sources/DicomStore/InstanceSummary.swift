import Foundation
import NMBridgeCore

/// What the `dicom.instance.stored` event says about a dataset: identifiers, description,
/// and for NM/PT the radiopharmaceutical and the energy windows.
public enum InstanceSummary {
    static func t(_ g: UInt16, _ e: UInt16) -> Tag { Tag(g, e) }

    /// Text attributes reported when present, by event field.
    static let textFields: [(String, Tag)] = [
        ("patient_id", t(0x0010, 0x0020)), ("patient_name", t(0x0010, 0x0010)), ("accession_number", t(0x0008, 0x0050)),
        ("study_uid", t(0x0020, 0x000D)), ("series_uid", t(0x0020, 0x000E)), ("sop_instance_uid", t(0x0008, 0x0018)),
        ("sop_class_uid", t(0x0008, 0x0016)), ("modality", t(0x0008, 0x0060)), ("study_date", t(0x0008, 0x0020)),
        ("study_time", t(0x0008, 0x0030)), ("study_description", t(0x0008, 0x1030)), ("series_description", t(0x0008, 0x103E)),
        ("series_date", t(0x0008, 0x0021)), ("series_time", t(0x0008, 0x0031)), ("acquisition_date", t(0x0008, 0x0022)),
        ("acquisition_time", t(0x0008, 0x0032)), ("station_name", t(0x0008, 0x1010)), ("manufacturer", t(0x0008, 0x0070)),
        ("model", t(0x0008, 0x1090)), ("timezone_offset", t(0x0008, 0x0201)),
    ]

    /// The event fields of a dataset (without storage facts: path, bytes, hash, peer).
    public static func fields(of dataset: Dataset) -> [String: JSONValue] {
        var data: [String: JSONValue] = [:]
        for (field, tag) in textFields {
            if let value = dataset.string(tag) { data[field] = .string(value) }
        }
        if let frames = dataset.number(t(0x0028, 0x0008)).flatMap({ Int64(exactly: $0) }), frames >= 0 {
            data["number_of_frames"] = .int(frames)
        }
        let sopClass = dataset.string(t(0x0008, 0x0016)) ?? ""
        // Every item: a dual-isotope study has one per radiopharmaceutical. The first stays
        // under `radiopharmaceutical` for consumers that read only that.
        let pharmaceuticals = dataset.items(t(0x0054, 0x0016)).prefix(Self.maximumItems).map { radiopharmaceutical($0, sopClass: sopClass) }
        if let first = pharmaceuticals.first { data["radiopharmaceutical"] = .object(first) }
        if !pharmaceuticals.isEmpty { data["radiopharmaceuticals"] = .array(pharmaceuticals.map(JSONValue.object)) }
        let windows = energyWindows(dataset)
        if !windows.isEmpty { data["energy_windows"] = .array(windows) }
        data.merge(acquisitionFields(dataset)) { first, _ in first }
        return data
    }

    /// Items read from one sequence at most: a header is untrusted, the event stays small.
    static let maximumItems = 16

    /// NM: each range of each Energy Window Information Sequence (0054,0012) item, with the
    /// window's name. PET: the Energy Window Range Sequence (0054,0013) sits directly in
    /// the PET Series module (PS3.3 C.8.9.1), without a name.
    static func energyWindows(_ dataset: Dataset) -> [JSONValue] {
        func range(_ item: Dataset, name: String?) -> JSONValue? {
            var out: [String: JSONValue] = [:]
            if let lower = item.number(t(0x0054, 0x0014)) { out["lower_kev"] = .double(lower) }
            if let upper = item.number(t(0x0054, 0x0015)) { out["upper_kev"] = .double(upper) }
            if out.isEmpty { return nil }
            if let name { out["name"] = .string(name) }
            return .object(out)
        }
        var windows: [JSONValue] = []
        for window in dataset.items(t(0x0054, 0x0012)).prefix(maximumItems) {
            let name = window.string(t(0x0054, 0x0018))
            let ranges = window.items(t(0x0054, 0x0013)).prefix(maximumItems).compactMap { range($0, name: name) }
            if ranges.isEmpty, let name { windows.append(.object(["name": .string(name)])) }
            windows += ranges
        }
        windows += dataset.items(t(0x0054, 0x0013)).prefix(maximumItems).compactMap { range($0, name: nil) }
        return windows
    }

    /// What the protocol checks need besides the radiopharmaceutical: Image Type, view
    /// codes, collimators, whole-body scan velocity, and the patient's weight and size.
    ///
    /// Units as DICOM gives them, named in the field: Scan Velocity (0018,1300) is mm/s
    /// (PS3.3, NM Image module: "mm/sec"), Patient's Weight (0010,1030) kg, Patient's Size
    /// (0010,1020) m. Collimator/Grid Name (0018,1180) and View Code Sequence (0054,0220)
    /// are read at the top level and in each Detector Information Sequence (0054,0022)
    /// item, where the NM Detector module puts them.
    static func acquisitionFields(_ dataset: Dataset) -> [String: JSONValue] {
        var data: [String: JSONValue] = [:]
        if let text = dataset.string(t(0x0008, 0x0008)) {
            let values = text.split(separator: "\\", omittingEmptySubsequences: false).prefix(maximumItems)
                .map { $0.trimmingCharacters(in: .whitespaces).uppercased() }
            data["image_type"] = .array(values.map(JSONValue.string))
        }
        if let velocity = dataset.number(t(0x0018, 0x1300)), velocity >= 0 { data["scan_velocity_mm_per_s"] = .double(velocity) }
        if let weight = dataset.number(t(0x0010, 0x1030)), weight > 0 { data["patient_weight_kg"] = .double(weight) }
        if let size = dataset.number(t(0x0010, 0x1020)), size > 0 { data["patient_size_m"] = .double(size) }
        let detectors = Array(dataset.items(t(0x0054, 0x0022)).prefix(maximumItems))
        var collimators: [String] = []
        var types: [String] = []
        for item in [dataset] + detectors {
            if let name = item.string(t(0x0018, 0x1180)), !collimators.contains(name) { collimators.append(name) }
            if let type = item.string(t(0x0018, 0x1181)), !types.contains(type) { types.append(type) }
        }
        if !collimators.isEmpty { data["collimators"] = .array(collimators.map(JSONValue.string)) }
        if !types.isEmpty { data["collimator_types"] = .array(types.map(JSONValue.string)) }
        var views: [JSONValue] = []
        for (index, item) in ([dataset] + detectors).enumerated() {
            for code in item.items(t(0x0054, 0x0220)).prefix(maximumItems) {
                var view: [String: JSONValue] = [:]
                if let value = code.string(t(0x0008, 0x0100)) { view["code_value"] = .string(value) }
                if let scheme = code.string(t(0x0008, 0x0102)) { view["coding_scheme"] = .string(scheme) }
                if let meaning = code.string(t(0x0008, 0x0104)) { view["meaning"] = .string(meaning) }
                if view.isEmpty { continue }
                if index > 0 { view["detector"] = .int(Int64(index)) }
                if !views.contains(.object(view)) { views.append(.object(view)) }
            }
        }
        if !views.isEmpty { data["view_codes"] = .array(views) }
        return data
    }

    /// The unit of Radionuclide Total Dose (0018,1074) by IOD: the NM Isotope module says
    /// MBq (PS3.3 C.8.4.10.1), the PET Isotope module Bq (C.8.9.2), Enhanced PET MBq.
    static func doseUnit(sopClass: String) -> (factor: Double, rule: String)? {
        switch sopClass {
        case "1.2.840.10008.5.1.4.1.1.20": (1e6, "NM Image: MBq (PS3.3 C.8.4.10.1)")
        case "1.2.840.10008.5.1.4.1.1.128": (1, "PET Image: Bq (PS3.3 C.8.9.2)")
        case "1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.128.1": (1e6, "Enhanced PET Image: MBq (PS3.3 C.8.22)")
        default: nil
        }
    }

    /// Element symbols by name, for the radionuclide code meanings of PS3.16 CID 18
    /// (`^99m^Technetium`, `^18^Fluorine`).
    static let symbols: [String: String] = [
        "technetium": "Tc", "fluorine": "F", "gallium": "Ga", "iodine": "I", "indium": "In", "thallium": "Tl", "lutetium": "Lu",
        "yttrium": "Y", "xenon": "Xe", "rubidium": "Rb", "carbon": "C", "nitrogen": "N", "oxygen": "O", "copper": "Cu",
        "zirconium": "Zr", "samarium": "Sm", "radium": "Ra", "strontium": "Sr", "chromium": "Cr", "cobalt": "Co",
        "cesium": "Cs", "caesium": "Cs", "barium": "Ba", "krypton": "Kr", "holmium": "Ho", "erbium": "Er", "rhenium": "Re",
        "phosphorus": "P", "actinium": "Ac", "lead": "Pb", "bismuth": "Bi", "astatine": "At", "terbium": "Tb", "scandium": "Sc",
    ]

    /// `^99m^Technetium` → `Tc-99m`; a meaning already shaped like a nuclide (`Tc-99m`) as is.
    static func nuclide(codeMeaning meaning: String) -> String? {
        let parts = meaning.split(separator: "^").map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.count == 2, let symbol = symbols[parts[1].lowercased()] {
            return Radionuclide.canonicalName(symbol + parts[0])
        }
        return Radionuclide.canonicalName(meaning)
    }

    static func radiopharmaceutical(_ item: Dataset, sopClass: String) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        if let agent = item.string(t(0x0018, 0x0031)) { out["agent"] = .string(agent) }
        if let code = item.items(t(0x0054, 0x0300)).first {
            if let meaning = code.string(t(0x0008, 0x0104)) { out["radionuclide"] = .string(meaning) }
            if let value = code.string(t(0x0008, 0x0100)) { out["radionuclide_code"] = .string(value) }
            if let meaning = code.string(t(0x0008, 0x0104)), let canonical = nuclide(codeMeaning: meaning) {
                out["nuclide"] = .string(canonical)
            }
        }
        if let dose = item.number(t(0x0018, 0x1074)) {
            out["total_dose_header"] = .double(dose)
            if let unit = doseUnit(sopClass: sopClass) {
                out["total_dose_bq"] = .double(dose * unit.factor)
                out["total_dose_unit_rule"] = .string(unit.rule)
                // A value of the other unit is a known real-world mistake: flag it, never rescale.
                if unit.factor == 1e6, dose >= 1e5 {
                    out["total_dose_suspect"] = .string("\(dose) MBq is implausible for a patient dose; the header may hold Bq")
                } else if unit.factor == 1, dose > 0, dose < 1e4 {
                    out["total_dose_suspect"] = .string("\(dose) Bq is implausible for a patient dose; the header may hold MBq")
                }
            } else {
                out["total_dose_unit_rule"] = .string("unknown for SOP class \(sopClass): not converted")
            }
        }
        if let halfLife = item.number(t(0x0018, 0x1075)) { out["half_life_s"] = .double(halfLife) }
        if let time = item.string(t(0x0018, 0x1072)) { out["start_time"] = .string(time) }
        if let dateTime = item.string(t(0x0018, 0x1078)) { out["start_datetime"] = .string(dateTime) }
        return out
    }
}
