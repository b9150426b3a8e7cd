import Crypto
import Foundation
import NMBridgeCore
import Synchronization

/// Why an instance could not be stored; the C-STORE status it maps to.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var status: UInt16
    public var message: String
    public var description: String { message }

    static func resources(_ message: String) -> StoreError { StoreError(status: DICOM.Status.outOfResources, message: message) }
    static func unreadable(_ message: String) -> StoreError { StoreError(status: DICOM.Status.cannotUnderstand, message: message) }
}

/// One instance being received: a temporary file under `<root>/.incoming`, a Part-10
/// preamble and file meta built from the presentation context, then the dataset bytes as
/// they arrive (any group 0002 elements at their start dropped). Hashed on the way when not
/// spooled; a spooled file's SHA-256 is taken by the materializer, off the answer's path.
/// Memory stays bounded whatever the instance size. Used by one association's serial
/// storage queue only, hence unchecked Sendable.
final class InstanceFile: @unchecked Sendable {
    let root: String
    let temporaryPath: String
    let encoding: DatasetReader.Encoding
    /// Deflated: the bytes on the wire are compressed; stored as received, inflated to read.
    let deflated: Bool
    private var fd: Int32
    /// Hashing as the bytes are written (not spooled); else `sha256()` reads the file.
    private let hashing: Bool
    private var hasher = SHA256()
    /// Bytes written so far (file meta included).
    private(set) var size = 0
    /// Where the dataset starts in the file.
    let datasetOffset: Int
    /// Dataset bytes held back while group 0002 elements at its start are dropped.
    private var pending: [UInt8] = []
    private var stripping = true
    /// A recovered file's Source AE Title (0002,0016): the calling AE that sent it.
    private(set) var sourceAE: String?
    /// The transfer syntax the dataset is encoded in.
    private(set) var transferSyntax = ""
    /// Where every byte of the file is also written, as one record of the write-ahead spool
    /// (nil: not spooled, or the record fell out of the spool).
    let spool: SpoolWriter?

    static let maximumStrippedElement = 65_536

