import CSpool
import Crypto
import Foundation
import Logging
import NMBridgeCore
import Synchronization

/// The receiver's write-ahead spool (`<storage>/.spool`): each received instance is also
/// written, as one record, into a segment file whose space was written once when the
/// segment was made. A C-STORE success is sent once its record is covered by an
/// `fdatasync` of the segment: the bytes land in blocks whose metadata is already on disk,
/// so the sync writes data only (a quarter of a millisecond for 512 KiB), where making a
/// new file durable costs a file fsync, a rename and a directory fsync. The materializer
/// then makes the Part-10 files durable in batches and releases the records.
///
/// Segment layout: page 0 is the segment header (magic `NMSPSEG1`, generation, in use or
/// free); records follow at page-aligned offsets, each a header page (magic `NMSPREC2`,
/// the segment's generation, a spool-wide sequence number, the payload's length and
/// CRC-32C, association id and peer address) and the payload: the Part-10 file's bytes. A
/// record is valid when its generation is the segment's and its payload has its CRC-32C
/// (records of an earlier version, magic `NMSPREC1`, carry a SHA-256 instead: the
/// checksum on the path to every answer now costs a tenth of that);
/// the header is written after the payload, so a record cut short by a crash fails the
/// check. A segment is taken by one transfer at a time; records within it follow one
/// another. Reusing a segment bumps its generation, which retires its old records.
///
/// All mutable state is under `lock`, hence unchecked Sendable.
final class InstanceSpool: @unchecked Sendable {
    static let page = 4096
    static let segmentMagic = Array("NMSPSEG1".utf8)
    static let recordMagic = Array("NMSPREC2".utf8)
    /// Records written before the CRC-32C: checked by their SHA-256.
    static let recordMagicSHA256 = Array("NMSPREC1".utf8)
    /// How long a transfer waits for spool space before it takes the slow path (a file
    /// made durable on its own): the back-pressure's bound.
    static let waitForSpace: TimeInterval = 30
    /// A transfer starts in a segment with at least this much room when it can.
    static let preferredRoom = 2 << 20

    /// One segment file. Touched under the spool's lock only.
    final class Segment {
        let index: Int
        let fd: Int32
        let size: Int
        var generation: UInt64 = 0
        /// No record of its generation is waiting: it can be reset and reused.
        var free = true
        /// Where the next record starts.
        var used = InstanceSpool.page
        /// Sealed records not yet released by the materializer.
        var live = 0
        /// A transfer is writing into it.
        var held = false

        init(index: Int, fd: Int32, size: Int) {
            self.index = index
            self.fd = fd
            self.size = size
        }
    }

    /// A sealed record: where it is, for the syncer and the materializer.
    struct Record: Sendable {
        let segment: Int
        let fd: Int32
        let offset: Int
        let length: Int
        let sequence: UInt64
    }

    /// A valid record found at start.
    struct Found: Sendable {
        let segment: Int
        let offset: Int
        let length: Int
        let sequence: UInt64
        let peer: String
    }

    /// What the spool holds now (`/metrics`, `/v1/health`, `nmbridge status`).
    struct Usage: Sendable, Equatable {
        var records = 0
        var bytes = 0
        var capacity = 0
        var segments = 0
        /// Transfers that waited for space (back-pressure), and those that gave up waiting
        /// or did not fit and were made durable on their own.
        var waits = 0
        var bypassed = 0
    }

    let directory: String
    let segmentBytes: Int
    let segmentLimit: Int
    let logger: Logger
    let syncer = SpoolSyncer()
    private let lock = NSCondition()
    private var segments: [Segment] = []
    private var creating = false
    /// When making a segment last failed (a full disk): not tried again for 10 s.
    private var creationFailed: Date?
    private var nextSequence: UInt64 = 1
    private var waits = 0
    private var bypassed = 0

    /// `megabytes` of spool in segments of 1/16 of it, between 4 and 64 MiB.
    init(storage: String, megabytes: Int, logger: Logger) {
        directory = storage + "/.spool"
        let total = megabytes << 20
        segmentBytes = min(64 << 20, max(4 << 20, total / 16))
        segmentLimit = max(2, total / segmentBytes)
        self.logger = logger
    }

    deinit {
        for segment in segments { close(segment.fd) }
    }

    /// The largest payload a record can hold; larger instances bypass the spool.
    var largestRecord: Int { segmentBytes - 2 * Self.page }

    // MARK: - Start

