import ArgumentParser
import Foundation
import NMBridgeCore
import NMCatalog
import NMJournal
import NMQualityControl

/// The QC service catching up on a journal it has never judged: a busy department's
/// mix (gantry state changes, dose calibrator measurements, NM instances of a few
/// series) in a fresh journal, judged from seq 0 to the end.
///
/// `--fill-only` writes the journal and exits (for the peer, `sqlite3` reading the same
/// input events); otherwise it judges the journal `--dir/journal.db` filled earlier.
///
/// Output: `{"bench":"qc-catchup","impl":"nmbridge","events":N,"inputs":I,"findings":F,"seconds":…,"inputs_per_s":…}`
struct QualityControlCatchUp: BenchCommand {
    static let configuration = CommandConfiguration(
        commandName: "qc-catchup", abstract: "Judges a journal of N mixed events with the QC engine; seconds and input events/s.")

    @Option(help: "Events in the journal (1 in 50 a dose calibrator measurement, 1 in 100 an NM instance).")
    var events: Int = 200_000

    @Option(help: "Directory for the journal (created if missing).")
    var dir: String

    @Flag(help: "Only write the journal.")
    var fillOnly = false

    @Flag(help: "Only follow the journal's input events, without judging them (what QC costs beyond reading).")
    var followOnly = false

    func measure() async throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/journal.db"
        if fillOnly {
            removeDatabase(path)
            try await fill(path)
            return
        }
        let journal = try Journal.open(JournalOptions(path: path, node: "bench", registry: .standard, sync: .normal), logger: benchLogger())
        var settings = DaemonConfiguration.QualityControl(cursorFile: dir + "/qc-cursor.json")
        settings.checkSources = [
            .init(device: "dosecal-1", nuclide: "Cs-137", referenceBq: 7.4e6, referenceDate: Date(timeIntervalSince1970: 1_577_836_800), serial: "B")
        ]
        var engine = QCEngine(settings: settings, zone: TimeZone(identifier: "UTC")!, journal: journal)
        // Measurements and the studies' dicom.study.stable events (see `fill`).
        let expected = (0..<events).filter { $0 % 50 == 0 || ($0 % 100 != 1 && $0 % 2000 == 1999) }.count
        let start = ContinuousClock.now
        var inputs = 0
        var findings = 0
        var iterator = journal.follow(after: 0, filter: EventFilter(kinds: QCEngine.inputKinds)).makeAsyncIterator()
        while inputs < expected, let event = try await iterator.next() {
            inputs += 1
            if followOnly { continue }
            let drafts = try await engine.judge(event)
            findings += drafts.count
            if !drafts.isEmpty { try await journal.append(drafts) }
        }
        let seconds = (ContinuousClock.now - start) / .seconds(1)
        var line = JSONLine()
        line.add("bench", "qc-catchup")
        line.add("impl", followOnly ? "nmbridge-follow" : "nmbridge")
        line.add("events", events)
        line.add("inputs", inputs)
        line.add("findings", findings)
        line.add("seconds", seconds)
        line.add("inputs_per_s", Int(Double(inputs) / seconds))
        line.print()
    }

    /// One event every 2 s of a day and onwards; every 50th a measurement (a check source
    /// each morning), every 100th an NM instance (20 instances per series, one series per
    /// study, each study followed by its `dicom.study.stable`).
    func fill(_ path: String) async throws {
        let journal = try Journal.open(JournalOptions(path: path, node: "bench", registry: .standard, sync: .normal), logger: benchLogger())
        let start = Date(timeIntervalSince1970: 1_795_000_000)
        var batch: [EventDraft] = []
        let formatter = DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd HHmmss"
        for i in 0..<events {
            let time = start.addingTimeInterval(Double(i) * 2)
            if i % 50 == 0 {
                let check = (i / 50) % 40 == 0
                batch.append(
                    EventDraft(
                        time: time, device: "dosecal-1", driver: "bench", kind: "dosecal.measurement",
                        data: [
                            "nuclide": .string(check ? "Cs-137" : "Tc-99m"), "activity_bq": .double(check ? 6.4e6 : 740e6),
                            "reading": .string("x"), "unit": .string("MBq"),
                        ]))
            } else if i % 100 == 1 {
                let series = i / 2000
                let wall = time.addingTimeInterval(-3 * 3600)
                let parts = formatter.string(from: wall).split(separator: " ").map(String.init)
                batch.append(
                    EventDraft(
                        time: time, device: "spect-1", driver: "bench", kind: "dicom.instance.stored",
                        data: [
                            "sop_instance_uid": .string("1.2.\(i)"), "series_uid": .string("1.3.\(series)"), "study_uid": .string("1.4.\(series)"),
                            "modality": .string("NM"), "series_description": .string("WB Bone"), "transfer_syntax": .string("1.2.840.10008.1.2.1"),
                            "bytes": .int(1), "sha256": .string("0"), "path": .string("/x"), "calling_ae": .string("C"), "peer": .string("127.0.0.1"),
                            "acquisition_date": .string(parts[0]), "acquisition_time": .string(parts[1]),
                            "radiopharmaceutical": .object([
                                "agent": .string("Tc99m MDP"), "nuclide": .string("Tc-99m"), "total_dose_bq": .double(700e6),
                                "start_datetime": .string(formatter.string(from: wall.addingTimeInterval(-3 * 3600)).replacingOccurrences(of: " ", with: "")),
                            ]),
                            "energy_windows": .array([.object(["name": .string("TC"), "lower_kev": .double(126), "upper_kev": .double(154)])]),
                        ]))
            } else if i % 2000 == 1999 {
                // The receiver's word that the study of the last 20 instances is complete: QC judges it here.
                batch.append(
                    EventDraft(
                        time: time, device: "spect-1", driver: "bench", kind: "dicom.study.stable",
                        data: [
                            "study_uid": .string("1.4.\(i / 2000)"), "series": .int(1), "instances": .int(20), "bytes": .int(20),
                            "modalities": .array([.string("NM")]), "first_instance": .string(Timestamp.format(time)), "last_instance": .string(Timestamp.format(time)),
                        ]))
            } else {
                batch.append(
                    EventDraft(time: time, device: "gantry-1", driver: "bench", kind: "gantry.state", data: ["values": .object(["angle_deg": .double(Double(i % 360))])]))
            }
            if batch.count == 5000 {
                try await journal.append(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        try await journal.append(batch)
    }
}
