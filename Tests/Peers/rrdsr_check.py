"""Checks a Radiopharmaceutical Radiation Dose SR with pydicom against TID 10021/10022:
concept names, value types, relationships, units, and the expected values.

    rrdsr_check.py FILE [--agent VALUE^SCHEME] [--nuclide VALUE^SCHEME] [--mbq X]
                        [--study-uid UID] [--patient-id ID] [--pre] [--post] [--route VALUE^SCHEME]

Prints {"problems": [...], "tree": [...]} and exits 1 when there is a problem. Every
DCM code used must exist in pydicom's copy of the DICOM code dictionary.
"""
import argparse
import json
import sys

import pydicom
from pydicom.sr._concepts_dict import concepts

problems = []


def code(item, tag="ConceptNameCodeSequence"):
    seq = getattr(item, tag, None)
    if not seq:
        return None
    c = seq[0]
    return (str(c.CodeValue), str(c.CodingSchemeDesignator))


def known(value, scheme):
    return any(value in entry for entry in concepts.get(scheme, {}).values())


def children(item):
    return list(getattr(item, "ContentSequence", []) or [])


def find(items, name, value_type, relationship, required=True):
    found = [i for i in items if code(i) == name]
    if not found:
        if required:
            problems.append(f"missing {value_type} {name}")
        return None
    item = found[0]
    if item.ValueType != value_type:
        problems.append(f"{name} is {item.ValueType}, expected {value_type}")
    if getattr(item, "RelationshipType", None) != relationship:
        problems.append(f"{name} relationship {getattr(item, 'RelationshipType', None)}, expected {relationship}")
    return item


def num(item, unit):
    measured = item.MeasuredValueSequence[0]
    units = code(measured, "MeasurementUnitsCodeSequence")
    if units != (unit, "UCUM"):
        problems.append(f"{code(item)} in {units}, expected {unit} UCUM")
    return float(measured.NumericValue)


def tree(item, depth=0):
    out = [f"{'  ' * depth}{getattr(item, 'RelationshipType', 'ROOT')} {item.ValueType} {code(item)}"]
    for child in children(item):
        out += tree(child, depth + 1)
    return out


def walk_codes(item):
    name = code(item)
    if name and name[1] == "DCM" and not known(*name):
        problems.append(f"DCM code {name[0]} is not in the DICOM code dictionary")
    for child in children(item):
        walk_codes(child)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--agent")
    parser.add_argument("--nuclide")
    parser.add_argument("--mbq", type=float)
    parser.add_argument("--study-uid")
    parser.add_argument("--patient-id")
    parser.add_argument("--route")
    parser.add_argument("--pre", action="store_true")
    parser.add_argument("--post", action="store_true")
    args = parser.parse_args()
    ds = pydicom.dcmread(args.file)
    if ds.SOPClassUID != "1.2.840.10008.5.1.4.1.1.88.68":
        problems.append(f"SOP class {ds.SOPClassUID}")
    if ds.Modality != "SR":
        problems.append(f"modality {ds.Modality}")
    template = ds.ContentTemplateSequence[0]
    if (template.MappingResource, template.TemplateIdentifier) != ("DCMR", "10021"):
        problems.append("content template is not DCMR 10021")
    if ds.ValueType != "CONTAINER" or code(ds) != ("113500", "DCM"):
        problems.append(f"root is {ds.ValueType} {code(ds)}")
    if args.study_uid and ds.StudyInstanceUID != args.study_uid:
        problems.append(f"study {ds.StudyInstanceUID}")
    if args.patient_id and ds.PatientID != args.patient_id:
        problems.append(f"patient {ds.PatientID}")
    root = children(ds)
    find(root, ("363589002", "SCT"), "CODE", "HAS CONCEPT MOD")
    event = find(root, ("113502", "DCM"), "CONTAINER", "CONTAINS")
    if event is not None:
        items = children(event)
        agent = find(items, ("349358000", "SCT"), "CODE", "CONTAINS")
        if agent is not None:
            if args.agent and code(agent, "ConceptCodeSequence") != tuple(args.agent.split("^")):
                problems.append(f"agent {code(agent, 'ConceptCodeSequence')}")
            nuclide = find(children(agent), ("89457008", "SCT"), "CODE", "HAS PROPERTIES")
            if nuclide is not None and args.nuclide and code(nuclide, "ConceptCodeSequence") != tuple(args.nuclide.split("^")):
                problems.append(f"radionuclide {code(nuclide, 'ConceptCodeSequence')}")
            half = find(children(agent), ("304283002", "SCT"), "NUM", "HAS PROPERTIES")
            if half is not None:
                num(half, "s")
        uid = find(items, ("113503", "DCM"), "UIDREF", "CONTAINS")
        if uid is not None and not str(uid.UID).startswith("2.25."):
            problems.append(f"event UID {uid.UID}")
        find(items, ("123003", "DCM"), "DATETIME", "CONTAINS")
        activity = find(items, ("113507", "DCM"), "NUM", "CONTAINS")
        if activity is not None and args.mbq is not None:
            value = num(activity, "MBq")
            if abs(value - args.mbq) > 0.01 * args.mbq:
                problems.append(f"administered {value} MBq, expected {args.mbq}")
        for flag, name in ((args.pre, ("113508", "DCM")), (args.post, ("113509", "DCM"))):
            measured = find(items, name, "NUM", "CONTAINS", required=flag)
            if measured is not None:
                num(measured, "MBq")
                device = find(children(measured), ("113540", "DCM"), "CODE", "HAS PROPERTIES")
                if device is not None and code(device, "ConceptCodeSequence") != ("113541", "DCM"):
                    problems.append("measurement device is not a dose calibrator")
                observer = find(children(measured), ("121005", "DCM"), "CODE", "HAS OBS CONTEXT")
                if observer is not None and code(observer, "ConceptCodeSequence") != ("121007", "DCM"):
                    problems.append("observer type is not a device")
                find(children(measured), ("121012", "DCM"), "UIDREF", "HAS OBS CONTEXT")
        route = find(items, ("410675002", "SCT"), "CODE", "CONTAINS", required=args.route is not None)
        if route is not None and args.route and code(route, "ConceptCodeSequence") != tuple(args.route.split("^")):
            problems.append(f"route {code(route, 'ConceptCodeSequence')}")
    walk_codes(ds)
    print(json.dumps({"problems": problems, "tree": tree(ds)}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
