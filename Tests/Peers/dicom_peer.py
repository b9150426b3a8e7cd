#!/usr/bin/env python3
"""DICOM test peer for nmbridge, built on pydicom and pynetdicom (not nmbridge's code).

    dicom_peer.py make-nm PATH [--dose 740] [--study-uid UID] [--instance-uid UID] [--frames N] [--nm-rows 16]
        writes an NM image (Part 10, explicit VR LE) with a Radiopharmaceutical Information
        Sequence (Tc-99m oxidronate, total dose in MBq as the NM IOD says) and an energy window
        study-level options (issue 15): --series-uid UID --description TEXT
        --image-type 'ORIGINAL\\PRIMARY\\WHOLE BODY\\EMISSION' --view-meaning TEXT --collimator NAME
        --scan-velocity MM_PER_S --weight KG --size M --indium-dose MBQ (a second radiopharmaceutical,
        In-111, with 171/245 keV windows) --windows LO-HI,LO-HI (replaces the 126-154 keV window)
    dicom_peer.py make-pt PATH [--dose BQ] [--study-uid UID] [--windows 425-650] [--start-datetime ...] [--acquisition ...]
        writes a PET image (Radionuclide Total Dose in Bq, as the PET IOD says) with the Energy
        Window Range Sequence (0054,0013) at the top level, as the PET Series module puts it
    dicom_peer.py make-ct PATH [--rows 64] [--instance N]
        writes a small CT slice
    dicom_peer.py make-ct-series DIR --count N [--rows 512]
        writes N slices of one CT series (the benchmark's)
    dicom_peer.py send HOST PORT CALLED CALLING FILE... [--syntax implicit|explicit|big]
        C-STORE each file on one association; prints {"statuses": [...]} (or the reject)
    dicom_peer.py send-mismatch HOST PORT CALLED CALLING FILE
        sends FILE with a command whose Affected SOP Instance UID differs from the dataset's
    dicom_peer.py same PATH_A PATH_B
        exits 0 when both files hold the same dataset (file meta ignored)
    make-nm/make-pt --agent-code VALUE^SCHEME^MEANING --route TEXT --route-code VALUE^SCHEME^MEANING
        adds a Radiopharmaceutical Code Sequence, a Radiopharmaceutical Route and an
        Administration Route Code Sequence, as consoles that code the agent send them
    dicom_peer.py check-stored STORAGE FILE...
        for each sent FILE, where the receiver should have stored it
        (STORAGE/<study>/<series>/<instance>.dcm) and whether that file holds the same dataset;
        prints one JSON object per FILE: {"file", "uid", "path", "exists", "same"}
"""
import argparse
import datetime
import json
import sys

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid)
import pydicom

NM = "1.2.840.10008.5.1.4.1.1.20"
CT = "1.2.840.10008.5.1.4.1.1.2"
PT = "1.2.840.10008.5.1.4.1.1.128"
SYNTAXES = {"implicit": ImplicitVRLittleEndian, "explicit": ExplicitVRLittleEndian, "big": ExplicitVRBigEndian}


def base(sop_class, instance_uid, study_uid, series_uid):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = "NMB-0001"
    ds.PatientName = "Test^Patient"
    ds.AccessionNumber = "ACC42"
    ds.StudyDate = "20261129"
    ds.StudyTime = "101500"
    ds.StationName = "SPECTCT1"
    ds.Manufacturer = "nmbridge tests"
    ds.ManufacturerModelName = "pydicom"
    return ds