    /// Opens the segments an earlier run left and returns their valid records, oldest
    /// first, and the number of records cut short (torn or failing their checksum: never
    /// acknowledged). Call once, before any transfer; then `recovered()`.
    func open() throws(StoreError) -> (records: [Found], torn: Int) {
        let root = String(directory.dropLast("/.spool".count))
        for path in [root, directory] where mkdir(path, 0o750) != 0 && errno != EEXIST {
            throw .resources("cannot create \(path): \(InstanceFile.errorText())")
        }
        var found: [Found] = []
        var torn = 0
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for name in names {
            let path = directory + "/" + name
            guard name.hasPrefix("segment-"), !name.hasSuffix(".tmp"), let index = Int(name.dropFirst(8)) else {
                unlink(path)  // a segment whose making was cut short
                continue
            }
            let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { throw .resources("cannot open \(path): \(InstanceFile.errorText())") }
            var info = stat()
            fstat(fd, &info)
            let segment = Segment(index: index, fd: fd, size: Int(info.st_size))
            segments.append(segment)
            let header = Self.read(fd, offset: 0, count: 17)
            guard header.count == 17, Array(header[0..<8]) == Self.segmentMagic else { continue }
            segment.generation = Self.u64(header, 8)
            guard header[16] == 1 else { continue }
            var offset = Self.page
            while offset + Self.page <= segment.size {
                let head = Self.read(fd, offset: offset, count: 138)
                let magic = Array(head.prefix(8))
                guard head.count == 138, [Self.recordMagic, Self.recordMagicSHA256].contains(magic), Self.u64(head, 8) == segment.generation
                else { break }
                let sequence = Self.u64(head, 16)
                let length = Int(clamping: Self.u64(head, 24))
                let peerLength = min(64, Int(head[72]) | Int(head[73]) << 8)
                let peer = String(decoding: head[74..<(74 + peerLength)], as: UTF8.self)
                let whole =
                    length <= segment.size - offset - Self.page
                    && (magic == Self.recordMagic
                        ? Self.crc32c(fd, offset: offset + Self.page, length: length) == UInt32(truncatingIfNeeded: Self.u64(head, 32))
                        : Self.sha256(fd, offset: offset + Self.page, length: length) == Array(head[32..<64]))
                guard whole else {
                    torn += 1
                    break
                }
                found.append(Found(segment: index, offset: offset, length: length, sequence: sequence, peer: peer))
                nextSequence = max(nextSequence, sequence + 1)
                offset += Self.page + Self.aligned(length)
            }
        }
        return (found.sorted { $0.sequence < $1.sequence }, torn)
    }

    /// Copies a found record's payload into `fd` (a new file); returns the payload's SHA-256
    /// (hex), taken on the way, or nil on a read or write error.
    func copy(_ record: Found, to fd: Int32) -> String? {
        guard let segment = segments.first(where: { $0.index == record.segment }) else { return nil }
        var hasher = SHA256()
        let whole = Self.readChunks(segment.fd, offset: record.offset + Self.page, length: record.length) { chunk in
            hasher.update(data: chunk)
            return Self.writeAll(fd, chunk)
        }
        return whole ? Hex.encode(hasher.finalize()) : nil
    }

    /// Every record recovered: all segments become free (durably, so that they are not
    /// recovered twice), those of another size than configured are removed, and a first
    /// segment is made if missing (the others are made when transfers need them).
    func recovered() {
        lock.lock()
        defer { lock.unlock() }
        var kept: [Segment] = []
        for segment in segments {
            if segment.size != segmentBytes || segment.index >= segmentLimit {
                close(segment.fd)
                unlink(path(of: segment.index))
                continue
            }
            Self.writeHeader(segment, inUse: false)
            fdatasync(segment.fd)
            kept.append(segment)
        }
        segments = kept
        while segments.isEmpty, let segment = makeSegment(index: nextIndex()) { segments.append(segment) }
    }

    private func path(of index: Int) -> String { directory + "/" + String(format: "segment-%03d", index) }

    private func nextIndex() -> Int {
        let taken = Set(segments.map(\.index))
        return (0..<segmentLimit).first { !taken.contains($0) } ?? segmentLimit
    }

