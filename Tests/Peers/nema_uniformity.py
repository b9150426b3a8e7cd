#!/usr/bin/env python3
"""Independent NEMA NU 1 flood-uniformity and COR analysis in NumPy (a test peer).

Written from the definitions in docs/qc.md ("Camera QC"), not from the Swift code, so
that the two implementations check each other. Vectorized where the Swift code loops.

Usage:
  nema_uniformity.py flood RAW ROWS COLUMNS ROW_MM COL_MM     (RAW: little-endian float64)
  nema_uniformity.py dicom FILE                               (every detector of an NM image)
  nema_uniformity.py bench FILE RUNS                          (CPU ms per run, one JSON line a run)
  nema_uniformity.py make-flood PATH [--heads 2] [--rows 256] [--spacing 1.6] [--counts 5000]
                     [--cold 0.9] [--seed 1] [--station SPECTCT1] [--date 20261129] [--time 070000]
      writes a multi-frame NM flood (pydicom), one frame per head with Detector Vector;
      --counts is the mean per 6.4 mm pixel; head 2 has a cold spot of depth 1 - --cold
  nema_uniformity.py make-cor PATH [--heads 2] [--offset 1.0,-0.4] [--projections 32] ...
      writes a SPECT acquisition of a point source (Image Type ...\\TOMO, Rotation Information)
The analysis commands print one JSON object per detector.
"""
import json
import math
import sys
import time
from collections import deque

import numpy as np

TARGET_MM = 6.4


def rebin_factor(spacing):
    if spacing is None or not (0 < spacing < TARGET_MM):
        return 1
    candidates = [max(1, math.floor(TARGET_MM / spacing)), max(1, math.floor(TARGET_MM / spacing)) + 1]
    # the closer pixel size wins; on a tie the smaller factor
    return min(candidates, key=lambda k: (abs(k * spacing - TARGET_MM), k))


def rebin(img, row_mm, col_mm):
    kr, kc = rebin_factor(row_mm), rebin_factor(col_mm)
    rows, cols = img.shape[0] // kr, img.shape[1] // kc
    cut = img[: rows * kr, : cols * kc]
    return cut.reshape(rows, kr, cols, kc).sum(axis=(1, 3)), kr, kc


def label_largest(mask):
    """Largest 4-connected component of mask (breadth-first)."""
    rows, cols = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best = None
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        comp = []
        queue = deque([start])
        seen[start] = True
        while queue:
            r, c = queue.popleft()
            comp.append((r, c))
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < rows and 0 <= cc < cols and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    queue.append((rr, cc))
        if best is None or len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask, dtype=bool)
    if best:
        out[tuple(np.array(best).T)] = True
    return out


def fill_holes(mask):
    rows, cols = mask.shape
    outside = np.zeros_like(mask, dtype=bool)
    queue = deque()
    for r in range(rows):
        for c in range(cols):
            if (r in (0, rows - 1) or c in (0, cols - 1)) and not mask[r, c]:
                outside[r, c] = True
                queue.append((r, c))
    while queue:
        r, c = queue.popleft()
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < rows and 0 <= cc < cols and not mask[rr, cc] and not outside[rr, cc]:
                outside[rr, cc] = True
                queue.append((rr, cc))
    return ~outside


def interior(mask):
    """Pixels of mask whose four neighbours are all in mask (the border of the matrix is outside)."""
    p = np.pad(mask, 1, constant_values=False)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def scale_field(mask, scale=0.75):
    rr, cc = np.nonzero(mask)
    if rr.size == 0:
        return mask.copy()
    cr, ccn = (rr.min() + rr.max()) / 2, (cc.min() + cc.max()) / 2
    rows, cols = mask.shape
    r_idx = np.floor((np.arange(rows) - cr) / scale + cr + 0.5).astype(int)
    c_idx = np.floor((np.arange(cols) - ccn) / scale + ccn + 0.5).astype(int)
    rv = (r_idx >= 0) & (r_idx < rows)
    cv = (c_idx >= 0) & (c_idx < cols)
    src = mask[np.clip(r_idx, 0, rows - 1)][:, np.clip(c_idx, 0, cols - 1)]
    return mask & src & rv[:, None] & cv[None, :]


