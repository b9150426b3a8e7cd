import Foundation
import Logging
import NMBridgeCore

/// What an earlier run left in `<storage>/.incoming`, dealt with at start before the
/// receiver listens (nothing there belongs to a live association yet).
///
/// A `.part` file with one link is a transfer cut short: it was never answered success
/// and never put in place, so it is removed. One with two links was put in place
/// (`StoragePath.commit` links it there) but the daemon stopped before its
/// `dicom.instance.stored` was journaled and the link in .incoming dropped: its sender was
/// never answered success, yet the file is whole and durable. It is journaled now, with
/// `recovered = true`, unless the journal already has its event (a crash between the
/// event and the unlink). Either way the .incoming name goes. So every file in place has
/// exactly one stored event. The same goes for a leftover `.studies.json.tmp`.
enum IncomingRecovery {
    struct Outcome: Equatable {
        var removedPartial = 0
        var removedBytes = 0
        var recovered = 0
        var alreadyJournaled = 0
        var unreadable = 0

        var isEmpty: Bool { self == Outcome() }

        var data: [String: JSONValue] {
            [
                "removed_partial": .int(Int64(removedPartial)), "removed_bytes": .int(Int64(removedBytes)),
                "recovered_instances": .int(Int64(recovered)), "already_journaled": .int(Int64(alreadyJournaled)),
                "unreadable": .int(Int64(unreadable)),
            ]
        }
    }

    /// Whether the journal has a `dicom.instance.stored` for this path and SHA-256.
    typealias JournalLookup = @Sendable (_ path: String, _ sha256: String) async throws -> Bool

    static func run(_ shared: ReceiverContext, isJournaled: JournalLookup?) async -> Outcome {
        let root = shared.settings.storage
        let logger = shared.logger
        unlink(root + "/.studies.json.tmp")
        let incoming = root + "/.incoming"
        var outcome = Outcome()
        // `.link` names first: each gives its `.part` back its single link.
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: incoming)) ?? []).sorted {
            ($0.hasSuffix(".link") ? 0 : 1, $0) < ($1.hasSuffix(".link") ? 0 : 1, $1)
        }
        for name in names {
            let path = incoming + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            // An empty file made ahead for a transfer that never came (ReadyFiles).
            if name.hasSuffix(ReadyFiles.suffix) {
                unlink(path)
                continue
            }
            // A `.link` is a second name made just before its rename: the rename never happened.
            if name.hasSuffix(".link") || info.st_nlink < 2 {
                if unlink(path) == 0 {
                    outcome.removedPartial += 1
                    outcome.removedBytes += Int(info.st_size)
                    logger.notice("removed a partial transfer left from before", metadata: ["path": "\(path)"])
                }
                continue
            }
            switch await recover(path, info: info, shared: shared, isJournaled: isJournaled) {
            case .recovered: outcome.recovered += 1
            case .alreadyJournaled: outcome.alreadyJournaled += 1
            case .unreadable: outcome.unreadable += 1
            case .keep: continue
            }
            unlink(path)
        }
        if !outcome.isEmpty {
            await shared.emit("dicom.storage.recovered", device: "dicom", data: outcome.data)
        }
        return outcome
    }

    enum Result { case recovered, alreadyJournaled, unreadable, keep }

    private static func recover(_ path: String, info: stat, shared: ReceiverContext, isJournaled: JournalLookup?) async -> Result {
        let logger = shared.logger
        guard let file = InstanceFile(recovering: path, root: shared.settings.storage),
            let dataset = try? AssociationHandler.readDataset(file),
            let study = dataset.string(Tag(0x0020, 0x000D)), let series = dataset.string(Tag(0x0020, 0x000E)),
            let instance = dataset.string(Tag(0x0008, 0x0018))
        else {
            logger.warning("removed an unreadable file from .incoming", metadata: ["path": "\(path)"])
            return .unreadable
        }
        let target = shared.settings.storage + "/" + StoragePath.relative(study: study, series: series, instance: instance)
        var placed = stat()
        // Replaced since by another transfer (or removed by someone): this name is all that is left of it.
        guard stat(target, &placed) == 0, placed.st_ino == info.st_ino, placed.st_dev == info.st_dev else { return .alreadyJournaled }
        guard let sha256 = StoragePath.sha256OfFile(path) else { return .keep }
        if let isJournaled {
            do {
                if try await isJournaled(target, sha256) { return .alreadyJournaled }
            } catch {
                logger.error("cannot look up a recovered instance in the journal; trying again at the next start", metadata: ["path": "\(path)", "error": "\(error)"])
                return .keep
            }
        }
        var data = InstanceSummary.fields(of: dataset)
        data["path"] = .string(target)
        data["bytes"] = .int(Int64(info.st_size))
        data["sha256"] = .string(sha256)
        data["recovered"] = .bool(true)
        let callingAE = file.sourceAE ?? ""
        data["calling_ae"] = .string(callingAE)
        data["peer"] = .string("unknown")
        data["transfer_syntax"] = .string(file.transferSyntax)
        let device = shared.device(forCallingAE: callingAE)
        guard await shared.emit("dicom.instance.stored", device: device, data: data) else { return .keep }
        shared.studies.add(study: study, series: series, device: device, fields: data, bytes: Int(info.st_size))
        logger.notice("journaled an instance put in place before a crash", metadata: ["path": "\(target)"])
        return .recovered
    }
}