    /// Writes a new segment in full (zeros), syncs it and its directory, then gives it its
    /// name: a named segment is always whole. Nil (and logged) when the disk refuses.
    private func makeSegment(index: Int) -> Segment? {
        let path = path(of: index)
        let temporary = path + ".tmp"
        let fd = Glibc.open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            logger.warning("cannot make a spool segment", metadata: ["path": "\(temporary)", "error": "\(InstanceFile.errorText())"])
            return nil
        }
        // Leave room for the files the segment's records become (and the journal).
        var disk = statvfs()
        if fstatvfs(fd, &disk) == 0, Int(disk.f_bavail) * Int(disk.f_frsize) < 4 * segmentBytes + (64 << 20) {
            close(fd)
            unlink(temporary)
            logger.warning("too little free space for another spool segment", metadata: ["path": "\(path)"])
            return nil
        }
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var written = 0
        var ok = true
        while written < segmentBytes, ok {
            ok = Self.writeAll(fd, zeros[0..<min(zeros.count, segmentBytes - written)])
            written += zeros.count
        }
        let segment = Segment(index: index, fd: fd, size: segmentBytes)
        if ok {
            Self.writeHeader(segment, inUse: false)
            ok = fsync(fd) == 0 && rename(temporary, path) == 0
        }
        guard ok else {
            logger.warning("cannot make a spool segment", metadata: ["path": "\(path)", "error": "\(InstanceFile.errorText())"])
            close(fd)
            unlink(temporary)
            return nil
        }
        StoragePath.syncDirectory(directory)
        return segment
    }

    // MARK: - Transfers

    /// Takes a segment with at least `room` bytes free for one transfer's record; makes a
    /// segment or waits (back-pressure) when there is none. Nil when none comes within
    /// `waitForSpace`, or none can ever be made.
    func hold(room: Int) -> Segment? {
        lock.lock()
        defer { lock.unlock() }
        let deadline = Date().addingTimeInterval(Self.waitForSpace)
        var waited = false
        while true {
            let idle = segments.filter { !$0.held }
            let wanted = max(room, min(Self.preferredRoom, segmentBytes / 4))
            // Room in a segment in use, the most room first.
            if let segment = idle.filter({ !$0.free && $0.size - $0.used >= wanted }).max(by: { $0.size - $0.used < $1.size - $1.used })
                ?? idle.first(where: \.free)
                ?? idle.first(where: { $0.live == 0 })
                ?? idle.filter({ !$0.free && $0.size - $0.used >= room }).max(by: { $0.size - $0.used < $1.size - $1.used })
            {
                if segment.free || segment.live == 0 && segment.size - segment.used < wanted {
                    // A new generation: the segment's old records are retired.
                    segment.generation &+= 1
                    segment.used = Self.page
                    segment.free = false
                    Self.writeHeader(segment, inUse: true)
                }
                segment.held = true
                return segment
            }
            if segments.count < segmentLimit, !creating, creationFailed.map({ Date().timeIntervalSince($0) > 10 }) ?? true {
                creating = true
                lock.unlock()
                let made = makeSegment(index: nextIndex())
                lock.lock()
                creating = false
                if let made {
                    segments.append(made)
                    creationFailed = nil
                } else {
                    creationFailed = Date()
                }
                lock.broadcast()
                continue
            }
            // Nothing will free space when no record waits for the materializer and no
            // transfer holds a segment.
            let waiting = segments.contains { $0.live > 0 || $0.held }
            if !waiting, !creating {
                bypassed += 1
                return nil
            }
            if !waited {
                waited = true
                waits += 1
            }
            guard lock.wait(until: deadline) else {
                bypassed += 1
                logger.warning("no spool space within \(Int(Self.waitForSpace)) s; storing without the spool", metadata: ["spool": "\(directory)"])
                return nil
            }
        }
    }

    /// A transfer is done with a segment without sealing a record in it.
    func unhold(_ segment: Segment) {
        lock.lock()
        defer { lock.unlock() }
        segment.held = false
        if segment.live == 0 { markFree(segment) }
        lock.broadcast()
    }

    /// A record was written whole (payload then header): counts it, ends the hold.
    func sealed(_ segment: Segment, offset: Int, length: Int, sequence: UInt64) -> Record {
        lock.lock()
        defer { lock.unlock() }
        segment.used = offset + Self.page + Self.aligned(length)
        segment.live += 1
        segment.held = false
        lock.broadcast()
        return Record(segment: segment.index, fd: segment.fd, offset: offset, length: length, sequence: sequence)
    }

    /// An instance too large for a segment, stored without the spool.
    func countBypass() {
        lock.lock()
        defer { lock.unlock() }
        bypassed += 1
    }

    func takeSequence() -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        defer { nextSequence += 1 }
        return nextSequence
    }

    /// The record's instance is durable in place and journaled: its space can go.
    func release(_ record: Record) {
        lock.lock()
        defer { lock.unlock() }
        guard let segment = segments.first(where: { $0.index == record.segment }) else { return }
        segment.live -= 1
        if segment.live == 0, !segment.held { markFree(segment) }
        lock.broadcast()
    }

    /// No record of the segment's generation waits any more. Not synced: should the mark
    /// be lost in a crash, recovery finds records the journal already has, and skips them.
    private func markFree(_ segment: Segment) {
        segment.free = true
        segment.used = Self.page
        Self.writeHeader(segment, inUse: false)
    }

    var usage: Usage {
        lock.lock()
        defer { lock.unlock() }
        var usage = Usage(capacity: segmentLimit * segmentBytes, segments: segments.count, waits: waits, bypassed: bypassed)
        for segment in segments where !segment.free {
            usage.records += segment.live
            usage.bytes += segment.used - Self.page
        }
        return usage
    }

    // MARK: - Bytes

    static func aligned(_ n: Int) -> Int { (n + page - 1) / page * page }

    private static func writeHeader(_ segment: Segment, inUse: Bool) {
        var header = segmentMagic
        header += le64(segment.generation)
        header.append(inUse ? 1 : 0)
        _ = header.withUnsafeBytes { pwrite(segment.fd, $0.baseAddress, $0.count, 0) }
    }

    /// A record's header page (the first 138 bytes of it). The checksum's field has room
    /// for 32 bytes (a SHA-256 in records of the first version).
    static func recordHeader(generation: UInt64, sequence: UInt64, length: Int, crc32c: UInt32, association: UInt64, peer: String) -> [UInt8] {
        var header = recordMagic + le64(generation) + le64(sequence) + le64(UInt64(length)) + le64(UInt64(crc32c))
        header += [UInt8](repeating: 0, count: 24)
        header += le64(association)
        let peerBytes = Array(peer.utf8.prefix(64))
        header += [UInt8(peerBytes.count & 0xFF), UInt8(peerBytes.count >> 8)] + peerBytes
        header += [UInt8](repeating: 0, count: 138 - header.count)
        return header
    }

    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    static func u64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }

    static func read(_ fd: Int32, offset: Int, count: Int) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return n > 0 ? Array(buffer.prefix(n)) : []
    }

    /// Reads `length` bytes of `fd` from `offset` in chunks of up to 1 MiB, handing each to
    /// `body` until it returns false. True when every byte was read and accepted.
    static func readChunks(_ fd: Int32, offset: Int, length: Int, _ body: (ArraySlice<UInt8>) -> Bool) -> Bool {
        var buffer = [UInt8](repeating: 0, count: min(1 << 20, max(length, 1)))
        var done = 0
        while done < length {
            let count = min(buffer.count, length - done)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset + done)) }
            guard n > 0, body(buffer[0..<n]) else { return false }
            done += n
        }
        return true
    }

    /// The SHA-256 of `length` bytes of `fd` from `offset`; empty on a read error.
    static func sha256(_ fd: Int32, offset: Int, length: Int) -> [UInt8] {
        var hasher = SHA256()
        guard readChunks(fd, offset: offset, length: length, { hasher.update(data: $0); return true }) else { return [] }
        return Array(hasher.finalize())
    }

    /// CRC-32C of `bytes`, continuing from `previous` (0 to start).
    static func crc32c(_ bytes: [UInt8], continuing previous: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { nm_crc32c(previous, $0.baseAddress, $0.count) }
    }

    static func crc32c(_ fd: Int32, offset: Int, length: Int) -> UInt32? {
        var crc: UInt32 = 0
        let whole = readChunks(fd, offset: offset, length: length) { chunk in
            crc = chunk.withUnsafeBytes { nm_crc32c(crc, $0.baseAddress, $0.count) }
            return true
        }
        return whole ? crc : nil
    }

    static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at position: Int) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + offset, $0.count - offset, off_t(position + offset)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }
}