    init(
        root: String, sopClass: String, sopInstance: String, transferSyntax: String, callingAE: String, spool: SpoolWriter? = nil,
        ready: ReadyFiles? = nil
    ) throws(StoreError) {
        self.root = root
        self.spool = spool
        hashing = spool == nil
        spool?.begin()
        self.transferSyntax = transferSyntax
        encoding = DatasetReader.Encoding(transferSyntax: transferSyntax)
        deflated = transferSyntax == DICOM.TransferSyntax.deflatedExplicitLittle
        // Group 0002 elements cannot be recognised inside compressed bytes.
        stripping = !deflated
        let incoming = root + "/.incoming"
        if mkdir(root, 0o750) != 0, errno != EEXIST { throw .resources("cannot create \(root): \(Self.errorText())") }
        if mkdir(incoming, 0o750) != 0, errno != EEXIST { throw .resources("cannot create \(incoming): \(Self.errorText())") }
        temporaryPath = incoming + "/" + UUID().uuidString.lowercased() + ".part"
        // A file made ahead by a background thread, when there is one: making a file (an
        // inode) costs ext4 up to a millisecond on a busy folder, on the event loop.
        var made: Int32 = -1
        if let ready = ready?.take() {
            if rename(ready.path, temporaryPath) == 0 { made = ready.fd } else { Glibc.close(ready.fd) }
        }
        fd = made >= 0 ? made : open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw .resources("cannot create \(temporaryPath): \(Self.errorText())") }
        let meta = Self.fileMeta(sopClass: sopClass, sopInstance: sopInstance, transferSyntax: transferSyntax, callingAE: callingAE)
        datasetOffset = meta.count
        do {
            try write(meta)
        } catch {
            // A full disk: nothing may stay behind (an empty .part once did, for good).
            discard()
            throw error
        }
    }

    /// A finished file found in .incoming at start (see `IncomingRecovery`): its file meta
    /// says where the dataset starts and how it is encoded. Nil when it is not one of ours.
    init?(recovering path: String, root: String) {
        self.root = root
        spool = nil
        hashing = false
        temporaryPath = path
        fd = -1
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        size = Int(info.st_size)
        let reader = open(path, O_RDONLY | O_CLOEXEC)
        guard reader >= 0 else { return nil }
        defer { close(reader) }
        var head = [UInt8](repeating: 0, count: 4096)
        let n = head.withUnsafeMutableBytes { pread(reader, $0.baseAddress, $0.count, 0) }
        guard n >= 144, Array(head[128..<132]) == Array("DICM".utf8), head[132] == 0x02, head[133] == 0x00, head[134] == 0x00,
            head[135] == 0x00
        else { return nil }
        let groupLength = Int(Self.u32(head, 140, big: false))
        guard groupLength < n - 144 else { return nil }
        datasetOffset = 144 + groupLength
        // (0002,0010) Transfer Syntax UID, explicit VR little endian like the rest of group 0002.
        var index = 144
        var syntax: String?
        while index + 8 <= datasetOffset {
            let element = UInt16(head[index + 2]) | UInt16(head[index + 3]) << 8
            let vr = String(decoding: head[(index + 4)..<(index + 6)], as: UTF8.self)
            let long = DatasetReader.longVRs.contains(vr)
            let length = long ? Int(Self.u32(head, index + 8, big: false)) : Int(UInt16(head[index + 6]) | UInt16(head[index + 7]) << 8)
            let start = index + (long ? 12 : 8)
            guard start + length <= datasetOffset else { return nil }
            let value = String(decoding: head[start..<(start + length)], as: UTF8.self).trimmingCharacters(in: ["\0", " "])
            if element == 0x0010 { syntax = value }
            if element == 0x0016 { sourceAE = value }
            index = start + length
        }
        guard let syntax else { return nil }
        transferSyntax = syntax
        encoding = DatasetReader.Encoding(transferSyntax: syntax)
        deflated = syntax == DICOM.TransferSyntax.deflatedExplicitLittle
        stripping = false
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The preamble, "DICM" and group 0002 in explicit VR little endian (PS3.10 §7.1).
    static func fileMeta(sopClass: String, sopInstance: String, transferSyntax: String, callingAE: String) -> [UInt8] {
        var elements: [UInt8] = []
        func element(_ element: UInt16, _ vr: String, _ value: [UInt8]) {
            elements += [0x02, 0x00, UInt8(element & 0xFF), UInt8(element >> 8)] + Array(vr.utf8)
            if vr == "OB" {
                elements += [0, 0] + le32(UInt32(value.count))
            } else {
                elements += [UInt8(value.count & 0xFF), UInt8(value.count >> 8)]
            }
            elements += value
        }
        func padded(_ text: String, with pad: UInt8) -> [UInt8] {
            var bytes = Array(text.utf8)
            if bytes.count % 2 == 1 { bytes.append(pad) }
            return bytes
        }
        element(0x0001, "OB", [0x00, 0x01])
        element(0x0002, "UI", padded(sopClass, with: 0))
        element(0x0003, "UI", padded(sopInstance, with: 0))
        element(0x0010, "UI", padded(transferSyntax, with: 0))
        element(0x0012, "UI", padded(DICOM.implementationClassUID, with: 0))
        element(0x0013, "SH", padded(DICOM.implementationVersionName, with: 0x20))
        element(0x0016, "AE", padded(callingAE, with: 0x20))
        let groupLength: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x55, 0x4C, 0x04, 0x00] + le32(UInt32(elements.count))
        return [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + groupLength + elements
    }

    static func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)] }

    /// Appends dataset bytes.
    func append(_ bytes: [UInt8]) throws(StoreError) {
        guard stripping else { return try write(bytes) }
        pending += bytes
        try stripGroup0002(final: false)
    }

    /// Drops whole group 0002 elements at the start of `pending`; writes the rest once the
    /// first element of another group is seen.
    private func stripGroup0002(final: Bool) throws(StoreError) {
        while stripping {
            guard pending.count >= 8 else {
                if final { try flushPending() }
                return
            }
            let big = encoding == .explicitBig
            let group = big ? UInt16(pending[0]) << 8 | UInt16(pending[1]) : UInt16(pending[0]) | UInt16(pending[1]) << 8
            guard group == 0x0002 else { return try flushPending() }
            var header = 8
            var length: Int
            if encoding == .implicitLittle {
                length = Int(InstanceFile.u32(pending, 4, big: false))
            } else {
                let vr = String(decoding: pending[4..<6], as: UTF8.self)
                if DatasetReader.longVRs.contains(vr) {
                    guard pending.count >= 12 else {
                        if final { throw .unreadable("the dataset ends inside a group 0002 element") }
                        return
                    }
                    header = 12
                    length = Int(InstanceFile.u32(pending, 8, big: big))
                } else {
                    length = Int(big ? UInt16(pending[6]) << 8 | UInt16(pending[7]) : UInt16(pending[6]) | UInt16(pending[7]) << 8)
                }
            }
            guard length <= Self.maximumStrippedElement else {
                throw .unreadable("a group 0002 element in the dataset claims \(length) bytes")
            }
            guard pending.count >= header + length else {
                if final { throw .unreadable("the dataset ends inside a group 0002 element") }
                return
            }
            pending.removeFirst(header + length)
        }
    }

    private func flushPending() throws(StoreError) {
        stripping = false
        let bytes = pending
        pending = []
        try write(bytes)
    }

    static func u32(_ b: [UInt8], _ at: Int, big: Bool) -> UInt32 {
        let v = (UInt32(b[at]), UInt32(b[at + 1]), UInt32(b[at + 2]), UInt32(b[at + 3]))
        return big ? v.0 << 24 | v.1 << 16 | v.2 << 8 | v.3 : v.0 | v.1 << 8 | v.2 << 16 | v.3 << 24
    }

    private func write(_ bytes: [UInt8]) throws(StoreError) {
        guard !bytes.isEmpty else { return }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .resources("cannot write \(temporaryPath): \(Self.errorText())")
            }
            offset += n
        }
        if hashing { hasher.update(data: bytes) }
        size += bytes.count
        spool?.append(bytes)
    }

    /// Writes what is held back and, when `sync`, makes the file durable (a spooled file is
    /// made durable later, in a batch, by the materializer).
    func finish(sync: Bool = true) throws(StoreError) {
        if stripping { try stripGroup0002(final: true) }
        if stripping { try flushPending() }
        if sync { guard fsync(fd) == 0 else { throw .resources("cannot fsync \(temporaryPath): \(Self.errorText())") } }
        close(fd)
        fd = -1
    }

    /// The finished file's SHA-256 (hex): from the bytes as they were written, or read back
    /// from the file (spooled, or recovered). Not thread-safe: one caller at a time.
    func sha256() throws(StoreError) -> String {
        if let digest { return digest }
        let hex: String
        if hashing {
            hex = Hex.encode(hasher.finalize())
        } else {
            guard let read = StoragePath.sha256OfFile(temporaryPath) else {
                throw .resources("cannot read \(temporaryPath) back: \(Self.errorText())")
            }
            hex = read
        }
        digest = hex
        return hex
    }

    private var digest: String?

    /// Makes a finished file durable (its data and inode; the directory entry is the
    /// caller's business).
    func sync() throws(StoreError) {
        let reader = open(temporaryPath, O_RDONLY | O_CLOEXEC)
        guard reader >= 0 else { throw .resources("cannot open \(temporaryPath): \(Self.errorText())") }
        defer { close(reader) }
        guard fsync(reader) == 0 else { throw .resources("cannot fsync \(temporaryPath): \(Self.errorText())") }
    }

    /// The first `limit` bytes of the dataset, read back from the file (inflated when
    /// deflated); nil when deflated bytes do not inflate.
    func datasetPrefix(limit: Int) -> [UInt8]? {
        let stored = storedPrefix(limit: limit)
        return deflated ? Inflate.prefix(stored, limit: limit) : stored
    }

    private func storedPrefix(limit: Int) -> [UInt8] {
        var prefix: [UInt8] = []
        withDatasetReader { read in prefix = read(0, max(0, min(limit, size - datasetOffset))) }
        return prefix
    }

    /// Calls `body` with a reader of the finished file's dataset bytes (`offset` from the
    /// dataset's start, `count`; fewer bytes at the end or on a read error).
    func withDatasetReader<E: Error>(_ body: ((Int, Int) -> [UInt8]) throws(E) -> Void) throws(E) {
        let reader = open(temporaryPath, O_RDONLY | O_CLOEXEC)
        defer { if reader >= 0 { close(reader) } }
        let base = datasetOffset
        try body { offset, count in
            guard reader >= 0, count > 0 else { return [] }
            var buffer = [UInt8](repeating: 0, count: count)
            let n = buffer.withUnsafeMutableBytes { pread(reader, $0.baseAddress, count, off_t(base + offset)) }
            return n > 0 ? Array(buffer.prefix(n)) : []
        }
    }

    /// Drops the file's name in .incoming once its event is journaled (it stays at its
    /// place under the storage root). Only unlinks a fixed path: safe from any thread.
    func unstage() {
        unlink(temporaryPath)
    }

    /// Removes the temporary file (a failed or aborted transfer leaves nothing behind).
    func discard() {
        spool?.abandon()
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(temporaryPath)
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}

