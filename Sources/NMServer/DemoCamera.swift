import DicomStore
import Foundation

#if canImport(Glibc)
import Glibc
#endif
import NMBridgeCore
import Synchronization

/// The demo's simulated gamma camera: a DICOM C-STORE SCU that sends the camera's QC
/// acquisitions to the demo's own receiver, as a real camera console would: a two-head
/// flood for each of the last `days` days and the last day's COR acquisition. Head 2 drifts: a
/// cold region deepens day by day, so its UFOV integral uniformity climbs towards the 5 %
/// investigate limit and the report's trend chart shows it before it gets there.
///
/// The images are deterministic (seeded by the date), so a demo restarted on the same state
/// directory sends identical bytes, which the receiver journals as duplicates and the QC
/// service does not judge again. It speaks the DICOM upper layer itself (A-ASSOCIATE,
/// P-DATA, A-RELEASE) over a blocking socket on a thread of its own.
final class DemoCamera: Sendable {
    static let stationName = "DEMO-SPECT"
    static let callingAE = "DEMOCAM"
    /// The receiver's port; 0 until it is known (`--dicom-port 0`: once the receiver listens).
    private let receiverPort: Atomic<Int>
    let days: Int
    private let stopped = Atomic<Bool>(false)

    var port: Int { receiverPort.load(ordering: .relaxed) }

    /// The last day of the acquisitions (see `firstStart`).
    let lastDay: Date

    init(port: Int, days: Int = 21, lastDay: Date = Date()) {
        receiverPort = Atomic(port)
        self.days = days
        self.lastDay = lastDay
    }

