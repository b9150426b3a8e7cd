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
        if let item = dataset.items(t(0x0054, 0x0016)).first {
            data["radiopharmaceutical"] = .object(radiopharmaceutical(item, sopClass: sopClass))
        }
        let windows = dataset.items(t(0x0054, 0x0012)).compactMap { window -> JSONValue? in
            var out: [String: JSONValue] = [:]
            if let range = window.items(t(0x0054, 0x0013)).first {
                if let lower = range.number(t(0x0054, 0x0014)) { out["lower_kev"] = .double(lower) }
                if let upper = range.number(t(0x0054, 0x0015)) { out["upper_kev"] = .double(upper) }
            }
            if let name = window.string(t(0x0054, 0x0018)) { out["name"] = .string(name) }
            return out.isEmpty ? nil : .object(out)
        }
        if !windows.isEmpty { data["energy_windows"] = .array(windows) }
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