/// Empty files made ahead in a receiver's `.incoming` by a background thread, for
/// transfers to take (renamed to `.part`): the file's inode is allocated off the receive
/// path. Up to `target` wait; they are removed when the receiver goes, or at the next start
/// after a crash (IncomingRecovery).
final class ReadyFiles: Sendable {
    static let suffix = ".ready"
    static let target = 16

    let incoming: String
    private struct State {
        var files: [(path: String, fd: Int32)] = []
        var refilling = false
        var closed = false
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "nmbridge.dicom.ready-files", qos: .utility)

    init(storage: String) {
        incoming = storage + "/.incoming"
    }

    deinit { close() }

    /// A ready file, if one is; starts a refill when they run low.
    func take() -> (path: String, fd: Int32)? {
        let (taken, refill) = state.withLock { s -> ((path: String, fd: Int32)?, Bool) in
            let taken = s.files.popLast()
            let low = s.files.count < Self.target / 2 && !s.refilling && !s.closed
            if low { s.refilling = true }
            return (taken, low)
        }
        if refill { queue.async { self.refill() } }
        return taken
    }

    private func refill() {
        defer { state.withLock { $0.refilling = false } }
        while state.withLock({ $0.files.count < Self.target && !$0.closed }) {
            let path = incoming + "/" + UUID().uuidString.lowercased() + Self.suffix
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
            guard fd >= 0 else { return }  // a full disk, a folder gone: transfers make their own
            let kept = state.withLock { s -> Bool in
                if s.closed { return false }
                s.files.append((path, fd))
                return true
            }
            if !kept {
                Glibc.close(fd)
                unlink(path)
            }
        }
    }