    /// The day the demo first ran on `stateDirectory` (`<state dir>/demo-camera-day`,
    /// `YYYY-MM-DD`, written at the first start), at noon: the camera's acquisitions end on
    /// that day, so that a demo restarted on another day sends the same acquisitions, byte
    /// for byte, which the receiver journals as duplicates (a restart after midnight once
    /// sent every flood again with new bytes).
    static func firstStart(stateDirectory: String, now: Date = Date()) -> Date {
        let path = stateDirectory + "/demo-camera-day"
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone.current
        let text = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        let parts = text.split(separator: "-").compactMap { Int($0) }
        if parts.count == 3, let day = calendar.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2], hour: 12)) {
            return day
        }
        let c = calendar.dateComponents([.year, .month, .day], from: now)
        try? String(format: "%04d-%02d-%02d\n", c.year ?? 2026, c.month ?? 1, c.day ?? 1).write(toFile: path, atomically: true, encoding: .utf8)
        return calendar.date(from: DateComponents(year: c.year, month: c.month, day: c.day, hour: 12)) ?? now
    }

    /// The port the receiver ended up listening on.
    func receiverListens(on port: Int) { receiverPort.store(port, ordering: .relaxed) }

    func start() {
        Thread { [self] in
            // Wait for the receiver to listen (the daemon starts after the simulators).
            for _ in 0..<120 where !stopped.load(ordering: .relaxed) {
                if port != 0, (try? send(acquisitions(lastDay: lastDay))) != nil { return }
                Thread.sleep(forTimeInterval: 1)
            }
        }.start()
    }

    func stop() { stopped.store(true, ordering: .relaxed) }

    /// The floods of the `days` days up to `lastDay` and that day's COR acquisition.
    func acquisitions(lastDay: Date) -> [(sopInstance: String, dataset: [UInt8])] {
        var out: [(sopInstance: String, dataset: [UInt8])] = []
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone.current
        for back in stride(from: days - 1, through: 0, by: -1) {
            guard let date = calendar.date(byAdding: .day, value: -back, to: lastDay) else { continue }
            let c = calendar.dateComponents([.year, .month, .day], from: date)
            let day = String(format: "%04d%02d%02d", c.year ?? 2026, c.month ?? 1, c.day ?? 1)
            let progress = Double(days - 1 - back) / Double(max(days - 1, 1))  // 0 … 1 over the period
            out.append(Self.flood(date: day, drift: progress))
        }
        let c = calendar.dateComponents([.year, .month, .day], from: lastDay)
        out.append(Self.cor(date: String(format: "%04d%02d%02d", c.year ?? 2026, c.month ?? 1, c.day ?? 1)))
        return out
    }

    // MARK: Images

    /// A seeded generator (SplitMix64) and approximately Poisson counts (normal above 30).
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
        mutating func counts(_ mean: Double) -> Double {
            guard mean > 30 else {
                let l = exp(-mean)
                var k = 0.0, p = 1.0
                repeat {
                    k += 1
                    p *= uniform()
                } while p > l
                return k - 1
            }
            let u = max(uniform(), 1e-300), v = uniform()
            return max(0, (mean + mean.squareRoot() * (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)).rounded())
        }
    }

    static func seed(_ text: String) -> UInt64 { text.utf8.reduce(1_469_598_103_934_665_603) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 } }

    /// A 128 × 128 two-head flood at 3.2 mm (64 × 64 at 6.4 mm after rebinning), about 8 000
    /// counts a rebinned pixel; head 2's cold region deepens from 1 % to 6 % with `drift`.
    static func flood(date: String, drift: Double) -> (String, [UInt8]) {
        var random = Random(state: seed("flood" + date))
        let size = 128
        var frames: [[Double]] = []
        for head in 1...2 {
            var frame = [Double](repeating: 0, count: size * size)
            for r in 8..<(size - 8) {
                for c in 6..<(size - 6) {
                    var mean = 500.0
                    if head == 2 {
                        let d2 = pow(Double(r) - 44, 2) + pow(Double(c) - 80, 2)
                        mean *= 1 - (0.01 + 0.05 * drift) * exp(-d2 / 120)
                    }
                    frame[r * size + c] = random.counts(mean)
                }
            }
            frames.append(frame)
        }
        let uid = "2.25.\(seed("sop-flood" + date) >> 2)"
        return (uid, dataset(frames: frames, rows: size, spacing: 3.2, date: date, time: "071500", description: "Daily flood Co57", sop: uid, tomo: false))
    }

    /// A point source on a 64 × 64 matrix at 6.8 mm, 32 projections a head over 360°, head 1
    /// with a COR offset of +0.3 pixel, head 2 of −0.1.
    static func cor(date: String) -> (String, [UInt8]) {
        var random = Random(state: seed("cor" + date))
        var frames: [[Double]] = []
        for (head, offset) in [(0, 0.3), (1, -0.1)] {
            for k in 0..<32 {
                let t = (Double(head) * 180 + Double(k) * 11.25) * Double.pi / 180
                let x = 31.5 + offset + 14 * cos(t + 0.5), y = 30.0
                frames.append(
                    (0..<(64 * 64)).map { i in
                        let d2 = pow(Double(i % 64) - x, 2) + pow(Double(i / 64) - y, 2)
                        return random.counts(3000 * exp(-d2 / 3) + 1)
                    })
            }
        }
        let uid = "2.25.\(seed("sop-cor" + date) >> 2)"
        return (uid, dataset(frames: frames, rows: 64, spacing: 6.8, date: date, time: "073000", description: "COR point source", sop: uid, tomo: true))
    }

    /// An NM dataset (no file meta), Explicit VR Little Endian.
    static func dataset(frames: [[Double]], rows: Int, spacing: Double, date: String, time: String, description: String, sop: String, tomo: Bool)
        -> [UInt8]
    {
        let heads = tomo ? [Int](repeating: 1, count: frames.count / 2) + [Int](repeating: 2, count: frames.count / 2) : [1, 2]
        var elements: [(UInt32, String, [UInt8])] = []
        func text(_ tag: UInt32, _ vr: String, _ s: String) {
            var bytes = Array(s.utf8)
            if bytes.count % 2 == 1 { bytes.append(vr == "UI" ? 0 : 0x20) }
            elements.append((tag, vr, bytes))
        }
        func us(_ tag: UInt32, _ values: [Int]) { elements.append((tag, "US", values.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })) }
        text(0x0008_0008, "CS", tomo ? "ORIGINAL\\PRIMARY\\TOMO\\EMISSION" : "ORIGINAL\\PRIMARY\\STATIC\\EMISSION")
        text(0x0008_0016, "UI", nmStorage)
        text(0x0008_0018, "UI", sop)
        for tag: UInt32 in [0x0008_0020, 0x0008_0021, 0x0008_0022] { text(tag, "DA", date) }
        for tag: UInt32 in [0x0008_0030, 0x0008_0031, 0x0008_0032] { text(tag, "TM", time) }
        text(0x0008_0060, "CS", "NM")
        text(0x0008_0070, "LO", "nmbridge demo")
        text(0x0008_1010, "SH", stationName)
        text(0x0008_103E, "LO", description)
        text(0x0010_0010, "PN", "QC^Camera")
        text(0x0010_0020, "LO", "QC-DEMO")
        text(0x0020_000D, "UI", "2.25.\(seed("study" + description + date) >> 2)")
        text(0x0020_000E, "UI", "2.25.\(seed("series" + description + date) >> 2)")
        us(0x0028_0002, [1])
        text(0x0028_0004, "CS", "MONOCHROME2")
        text(0x0028_0008, "IS", "\(frames.count)")
        us(0x0028_0010, [rows])
        us(0x0028_0011, [rows])
        text(0x0028_0030, "DS", "\(spacing)\\\(spacing)")
        us(0x0028_0100, [16])
        us(0x0028_0101, [16])
        us(0x0028_0102, [15])
        us(0x0028_0103, [0])
        us(0x0054_0020, heads)
        us(0x0054_0021, [2])
        var out: [UInt8] = []
        func header(_ tag: UInt32, _ vr: String, long: Bool, length: UInt32) {
            out += [UInt8((tag >> 16) & 0xFF), UInt8(tag >> 24), UInt8(tag & 0xFF), UInt8((tag >> 8) & 0xFF)] + Array(vr.utf8)
            out += long ? [0, 0, UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF), UInt8((length >> 16) & 0xFF), UInt8(length >> 24)]
                : [UInt8(length & 0xFF), UInt8(length >> 8)]
        }
        func sequence(_ tag: UInt32, _ items: [[(UInt32, String, [UInt8])]]) {
            header(tag, "SQ", long: true, length: 0xFFFF_FFFF)
            for item in items {
                out += [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]
                for (t, vr, v) in item {
                    header(t, vr, long: false, length: UInt32(v.count))
                    out += v
                }
                out += [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]
            }
            out += [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]
        }
        func ds(_ v: String) -> [UInt8] { Array((v.utf8.count % 2 == 1 ? v + " " : v).utf8) }
        for (tag, vr, value) in elements.sorted(by: { $0.0 < $1.0 }) {
            header(tag, vr, long: false, length: UInt32(value.count))
            out += value
        }
        sequence(0x0054_0022, [[(0x0054_0200, "DS", ds("0"))], [(0x0054_0200, "DS", ds("180"))]])
        if tomo {
            sequence(0x0054_0052, [[(0x0018_1140, "CS", ds("CW")), (0x0018_1144, "DS", ds("11.25")), (0x0054_0200, "DS", ds("0"))]])
        }
        let pixels = frames.flatMap { $0.map { v -> [UInt8] in let n = Int(min(max(v, 0), 65535)); return [UInt8(n & 0xFF), UInt8(n >> 8)] } }
            .flatMap { $0 }
        header(0x7FE0_0010, "OW", long: true, length: UInt32(pixels.count))
        return out + pixels
    }

    static let nmStorage = "1.2.840.10008.5.1.4.1.1.20"
    static let explicitLittle = "1.2.840.10008.1.2.1"

    // MARK: C-STORE SCU

    struct SendError: Error, CustomStringConvertible {
        var description: String
    }

    /// Sends the datasets on one association to 127.0.0.1:`port`, AE NMBRIDGE.
    func send(_ items: [(sopInstance: String, dataset: [UInt8])]) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SendError(description: "socket: \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw SendError(description: "connect to port \(port): \(errno)") }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        func write(_ bytes: [UInt8]) throws {
            var sent = 0
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { throw SendError(description: "send: \(errno)") }
                sent += n
            }
        }
        func read(_ count: Int) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = out[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { throw SendError(description: "connection closed") }
                got += n
            }
            return out
        }
        func readPDU() throws -> (type: UInt8, body: [UInt8]) {
            let head = try read(6)
            let length = Int(head[2]) << 24 | Int(head[3]) << 16 | Int(head[4]) << 8 | Int(head[5])
            guard length <= 1 << 20 else { throw SendError(description: "PDU of \(length) bytes") }
            return (head[0], try read(length))
        }
        func pdu(_ type: UInt8, _ body: [UInt8]) -> [UInt8] {
            let n = body.count
            return [type, 0, UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + body
        }
        func item(_ type: UInt8, _ body: [UInt8]) -> [UInt8] { [type, 0, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body }
        func ae(_ s: String) -> [UInt8] { Array(s.utf8.prefix(16)) + [UInt8](repeating: 0x20, count: max(0, 16 - s.utf8.count)) }

        var request: [UInt8] = [0, 1, 0, 0] + ae("NMBRIDGE") + ae(Self.callingAE) + [UInt8](repeating: 0, count: 32)
        request += item(0x10, Array("1.2.840.10008.3.1.1.1".utf8))
        request += item(0x20, [1, 0, 0, 0] + item(0x30, Array(Self.nmStorage.utf8)) + item(0x40, Array(Self.explicitLittle.utf8)))
        request += item(0x50, item(0x51, [0, 0, 0x40, 0]) + item(0x52, Array("1.2.826.0.1.3680043.9.7433.1".utf8)))
        try write(pdu(0x01, request))
        let answer = try readPDU()
        guard answer.type == 0x02 else { throw SendError(description: "association not accepted (PDU type \(answer.type))") }

        for (index, item) in items.enumerated() where !stopped.load(ordering: .relaxed) {
            let command = Command(
                field: Command.cStoreRequest, messageID: UInt16(index + 1), affectedSOPClass: Self.nmStorage, affectedSOPInstance: item.sopInstance,
                dataSetType: 0x0000, priority: 0
            ).encoded()
            try write(pdu(0x04, pdv(command, command: true, last: true)))
            var offset = 0
            let fragment = 16_000
            repeat {
                let end = min(offset + fragment, item.dataset.count)
                try write(pdu(0x04, pdv(Array(item.dataset[offset..<end]), command: false, last: end == item.dataset.count)))
                offset = end
            } while offset < item.dataset.count
            let response = try readPDU()
            guard response.type == 0x04, response.body.count > 6 else { throw SendError(description: "no C-STORE response") }
            let status = try Command.decode(Array(response.body[6...])).status ?? 0xFFFF
            guard status == 0 else { throw SendError(description: "C-STORE status \(String(status, radix: 16))") }
        }
        try write(pdu(0x05, [0, 0, 0, 0]))
        _ = try? readPDU()
    }

    private func pdv(_ data: [UInt8], command: Bool, last: Bool) -> [UInt8] {
        let n = data.count + 2
        return [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF), 1, (command ? 1 : 0) | (last ? 2 : 0)] + data
    }
}