def smooth(img, support):
    k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=float)
    vals = np.pad(np.where(support, img, 0.0), 1)
    weights = np.pad(support.astype(float), 1)
    num = np.zeros_like(img, dtype=float)
    den = np.zeros_like(img, dtype=float)
    rows, cols = img.shape
    for dr in range(3):
        for dc in range(3):
            num += k[dr, dc] * vals[dr : dr + rows, dc : dc + cols]
            den += k[dr, dc] * weights[dr : dr + rows, dc : dc + cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 0.0)


def uniformity(values):
    hi, lo = values.max(), values.min()
    return 100.0 * (hi - lo) / (hi + lo)


def differential(sm, field):
    best = 0.0
    for arr, m in ((sm, field), (sm.T, field.T)):
        if arr.shape[1] < 5:
            continue
        win = np.lib.stride_tricks.sliding_window_view(arr, 5, axis=1)
        ok = np.lib.stride_tricks.sliding_window_view(m, 5, axis=1).all(axis=2)
        if ok.any():
            hi = win.max(axis=2)[ok]
            lo = win.min(axis=2)[ok]
            best = max(best, float((100.0 * (hi - lo) / (hi + lo)).max()))
    return best


def noise(mean, field, support):
    """Counting-noise IU: x solves sum over field of (1 - Phi(x / sigma_p)) / 1.2 = 0.625, with
    sigma_p = s_p * sqrt(mean) and s_p = sqrt(sum w^2) / sum w over the smoothing weights used."""
    k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=float)
    p = np.pad(support.astype(float), 1)
    rows, cols = support.shape
    s1 = np.zeros(support.shape)
    s2 = np.zeros(support.shape)
    for dr in range(3):
        for dc in range(3):
            used = p[dr : dr + rows, dc : dc + cols]
            s1 += k[dr, dc] * used
            s2 += k[dr, dc] ** 2 * used
    values, counts = np.unique(np.sqrt(s2[field]) / s1[field], return_counts=True)  # a handful of distinct s_p
    low, high = 0.0, 12.0
    for _ in range(60):
        z = (low + high) / 2
        if sum(c * 0.5 * math.erfc(z / v / math.sqrt(2)) for v, c in zip(values, counts)) / 1.2 > 0.625:
            low = z
        else:
            high = z
    return 100.0 * (low + high) / 2 / math.sqrt(mean)


