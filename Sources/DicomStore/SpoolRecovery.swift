import Foundation
import Logging
import NMBridgeCore

/// At start, before the receiver listens (after `IncomingRecovery`): every whole record
/// the spool holds is put in place and journaled, unless the journal has its instance
/// already (put in place and journaled before the stop, its record not yet released). A
/// record cut short or failing its checksum is discarded: the spool's sync never covered
/// it, so its sender never heard success. Then every segment is free again.
enum SpoolRecovery {
    struct Outcome: Equatable {
        var recovered = 0
        var alreadyJournaled = 0
        var torn = 0
        var unreadable = 0
        var failed = 0

        var isEmpty: Bool { self == Outcome() }

        var data: [String: JSONValue] {
            [
                "recovered_instances": .int(Int64(recovered)), "already_journaled": .int(Int64(alreadyJournaled)),
                "torn": .int(Int64(torn)), "unreadable": .int(Int64(unreadable)), "failed": .int(Int64(failed)),
            ]
        }
    }

    /// Why the spool could not be recovered (the receiver does not start: what it holds
    /// must not be overwritten).
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func run(_ shared: ReceiverContext, spool: InstanceSpool, isJournaled: IncomingRecovery.JournalLookup?) async throws -> Outcome {
        let root = shared.settings.storage
        let logger = shared.logger
        let found: (records: [InstanceSpool.Found], torn: Int)
        do {
            found = try spool.open()
        } catch {
            throw Failure(description: "cannot open the DICOM spool \(spool.directory): \(error)")
        }
        var outcome = Outcome(torn: found.torn)
        let incoming = root + "/.incoming"
        if mkdir(incoming, 0o750) != 0, errno != EEXIST {
            throw Failure(description: "cannot create \(incoming): \(InstanceFile.errorText())")
        }
        for record in found.records {
            let path = incoming + "/" + UUID().uuidString.lowercased() + ".part"
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
            guard fd >= 0 else { throw Failure(description: "cannot create \(path): \(InstanceFile.errorText())") }
            let copied = spool.copy(record, to: fd)
            let synced = copied != nil && fsync(fd) == 0
            close(fd)
            guard let sha256 = copied, synced else {
                unlink(path)
                throw Failure(description: "cannot copy a record of the DICOM spool \(spool.directory) to \(path): \(InstanceFile.errorText())")
            }
            guard let file = InstanceFile(recovering: path, root: root), let dataset = try? AssociationHandler.readDataset(file),
                let study = dataset.string(Tag(0x0020, 0x000D)), let series = dataset.string(Tag(0x0020, 0x000E)),
                let instance = dataset.string(Tag(0x0008, 0x0018))
            else {
                logger.warning("discarded a spool record that is not a readable instance", metadata: ["spool.sequence": "\(record.sequence)"])
                unlink(path)
                outcome.unreadable += 1
                continue
            }
            let relative = StoragePath.relative(study: study, series: series, instance: instance)
            let target = root + "/" + relative
            if let isJournaled {
                let journaled: Bool
                do {
                    journaled = try await isJournaled(target, sha256)
                } catch {
                    unlink(path)
                    throw Failure(description: "cannot look up a spooled instance (\(target)) in the journal: \(error)")
                }
                if journaled {
                    unlink(path)
                    outcome.alreadyJournaled += 1
                    continue
                }
            }
            var data = InstanceSummary.fields(of: dataset)
            let callingAE = file.sourceAE ?? ""
            data["calling_ae"] = .string(callingAE)
            data["peer"] = .string(record.peer.isEmpty ? "unknown" : record.peer)
            data["transfer_syntax"] = .string(file.transferSyntax)
            data["recovered"] = .bool(true)
            let device = shared.device(forCallingAE: callingAE)
            let committed: (path: String, outcome: StoragePath.Outcome)
            do throws(StoreError) {
                committed = try StoragePath.commit(file, sha256: sha256, relativePath: relative, policy: shared.settings.duplicates)
            } catch where error.status == DICOM.Status.outOfResources {
                unlink(path)
                throw Failure(description: "cannot put a spooled instance in place (\(target)): \(error)")
            } catch {
                unlink(path)
                data["status"] = .string(String(format: "0x%04X", error.status))
                data["error"] = .string(error.message + " (after its sender was answered success; its bytes were in the spool)")
                await shared.emit("dicom.instance.failed", device: device, severity: .error, data: data)
                outcome.failed += 1
                continue
            }
            data["path"] = .string(committed.path)
            data["bytes"] = .int(Int64(file.size))
            data["sha256"] = .string(sha256)
            var counted = true
            switch committed.outcome {
            case .stored(let replaced):
                if let replaced {
                    await shared.emit(
                        "dicom.instance.replaced", device: device, severity: .notice,
                        data: ["path": .string(committed.path), "old_sha256": .string(replaced), "new_sha256": .string(sha256),
                               "sop_instance_uid": .string(instance)])
                }
            case .identical:
                counted = false
                data["duplicate"] = .string("identical bytes were already stored")
            case .kept(let existing):
                counted = false
                data["sha256"] = .string(existing)
                data["duplicate"] = .string("different bytes (SHA-256 \(sha256)) were received and discarded: duplicates = \"keep\"")
            }
            await shared.emit("dicom.instance.stored", device: device, data: data)
            if counted { shared.studies.add(study: study, series: series, device: device, fields: data, bytes: file.size) }
            unlink(path)
            outcome.recovered += 1
        }
        spool.recovered()
        if !outcome.isEmpty {
            logger.notice("recovered the DICOM spool", metadata: ["spool": "\(spool.directory)", "recovered": "\(outcome.recovered)", "torn": "\(outcome.torn)"])
            await shared.emit("dicom.spool.recovered", device: "dicom", data: outcome.data)
        }
        return outcome
    }
}