/// One transfer's record being written: its bytes go to a held segment as they come (the
/// first few KiB are kept in memory, so that file meta written on the event loop never
/// waits for a segment). Used on its association's serial storage queue only (the file
/// meta aside, written before the transfer reaches that queue), hence unchecked Sendable.
final class SpoolWriter: @unchecked Sendable {
    let spool: InstanceSpool
    private var segment: InstanceSpool.Segment?
    private var start = 0
    private var length = 0
    private var held: [UInt8] = []
    /// The payload's CRC-32C so far.
    private var crc: UInt32 = 0
    /// Payload bytes already handed to the disk's writeback (see `write`).
    private var submitted = 0
    /// Writeback starts every this many bytes while a record is written.
    static let writebackStep = 256 << 10
    /// The record cannot be spooled (too large, no space, a write error): the transfer
    /// takes the slow path.
    private(set) var failed = false

    init(spool: InstanceSpool) {
        self.spool = spool
    }

    func begin() {
        if let segment { spool.unhold(segment) }
        segment = nil
        length = 0
        submitted = 0
        held = []
        crc = 0
        failed = false
    }

    func append(_ bytes: [UInt8]) {
        guard !failed else { return }
        crc = InstanceSpool.crc32c(bytes, continuing: crc)
        if segment == nil, held.count + bytes.count <= 16_384 {
            held += bytes
            return
        }
        write(bytes)
    }