    /// Removes the files not taken; no more are made.
    func close() {
        let files = state.withLock { s -> [(path: String, fd: Int32)] in
            s.closed = true
            defer { s.files = [] }
            return s.files
        }
        for file in files {
            Glibc.close(file.fd)
            unlink(file.path)
        }
    }
}

/// Where instances go: `<root>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`.
enum StoragePath {
    /// A valid UID as is; anything else (a path trick, a long or malformed value) as
    /// `x` and the first 40 hex digits of its SHA-256, which cannot leave the directory.
    static func component(_ uid: String) -> String {
        if DICOM.isValidUID(uid) { return uid }
        return "x" + Hex.encode(SHA256.hash(data: Array(uid.utf8))).prefix(40)
    }

    static func relative(study: String, series: String, instance: String) -> String {
        "\(component(study))/\(component(series))/\(component(instance)).dcm"
    }

    /// What became of an instance whose file already existed.
    enum Outcome: Equatable {
        /// Stored (a different file of the same UIDs replaced, when `replacedSHA256` is set).
        case stored(replacedSHA256: String?)
        /// The same bytes were already there; nothing changed.
        case identical
        /// Different bytes were already there and kept (`duplicates = "keep"`).
        case kept(existingSHA256: String)
    }

    /// Moves a finished temporary file into place durably: directories created (and synced),
    /// rename, directory fsync. An existing file of the same path is handled by `policy`.
    ///
    /// With `directories`, the directories to sync are collected there instead of synced
    /// one by one (the materializer syncs each once per batch, after all its renames).
    static func commit(
        _ file: InstanceFile, sha256: String, relativePath: String, policy: DaemonConfiguration.Dicom.Duplicates,
        directories: DirectoryBatch? = nil
    )
        throws(StoreError) -> (path: String, outcome: Outcome)
    {
        let target = file.root + "/" + relativePath
        let components = relativePath.split(separator: "/").dropLast()
        var directory = file.root
        for component in components {
            let parent = directory
            directory += "/" + component
            if mkdir(directory, 0o750) == 0 {
                if let directories { directories.paths.insert(parent) } else { syncDirectory(parent) }
            } else if errno != EEXIST {
                throw .resources("cannot create \(directory): \(InstanceFile.errorText())")
            }
        }
        // Two associations may store the same instance at once: the check of what is
        // there and the rename are one step per target path.
        while !committing.withLock({ $0.insert(target).inserted }) { usleep(1000) }
        defer { _ = committing.withLock { $0.remove(target) } }
        var replaced: String?
        if access(target, F_OK) == 0 {
            let existing = sha256OfFile(target) ?? "unreadable"
            if existing == sha256 {
                file.discard()
                return (target, .identical)
            }
            switch policy {
            case .replace:
                replaced = existing
            case .keep:
                file.discard()
                return (target, .kept(existingSHA256: existing))
            case .reject:
                throw StoreError(
                    status: DICOM.Status.duplicateInstance,
                    message: "\(target) is already stored with other bytes (SHA-256 \(existing)) and duplicates = \"reject\"")
            }
        }
        // The file gets its place under a second name and keeps its name in .incoming until
        // its event is journaled (`unstage`): after a crash in between, recovery finds it
        // there with two links and journals it (IncomingRecovery). link + rename, not link
        // alone: rename replaces an existing file atomically.
        let staged = file.temporaryPath + ".link"
        guard link(file.temporaryPath, staged) == 0 else {
            throw .resources("cannot link \(file.temporaryPath): \(InstanceFile.errorText())")
        }
        guard rename(staged, target) == 0 else {
            let error = InstanceFile.errorText()
            unlink(staged)
            throw .resources("cannot move the instance to \(target): \(error)")
        }
        if let directories { directories.paths.insert(directory) } else { syncDirectory(directory) }
        return (target, .stored(replacedSHA256: replaced))
    }

    /// Target paths being committed by some association now.
    private static let committing = Mutex<Set<String>>([])

    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    static func sha256OfFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        let digest = InstanceSpool.sha256(fd, offset: 0, length: Int(info.st_size))
        return digest.isEmpty ? nil : Hex.encode(digest)
    }
}