def analyze(img, row_mm, col_mm):
    total = float(img.sum())
    b, kr, kc = rebin(img.astype(float), row_mm, col_mm)
    rows, cols = b.shape
    centre = b[rows // 4 : max(rows // 4 + 1, rows - rows // 4), cols // 4 : max(cols // 4 + 1, cols - cols // 4)]
    field = fill_holes(label_largest(b >= 0.5 * centre.mean()))
    cfov_mean = b[scale_field(field)].mean()
    edge = field & ~interior(field)
    kept = field & ~(edge & (b < 0.75 * cfov_mean))
    ufov = interior(kept)
    cfov = scale_field(ufov)
    sm = smooth(b, ufov)
    out = {"rows": rows, "columns": cols, "row_factor": kr, "column_factor": kc, "total_counts": total,
           "edge_pixels_dropped": int((field & ~kept).sum())}
    for name, m in (("ufov", ufov), ("cfov", cfov)):
        mean = float(b[m].mean())
        out[name] = {"integral_pct": uniformity(sm[m]), "differential_pct": differential(sm, m), "pixels": int(m.sum()),
                     "mean_counts": mean, "expected_noise_pct": noise(mean, m, ufov)}
    return out


def read_dicom_detectors(path):
    import pydicom

    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.astype(float)
    if frames.ndim == 2:
        frames = frames[None]
    vector = list(getattr(ds, "DetectorVector", [])) or [1] * frames.shape[0]
    spacing = [float(v) for v in getattr(ds, "PixelSpacing", [0, 0])] or [0, 0]
    heads = {}
    for frame, det in zip(frames, vector):
        heads.setdefault(int(det), []).append(frame)
    return {det: (np.sum(fr, axis=0), spacing[0] or None, spacing[1] or None) for det, fr in sorted(heads.items())}


def write_nm(path, frames, detectors, spacing, args, description, image_type, rotation=None):
    import pydicom
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "NM"
    ds.ImageType = image_type
    ds.PatientID, ds.PatientName = "QC", "QC^Camera"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = args.date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = args.time
    ds.StationName = args.station
    ds.SeriesDescription = description
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames[0].shape
    ds.PixelSpacing = [f"{spacing:g}", f"{spacing:g}"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.DetectorVector = detectors
    ds.NumberOfDetectors = len(set(detectors))
    items = []
    for d in sorted(set(detectors)):
        item = Dataset()
        item.StartAngle = "0" if d == 1 else "180"
        items.append(item)
    ds.DetectorInformationSequence = Sequence(items)
    if rotation:
        item = Dataset()
        item.StartAngle = "0"
        item.AngularStep = f"{rotation:g}"
        item.RotationDirection = "CW"
        item.NumberOfFramesInRotation = len(frames) // len(set(detectors))
        ds.RotationInformationSequence = Sequence([item])
    ds.PixelData = np.clip(np.stack(frames), 0, 65535).astype("<u2").tobytes()
    ds.save_as(path, write_like_original=False)


def make_flood(args):
    rng = np.random.default_rng(args.seed)
    k = max(1, round(TARGET_MM / args.spacing))
    per_pixel = args.counts / (k * k)
    rows = args.rows
    yy, xx = np.mgrid[0:rows, 0:rows]
    field = (yy >= rows // 16) & (yy < rows - rows // 16) & (xx >= rows // 20) & (xx < rows - rows // 20)
    frames, detectors = [], []
    for head in range(1, args.heads + 1):
        mean = np.where(field, per_pixel, 0.0)
        if head == 2:
            spot = (yy - rows * 0.4) ** 2 + (xx - rows * 0.6) ** 2 < (rows / 20) ** 2
            mean = np.where(spot & field, mean * args.cold, mean)
        frames.append(rng.poisson(mean).astype(float))
        detectors.append(head)
    write_nm(args.path, frames, detectors, args.spacing, args, args.description or "Daily flood", ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"])


def make_cor(args):
    rng = np.random.default_rng(args.seed)
    offsets = [float(v) for v in args.offset.split(",")]
    rows = args.rows
    yy, xx = np.mgrid[0:rows, 0:rows]
    step = 360.0 / args.projections
    frames, detectors = [], []
    for head in range(1, args.heads + 1):
        for k in range(args.projections):
            theta = math.radians((0 if head == 1 else 180) + k * step)
            x = (rows - 1) / 2 + offsets[head - 1] + rows * 0.2 * math.cos(theta + 0.4)
            y = rows * 0.45
            frames.append(rng.poisson(4000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 3.0) + 1).astype(float))
            detectors.append(head)
    write_nm(args.path, frames, detectors, args.spacing, args, args.description or "COR point source",
             ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"], rotation=step)


def main(argv):
    if argv[1] in ("make-flood", "make-cor"):
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("command")
        parser.add_argument("path")
        parser.add_argument("--heads", type=int, default=2)
        parser.add_argument("--rows", type=int, default=256)
        parser.add_argument("--spacing", type=float, default=1.6)
        parser.add_argument("--counts", type=float, default=5000)
        parser.add_argument("--cold", type=float, default=0.9)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--station", default="SPECTCT1")
        parser.add_argument("--date", default="20261129")
        parser.add_argument("--time", default="070000")
        parser.add_argument("--description")
        parser.add_argument("--offset", default="1.0,-0.4")
        parser.add_argument("--projections", type=int, default=32)
        args = parser.parse_args(argv[1:])
        (make_flood if args.command == "make-flood" else make_cor)(args)
        return
    if argv[1] == "flood":
        rows, cols = int(argv[3]), int(argv[4])
        img = np.fromfile(argv[2], dtype="<f8").reshape(rows, cols)
        print(json.dumps(analyze(img, float(argv[5]) or None, float(argv[6]) or None)))
    elif argv[1] == "dicom":
        for det, (img, rmm, cmm) in read_dicom_detectors(argv[2]).items():
            result = analyze(img, rmm, cmm)
            result["detector"] = det
            print(json.dumps(result))
    elif argv[1] == "bench":
        # One JSON line per run: CPU time to read + decode + analyse every head, and the analysis alone.
        for _ in range(int(argv[3])):
            start = time.process_time()
            heads = read_dicom_detectors(argv[2])
            decoded = time.process_time()
            total = sum(analyze(img, rmm, cmm)["ufov"]["integral_pct"] for img, rmm, cmm in heads.values())
            end = time.process_time()
            print(json.dumps({"bench": "camera-flood", "impl": "numpy", "heads": len(heads), "cpu_ms": (end - start) * 1000,
                              "analysis_cpu_ms": (end - decoded) * 1000, "ufov_iu_sum": total}))
    else:
        sys.exit("unknown command " + argv[1])


if __name__ == "__main__":
    main(sys.argv)