    private func write(_ bytes: [UInt8]) {
        if segment == nil || start + InstanceSpool.page + length + bytes.count > segment!.size {
            if !held.isEmpty {
                let first = held
                held = []
                return write(first + bytes)
            }
            let needed = InstanceSpool.page + length + bytes.count
            guard needed <= spool.largestRecord + InstanceSpool.page else {
                spool.countBypass()
                return fail()
            }
            guard let next = spool.hold(room: min(spool.largestRecord + InstanceSpool.page, max(needed * 2, needed + (1 << 20)))) else {
                return fail()
            }
            // Outgrew its segment: what was written moves along.
            submitted = 0
            if let old = segment {
                let moved = InstanceSpool.read(old.fd, offset: start + InstanceSpool.page, count: length)
                spool.unhold(old)
                segment = next
                start = next.used
                guard moved.count == length, InstanceSpool.pwriteAll(next.fd, moved, at: start + InstanceSpool.page) else { return fail() }
            } else {
                segment = next
                start = next.used
            }
        }
        guard InstanceSpool.pwriteAll(segment!.fd, bytes, at: start + InstanceSpool.page + length) else { return fail() }
        length += bytes.count
        // The disk starts on the record's bytes while the rest arrives: the data sync
        // before the answer then waits for the tail only.
        if length - submitted >= Self.writebackStep {
            _ = nm_start_writeback(segment!.fd, Int64(start + InstanceSpool.page + submitted), Int64(length - submitted))
            submitted = length
        }
    }

    private func fail() {
        if let segment { spool.unhold(segment) }
        segment = nil
        held = []
        failed = true
    }

    /// Writes the record's header after its payload; nil when the record is not whole in
    /// the spool (the caller makes the file durable itself).
    func seal(association: UInt64, peer: String) -> InstanceSpool.Record? {
        guard !failed else { return nil }
        if !held.isEmpty {
            let first = held
            held = []
            write(first)
        }
        guard !failed, let segment else { return nil }
        let sequence = spool.takeSequence()
        let header = InstanceSpool.recordHeader(
            generation: segment.generation, sequence: sequence, length: length, crc32c: crc, association: association, peer: peer)
        guard InstanceSpool.pwriteAll(segment.fd, header, at: start) else {
            fail()
            return nil
        }
        self.segment = nil
        return spool.sealed(segment, offset: start, length: length, sequence: sequence)
    }

    /// The transfer failed or was aborted: its bytes are forgotten.
    func abandon() {
        fail()
    }
}

/// Group sync: one thread runs `fdatasync` for every record sealed since its last one,
/// for all associations at once, then answers each (as the journal's group commit does).
final class SpoolSyncer: Sendable {
    private struct State {
        var waiting: [(fd: Int32, done: @Sendable (Bool) -> Void)] = []
        var running = false
        var syncs = 0
        var records = 0
        var nanoseconds = 0
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "nmbridge.dicom.spool-sync")

    /// Calls `done(true)` once everything written to `fd` so far is on disk (false: the
    /// sync failed, nothing can be promised).
    func sync(_ fd: Int32, done: @escaping @Sendable (Bool) -> Void) {
        let start = state.withLock { s -> Bool in
            s.waiting.append((fd, done))
            defer { s.running = true }
            return !s.running
        }
        if start { queue.async { self.drain() } }
    }

    private func drain() {
        while true {
            let batch = state.withLock { s -> [(fd: Int32, done: @Sendable (Bool) -> Void)] in
                defer { s.waiting = [] }
                if s.waiting.isEmpty { s.running = false }
                return s.waiting
            }
            if batch.isEmpty { return }
            var results: [Int32: Bool] = [:]
            let started = ContinuousClock.now
            for fd in Set(batch.map(\.fd)) { results[fd] = fdatasync(fd) == 0 }
            let took = AssociationHandler.nanoseconds(.now - started)
            state.withLock { s in
                s.syncs += results.count
                s.records += batch.count
                s.nanoseconds += took
            }
            for item in batch { item.done(results[item.fd] ?? false) }
        }
    }

    /// Data syncs run and records they covered, since start.
    var counts: (syncs: Int, records: Int) { state.withLock { ($0.syncs, $0.records) } }

    /// Time spent in `fdatasync`, in seconds, since start.
    var seconds: Double { state.withLock { Double($0.nanoseconds) / 1e9 } }
}
