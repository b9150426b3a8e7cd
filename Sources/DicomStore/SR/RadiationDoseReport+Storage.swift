import Crypto
import Foundation
import NMBridgeCore

#if canImport(Glibc)
import Glibc
#endif

extension RadiationDoseReport {
    /// What was written.
    public struct Written: Sendable {
        public var path: String
        public var bytes: Int
        public var sha256: String
    }

    /// Writes the report beside the study's instances, `<storage>/<Study>/<Series>/<SOP>.dcm`,
    /// durably (temporary file, fsync, rename, directory fsync). The same report written
    /// again (its UIDs are derived from the administration) leaves identical bytes.
    public func write(storage: String) throws(StoreError) -> Written {
        let bytes = partTen()
        let study = image.string(Tag(0x0020, 0x000D)) ?? ""
        let relative = StoragePath.relative(study: study, series: seriesInstance, instance: sopInstance)
        var directory = storage
        if mkdir(directory, 0o750) != 0, errno != EEXIST { throw .resources("cannot create \(directory): \(InstanceFile.errorText())") }
        for component in relative.split(separator: "/").dropLast() {
            let parent = directory
            directory += "/" + component
            if mkdir(directory, 0o750) == 0 {
                StoragePath.syncDirectory(parent)
            } else if errno != EEXIST {
                throw .resources("cannot create \(directory): \(InstanceFile.errorText())")
            }
        }
        let target = storage + "/" + relative
        let temporary = target + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw .resources("cannot create \(temporary): \(InstanceFile.errorText())") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n <= 0 {
                let error = InstanceFile.errorText()
                close(fd)
                unlink(temporary)
                throw .resources("cannot write \(temporary): \(error)")
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            let error = InstanceFile.errorText()
            close(fd)
            unlink(temporary)
            throw .resources("cannot fsync \(temporary): \(error)")
        }
        close(fd)
        guard rename(temporary, target) == 0 else {
            let error = InstanceFile.errorText()
            unlink(temporary)
            throw .resources("cannot move the report to \(target): \(error)")
        }
        StoragePath.syncDirectory(directory)
        return Written(path: target, bytes: bytes.count, sha256: Hex.encode(SHA256.hash(data: bytes)))
    }

    /// The dataset of a stored instance up to its pixel data (at most the first MiB), for
    /// the identity a report copies. Errors name the file.
    public static func readHeader(path: String) throws(RequesterError) -> Dataset {
        let instance = try StoredInstance.open(path: path)
        guard instance.transferSyntax != DICOM.TransferSyntax.deflatedExplicitLittle else {
            throw RequesterError(.file, "\(path) is deflated; its header is not read for a report")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RequesterError(.file, "cannot open \(path): \(InstanceFile.errorText())") }
        defer { close(fd) }
        let count = max(0, min(instance.size - instance.datasetOffset, 1 << 20))
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(instance.datasetOffset)) }
        guard n == count else { throw RequesterError(.file, "cannot read \(path)") }
        var reader = DatasetReader(bytes: bytes, encoding: DatasetReader.Encoding(transferSyntax: instance.transferSyntax))
        do {
            return try reader.read()
        } catch {
            throw RequesterError(.file, "\(path): \(error)")
        }
    }
}