def make_nm(args):
    ds = base(NM, args.instance_uid or generate_uid(), args.study_uid or generate_uid(), args.series_uid or generate_uid())
    ds.Modality = "NM"
    ds.SeriesDescription = "WB Bone ANT/POST"
    ds.AcquisitionDate = "20261129"
    ds.AcquisitionTime = "131500"
    rp = Dataset()
    rp.Radiopharmaceutical = "Tc99m Oxidronate"
    rp.RadionuclideCodeSequence = coded("C-163A8^SRT^^99m^Technetium")
    rp.RadionuclideTotalDose = str(args.dose)
    rp.RadionuclideHalfLife = "21624.12"
    rp.RadiopharmaceuticalStartTime = "101500"
    if args.start_datetime:  # YYYYMMDDHHMMSS[.F][+ZZZZ]
        rp.RadiopharmaceuticalStartDateTime = args.start_datetime
        rp.RadiopharmaceuticalStartTime = args.start_datetime[8:14]
    ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
    if args.acquisition:  # YYYYMMDDHHMMSS, wall clock at --timezone-offset
        ds.AcquisitionDate, ds.AcquisitionTime = args.acquisition[:8], args.acquisition[8:14]
    if args.timezone_offset:
        ds.TimezoneOffsetFromUTC = args.timezone_offset
    window = Dataset()
    window.EnergyWindowName = "Tc99m"
    window_range = Dataset()
    window_range.EnergyWindowLowerLimit = "126"
    window_range.EnergyWindowUpperLimit = "154"
    window.EnergyWindowRangeSequence = Sequence([window_range])
    ds.EnergyWindowInformationSequence = Sequence([window])
    study_level_options(ds, args, rp)
    ds.NumberOfFrames = args.frames
    ds.Rows = args.nm_rows
    ds.Columns = args.nm_rows
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(256)) * (2 * args.frames * args.nm_rows * args.nm_rows // 256)
    ds.save_as(args.path, write_like_original=False)


def coded(text):
    """A one-item code sequence from VALUE^SCHEME^MEANING (the meaning may hold ^)."""
    value, scheme, meaning = text.split("^", 2)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return Sequence([code])


def radiopharmaceutical_codes(args, rp):
    """What RRDSRs copy: the coded agent and route, when their options are given."""
    if args.agent_code:
        rp.RadiopharmaceuticalCodeSequence = coded(args.agent_code)
    if args.route:
        rp.RadiopharmaceuticalRoute = args.route
    if args.route_code:
        rp.AdministrationRouteCodeSequence = coded(args.route_code)


def study_level_options(ds, args, rp):
    """The attributes study-level QC reads; each only when its option is given."""
    radiopharmaceutical_codes(args, rp)
    if args.series_uid:
        ds.SeriesInstanceUID = args.series_uid
    if args.description:
        ds.SeriesDescription = args.description
    if args.image_type:
        ds.ImageType = args.image_type.split("\\")
    if args.scan_velocity is not None:
        ds.ScanVelocity = str(args.scan_velocity)
    if args.weight is not None:
        ds.PatientWeight = str(args.weight)
    if args.size is not None:
        ds.PatientSize = str(args.size)
    if args.collimator or args.view_meaning:
        detectors = []
        for number in (1, 2):  # a dual-head camera: one item per detector
            detector = Dataset()
            if args.collimator:
                detector.CollimatorGridName = args.collimator
                detector.CollimatorType = "PARA"
            if args.view_meaning:
                detector.ViewCodeSequence = coded(("R-10B1E" if number == 1 else "R-10B1F") + "^SRT^" + args.view_meaning)
            detectors.append(detector)
        ds.DetectorInformationSequence = Sequence(detectors)
    if args.indium_dose is not None:
        indium = Dataset()
        indium.Radiopharmaceutical = "In-111 pentetreotide"
        indium.RadionuclideCodeSequence = coded("C-145A4^SRT^^111^Indium")
        indium.RadionuclideTotalDose = str(args.indium_dose)
        indium.RadiopharmaceuticalStartTime = rp.RadiopharmaceuticalStartTime
        if "RadiopharmaceuticalStartDateTime" in rp:
            indium.RadiopharmaceuticalStartDateTime = rp.RadiopharmaceuticalStartDateTime
        ds.RadiopharmaceuticalInformationSequence.append(indium)
    if args.windows:
        windows = []
        for i, pair in enumerate(args.windows.split(",")):
            low, high = pair.split("-")
            window = Dataset()
            window.EnergyWindowName = f"W{i + 1}"
            window_range = Dataset()
            window_range.EnergyWindowLowerLimit = low
            window_range.EnergyWindowUpperLimit = high
            window.EnergyWindowRangeSequence = Sequence([window_range])
            windows.append(window)
        ds.EnergyWindowInformationSequence = Sequence(windows)


def make_pt(args):
    ds = base(PT, args.instance_uid or generate_uid(), args.study_uid or generate_uid(), args.series_uid or generate_uid())
    ds.Modality = "PT"
    ds.SeriesDescription = args.description or "WB FDG"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.AcquisitionDate = "20261129"
    ds.AcquisitionTime = "111500"
    if args.acquisition:
        ds.AcquisitionDate, ds.AcquisitionTime = args.acquisition[:8], args.acquisition[8:14]
    if args.timezone_offset:
        ds.TimezoneOffsetFromUTC = args.timezone_offset
    rp = Dataset()
    rp.Radiopharmaceutical = "Fluorodeoxyglucose"
    rp.RadionuclideCodeSequence = coded("C-111A1^SRT^^18^Fluorine")
    rp.RadionuclideTotalDose = str(int(args.dose))
    rp.RadionuclideHalfLife = "6586.2"
    rp.RadiopharmaceuticalStartTime = "101500"
    if args.start_datetime:
        rp.RadiopharmaceuticalStartDateTime = args.start_datetime
        rp.RadiopharmaceuticalStartTime = args.start_datetime[8:14]
    radiopharmaceutical_codes(args, rp)
    ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
    ranges = []
    for pair in (args.windows or "425-650").split(","):
        low, high = pair.split("-")
        window_range = Dataset()
        window_range.EnergyWindowLowerLimit = low
        window_range.EnergyWindowUpperLimit = high
        ranges.append(window_range)
    ds.EnergyWindowRangeSequence = Sequence(ranges)  # PET Series module: top level
    if args.weight is not None:
        ds.PatientWeight = str(args.weight)
    ds.Rows = ds.Columns = args.nm_rows
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(2 * args.nm_rows * args.nm_rows)
    ds.save_as(args.path, write_like_original=False)


def make_ct(args):
    ds = base(CT, generate_uid(), args.study_uid or generate_uid(), args.series_uid or generate_uid())
    ds.Modality = "CT"
    ds.InstanceNumber = args.instance
    ds.Rows = args.rows
    ds.Columns = args.rows
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = (bytes(range(256)) * (args.rows * args.rows * 2 // 256 + 1))[: args.rows * args.rows * 2]
    ds.save_as(args.path, write_like_original=False)


def associate(args, contexts):
    from pynetdicom import AE
    ae = AE(ae_title=args.calling)
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate(args.host, int(args.port), ae_title=args.called)
    if not assoc.is_established:
        rejected = assoc.is_rejected
        print(json.dumps({"established": False, "rejected": rejected}))
        sys.exit(3)
    return assoc


def send(args):
    syntax = SYNTAXES[args.syntax]
    datasets = [pydicom.dcmread(path) for path in args.files]
    assoc = associate(args, sorted({(str(ds.SOPClassUID), syntax) for ds in datasets}))
    statuses = []
    for ds in datasets:
        status = assoc.send_c_store(ds)
        statuses.append(int(status.Status) if status and "Status" in status else None)
    assoc.release()
    print(json.dumps({"established": True, "statuses": statuses}))


def send_mismatch(args):
    # pynetdicom sends a file given by path as it is, with the command's UIDs taken from its
    # file meta: a dataset instance UID unlike the meta's makes the command disagree.
    from pynetdicom import _config
    _config.STORE_SEND_CHUNKED_DATASET = True
    ds = pydicom.dcmread(args.files[0])
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.999"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.is_implicit_VR, ds.is_little_endian = False, True
    path = args.files[0] + ".mismatch.dcm"
    ds.save_as(path, write_like_original=True)  # True: pydicom leaves the file meta as it is
    assoc = associate(args, [(str(ds.SOPClassUID), ExplicitVRLittleEndian)])
    status = assoc.send_c_store(path)
    assoc.release()
    print(json.dumps({"established": True, "statuses": [int(status.Status) if status and "Status" in status else None]}))


def same(args):
    a, b = pydicom.dcmread(args.files[0]), pydicom.dcmread(args.files[1])
    a.file_meta = b.file_meta = None
    sys.exit(0 if a == b else 1)


def check_stored(args):
    import os
    storage, files = args.rest[0], args.rest[1:]
    for path in files:
        sent = pydicom.dcmread(path)
        target = os.path.join(storage, str(sent.StudyInstanceUID), str(sent.SeriesInstanceUID), str(sent.SOPInstanceUID) + ".dcm")
        exists = os.path.exists(target)
        same = False
        if exists:
            try:
                stored = pydicom.dcmread(target)
                sent.file_meta = stored.file_meta = None
                same = sent == stored
            except Exception:
                same = False
        print(json.dumps({"file": path, "uid": str(sent.SOPInstanceUID), "path": target, "exists": exists, "same": same}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--dose", type=float, default=740)
    parser.add_argument("--study-uid")
    parser.add_argument("--series-uid")
    parser.add_argument("--instance-uid")
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--nm-rows", type=int, default=16)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--instance", type=int, default=1)
    parser.add_argument("--syntax", default="explicit")
    parser.add_argument("--start-datetime")
    parser.add_argument("--acquisition")
    parser.add_argument("--timezone-offset")
    parser.add_argument("--description")
    parser.add_argument("--image-type")
    parser.add_argument("--view-meaning")
    parser.add_argument("--collimator")
    parser.add_argument("--scan-velocity", type=float)
    parser.add_argument("--weight", type=float)
    parser.add_argument("--size", type=float)
    parser.add_argument("--indium-dose", type=float)
    parser.add_argument("--windows")
    parser.add_argument("--agent-code")
    parser.add_argument("--route")
    parser.add_argument("--route-code")
    args = parser.parse_args()
    if args.command in ("make-nm", "make-ct", "make-pt"):
        args.path = args.rest[0]
        {"make-nm": make_nm, "make-ct": make_ct, "make-pt": make_pt}[args.command](args)
    elif args.command == "make-ct-series":
        # DIR: COUNT slices of one series, CT0001.dcm …
        args.study_uid = args.study_uid or generate_uid()
        args.series_uid = args.series_uid or generate_uid()
        for i in range(1, args.count + 1):
            args.path, args.instance = f"{args.rest[0]}/CT{i:04d}.dcm", i
            make_ct(args)
    elif args.command in ("send", "send-mismatch"):
        args.host, args.port, args.called, args.calling = args.rest[:4]
        args.files = args.rest[4:]
        (send if args.command == "send" else send_mismatch)(args)
    elif args.command == "check-stored":
        check_stored(args)
    elif args.command == "same":
        args.files = args.rest
        same(args)
    else:
        parser.error(f"unknown command {args.command}")


if __name__ == "__main__":
    main()
