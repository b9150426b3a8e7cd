import NMBridgeCore

extension EventKindRegistry {
    /// The findings the QC service derives from the journal (docs/qc.md).
    public static let qcKinds: [EventKind] = [
        EventKind(
            "qc.dosecal.constancy",
            "A check-source measurement compared with its decay-corrected reference (docs/qc.md). Severity: info (pass), warning (investigate), error (fail). The envelope's time and device are the measurement's.",
            fields: qcCommon + [
                EventField("result", .string, "\"pass\", \"investigate\" (beyond `investigate_pct`) or \"fail\" (beyond `fail_pct`)."),
                EventField("deviation_pct", .number, unit: "%", "(measured − expected) / expected × 100."),
                EventField("measured_bq", .number, unit: "Bq", "The measured activity."),
                EventField("expected_bq", .number, unit: "Bq", "The reference activity decayed to the measurement time."),
                EventField("nuclide", .string, "The check source's nuclide."),
                EventField("source_serial", .string, "The check source's serial number."),
                EventField("reference_bq", .number, unit: "Bq", "The certified activity."),
                EventField("reference_date", .string, "When the certified activity held (RFC 3339)."),
                EventField("investigate_pct", .number, unit: "%", "The limit used for investigate."),
                EventField("fail_pct", .number, unit: "%", "The limit used for fail."),
                EventField("calibration_number", .string, required: false, "The calibrator setting used."),
                // A check source read on another setting (docs/qc.md, "Check sources on any setting").
                EventField("setting", .string, required: false, "The setting the source was read on, when not its own nuclide (e.g. Tc-99m for Cs-137)."),
                EventField("source_nuclide", .string, required: false, "With `setting`: the check source's own nuclide (`nuclide` is then the setting as reported)."),
                EventField("instrument_model", .string, required: false, "The calibrator's model."),
                EventField("instrument_serial", .string, required: false, "The calibrator's serial number."),
            ]),
        EventKind(
            "qc.dosecal.constancy_missing", severity: .warning,
            "A patient dose was measured on a calibrator that had no passing constancy check yet that (site-local) day. The envelope's time and device are the measurement's.",
            fields: qcCommon + [
                EventField("nuclide", .string, "The patient dose's nuclide."),
                EventField("measured_bq", .number, unit: "Bq", "The patient dose's activity."),
                EventField("reason", .string, "Why: no check that day, only an investigate/fail result, or no check source configured."),
                EventField("last_result", .string, required: false, "The day's last constancy result on this calibrator, if any."),
            ]),
        EventKind(
            "qc.administration.reconciled",
            "The administered activity in the header of a study's primary series compared with the dose calibrator, one per radiopharmaceutical, judged when the study is stable (docs/qc.md, Studies). Severity: info (pass), warning (fail), notice (not comparable). The envelope's time is the `dicom.study.stable` event's; the device is the calibrator matched, else the DICOM sender.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"fail\", or why no comparison was made: \"no_measurement\", \"no_header_dose\", \"implausible_header\", \"no_injection_time\", \"no_nuclide\"."),
                EventField("finding", .string, "The result in words, naming the values."),
                EventField("nuclide", .string, required: false, "Canonical nuclide from the header."),
                EventField("injection_time", .string, required: false, "Radiopharmaceutical start (date)time as an instant (RFC 3339)."),
                EventField("header_bq", .number, unit: "Bq", required: false, "Radionuclide Total Dose, normalized to Bq per SOP class."),
                EventField("measured_bq", .number, unit: "Bq", required: false, "Dose calibrator activity decayed to the injection time, minus the residual."),
                EventField("deviation_pct", .number, unit: "%", required: false, "(header − measured) / measured × 100."),
                EventField("tolerance_pct", .number, unit: "%", required: false, "The limit used."),
                EventField("measurement_seq", .integer, required: false, "The matched `dosecal.measurement`."),
                EventField("measurement_time", .string, required: false, "When it was measured."),
                EventField("measurement_bq", .number, unit: "Bq", required: false, "The activity as measured (before decay correction)."),
                EventField("candidates", .integer, required: false, "Measurements of that nuclide in the window (more than 1: the latest was taken)."),
                EventField("residual_seq", .integer, required: false, "The residual measurement subtracted, if any."),
                EventField("residual_bq", .number, unit: "Bq", required: false, "The residual decayed back to the injection time."),
            ]),
        EventKind(
            "qc.protocol.uptake_delay",
            "Acquisition time minus injection time of the study's primary series against the matched protocol's window, once per study. Severity: info (pass), warning otherwise.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"too_early\", \"too_late\" or \"unknown\" (a time is missing)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("delay_min", .number, unit: "min", required: false, "Acquisition minus injection."),
                EventField("min_min", .number, unit: "min", "The protocol's shortest delay."),
                EventField("max_min", .number, unit: "min", "The protocol's longest delay."),
                EventField("injection_time", .string, required: false, "RFC 3339."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.protocol.energy_window",
            "NM/PET energy windows of each series of a study against the matched protocol's photopeaks (per radiopharmaceutical when the protocol gives them by nuclide). Severity: info (pass), warning otherwise.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"fail\" or \"missing\" (no window for a photopeak)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("windows", .array, "Per photopeak: {photopeak_kev, name, lower_kev, upper_kev, center_kev, width_pct, result}."),
                EventField("finding", .string, "The result in words."),
                EventField("nuclide", .string, required: false, "The radiopharmaceutical's nuclide, when the protocol gives photopeaks by nuclide (`unknown` result: none for it)."),
            ]),
        // Study-level protocol findings (issue 15).
        EventKind(
            "qc.protocol.supplementary_view",
            "A series of a study that is not its primary acquisition (a static spot view, a SPECT/CT, a later sweep): recorded with its times, never judged for uptake delay. Judged when the study is stable.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"supplementary\"."),
                EventField("primary_series_uid", .string, "The study's primary series."),
                EventField("primary_instance_seq", .integer, "The primary's first `dicom.instance.stored`."),
                EventField("primary_series_description", .string, required: false, "Its description."),
                EventField("primary_acquisition_time", .string, required: false, "RFC 3339."),
                EventField("protocol", .string, required: false, "The `[[qc.protocol]]` of the view, else of the primary."),
                EventField("injection_time", .string, required: false, "RFC 3339."),
                EventField("delay_min", .number, unit: "min", required: false, "Acquisition minus injection."),
                EventField("after_primary_min", .number, unit: "min", required: false, "Acquisition minus the primary's acquisition (negative: before it)."),
                EventField("view_codes", .array, required: false, "Code meanings of the View Code Sequence."),
                EventField("finding", .string, "The view in words."),
            ]),
        EventKind(
            "qc.protocol.activity",
            "The administered activity (header Radionuclide Total Dose) of a study's primary series against the protocol's range, weight-based when the protocol gives MBq/kg and the header a weight. Severity: info (pass), warning otherwise.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"too_low\", \"too_high\" or \"unknown\" (no usable dose; or weight-based without a weight or fixed limit)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("nuclide", .string, required: false, "The radiopharmaceutical judged."),
                EventField("activity_bq", .number, unit: "Bq", required: false, "The header's total dose."),
                EventField("low_bq", .number, unit: "Bq", required: false, "The lowest activity that passes."),
                EventField("high_bq", .number, unit: "Bq", required: false, "The highest activity that passes."),
                EventField("expected_bq", .number, unit: "Bq", required: false, "Weight × MBq/kg clamped to the protocol's limits."),
                EventField("weight_kg", .number, unit: "kg", required: false, "Patient's Weight."),
                EventField("activity_min_bq", .number, unit: "Bq", required: false, "The protocol's `activity_min_mbq`."),
                EventField("activity_max_bq", .number, unit: "Bq", required: false, "The protocol's `activity_max_mbq`."),
                EventField("activity_mbq_per_kg", .number, unit: "MBq/kg", required: false, "The protocol's `activity_mbq_per_kg`."),
                EventField("tolerance_pct", .number, unit: "%", required: false, "The protocol's `activity_tolerance_pct` (weight-based)."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.protocol.scan_speed",
            "The whole-body scan speed of a series (Scan Velocity) against the protocol's range. Severity: info (pass), warning otherwise.",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"too_slow\", \"too_fast\" or \"unknown\" (no Scan Velocity)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("speed_cm_per_min", .number, unit: "cm/min", required: false, "The scan speed."),
                EventField("scan_velocity_mm_per_s", .number, unit: "mm/s", required: false, "Scan Velocity (0018,1300) as in the header."),
                EventField("min_cm_per_min", .number, unit: "cm/min", "The protocol's slowest speed."),
                EventField("max_cm_per_min", .number, unit: "cm/min", "The protocol's fastest speed."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.protocol.collimator",
            "The collimators of an NM series against the protocol's names. Severity: info (pass), error (fail), warning (unknown).",
            fields: qcCommon + qcSeries + [
                EventField("result", .string, "\"pass\", \"fail\" or \"unknown\" (no Collimator/Grid Name in the header)."),
                EventField("protocol", .string, "The `[[qc.protocol]]` that matched."),
                EventField("collimators", .array, "The names in the header."),
                EventField("allowed", .array, "The protocol's `collimator` patterns."),
                EventField("finding", .string, "The result in words."),
            ]),
        // qc.camera.* (camera QC, docs/qc.md "Camera QC")
        EventKind(
            "qc.camera.uniformity",
            "A flood of one detector head judged by NEMA NU 1 integral and differential uniformity (docs/qc.md). Severity: info (pass), warning (investigate), error (fail), notice (low_counts, not_judged). The envelope's time is the instance's arrival, its device the `[[qc.camera]]` id.",
            fields: qcCommon + qcCamera + [
                EventField("head", .integer, required: false, "Detector head (Detector Vector value); absent when the file could not be read."),
                EventField("result", .string, "\"pass\", \"investigate\" (a limit or the baseline), \"fail\", \"low_counts\" (beyond a limit, but counting noise alone comes close to it), \"not_judged\" (unreadable or compressed image; `finding` says why)."),
                EventField("ufov", .object, required: false, "{integral_pct, differential_pct} over the useful field of view (smoothed)."),
                EventField("cfov", .object, required: false, "{integral_pct, differential_pct} over the central field of view (UFOV scaled by 75 %)."),
                EventField("pixel_mm", .number, unit: "mm", required: false, "Pixel size after rebinning (NEMA: 6.4 mm ± 30 %)."),
                EventField("rebin_factor", .integer, required: false, "Original pixels summed per rebinned pixel along a row."),
                EventField("pixel_size_ok", .boolean, required: false, "Whether the rebinned pixel is within 6.4 mm ± 30 %."),
                EventField("mean_counts", .number, required: false, "Mean counts per rebinned UFOV pixel (before smoothing)."),
                EventField("total_counts", .number, required: false, "All counts of the head's image."),
                EventField("expected_noise_pct", .number, unit: "%", required: false, "The UFOV integral uniformity counting noise alone gives at this count density."),
                EventField("low_counts", .boolean, required: false, "expected_noise_pct ≥ low_counts_fraction × the UFOV integral investigate limit."),
                EventField("ufov_pixels", .integer, required: false, "Rebinned pixels in the UFOV; also cfov_pixels, edge_pixels_dropped."),
                EventField("limits", .object, required: false, "{ufov_integral_pct, cfov_integral_pct, ufov_differential_pct, cfov_differential_pct}: each {investigate, fail}."),
                EventField("baseline_median_pct", .number, unit: "%", required: false, "Median UFOV integral uniformity of the head's latest passing floods (`baseline_floods` of them)."),
                EventField("baseline_deviation_pp", .number, required: false, "UFOV integral uniformity minus the baseline, percentage points."),
                EventField("map", .object, required: false, "The smoothed flood for the report: rows, columns, low, high, pixels_b64 (1 byte a pixel: 0 outside the UFOV, 1–255 from low to high), cfov_b64 (0/1), min_at, max_at, cfov_min_at, cfov_max_at ([row, column])."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.camera.cor",
            "The centre of rotation of one head from a SPECT acquisition of a point source: fit of x(θ) = A cos θ + B sin θ + C to the centroids (docs/qc.md). Severity as for uniformity.",
            fields: qcCommon + qcCamera + [
                EventField("head", .integer, required: false, "Detector head."),
                EventField("result", .string, "\"pass\", \"investigate\", \"fail\" or \"not_judged\"."),
                EventField("offset_px", .number, required: false, "C minus the matrix centre ((columns − 1) / 2), pixels."),
                EventField("offset_mm", .number, unit: "mm", required: false, "The same in mm (Pixel Spacing)."),
                EventField("residual_px", .number, required: false, "RMS of the fit's residuals, pixels; also residual_mm."),
                EventField("residual_mm", .number, unit: "mm", required: false, "RMS of the fit's residuals."),
                EventField("axial_drift_px", .number, required: false, "Range of the point's row position over the orbit, pixels."),
                EventField("axial_drift_mm", .number, unit: "mm", required: false, "The same in mm."),
                EventField("projections", .integer, required: false, "Projections of this head."),
                EventField("limits", .object, required: false, "{offset_px, axial_drift_px}: each {investigate, fail}."),
                EventField("finding", .string, "The result in words."),
            ]),
        EventKind(
            "qc.camera.qc_missing", severity: .warning,
            "A patient study (first instance of a series) acquired on a camera without a passing flood of every head earlier that site-local day.",
            fields: qcCommon + qcCamera + [
                EventField("result", .string, "Always \"missed\"."),
                EventField("reason", .string, "Why: no flood that day, or floods that did not pass."),
                EventField("heads_missing", .array, "Heads without a passing flood."),
                EventField("last_result", .string, required: false, "The day's last flood result, if any."),
                EventField("patient_id", .string, required: false, "Patient ID."),
                EventField("accession_number", .string, required: false, "Accession number."),
            ]),
    ] + dosecalQAKinds  // EventKinds+DosecalQA.swift

    /// Fields every qc.* event has.
    static let qcCommon = [
        EventField("source_seq", .integer, "The journal event that was judged (the QC service's cursor)."),
        EventField("local_date", .string, "The site-local date the finding belongs to (`[daemon] time_zone`), YYYY-MM-DD."),
    ]

    /// Fields of the qc.camera.* events.
    static let qcCamera = [
        EventField("camera", .string, "The `[[qc.camera]]` id."),
        EventField("sop_instance_uid", .string, required: false, "The judged instance."),
        EventField("series_uid", .string, required: false, "Its series; also study_uid, series_description, station_name."),
        EventField("acquisition_time", .string, required: false, "Acquisition (else series, else study) date/time, RFC 3339."),
    ]

    /// Fields of the per-series qc.* events.
    static let qcSeries = [
        EventField("study_uid", .string, required: false, "Study Instance UID."),
        EventField("series_uid", .string, required: false, "Series Instance UID."),
        EventField("patient_id", .string, required: false, "Patient ID."),
        EventField("accession_number", .string, required: false, "Accession number."),
        EventField("series_description", .string, required: false, "Series description."),
        EventField("agent", .string, required: false, "Radiopharmaceutical."),
        EventField("modality", .string, required: false, "NM or PT."),
        EventField("role", .string, required: false, "\"primary\" or \"supplementary\": the series' place in its study."),
        EventField("view", .string, required: false, "Kind of acquisition from Image Type: whole body, static, SPECT, gated SPECT, dynamic, gated planar, PET, series."),
        EventField("image_type", .array, required: false, "Image Type (0008,0008)."),
        EventField("acquisition_time", .string, required: false, "RFC 3339."),
        EventField("instance_seq", .integer, required: false, "The series' first `dicom.instance.stored` (`source_seq` is the `dicom.study.stable` judged)."),
        EventField("replaces_primary_series_uid", .string, required: false, "A primary chosen only as the first series, replaced by this one (docs/qc.md)."),
    ]
}
