import Foundation
import NMBridgeCore

/// The camera section of the daily report: per camera and head, the day's uniformity and
/// COR findings, their 30-day trends with limit bands, and the picture of the day's
/// smoothed flood with the UFOV and CFOV outlined and the min/max pixels marked.
extension QCReport {
    /// One gamma camera's findings in the report.
    public struct CameraSection: Sendable {
        /// The `[[qc.camera]]` id.
        public let camera: String
        /// The day's qc.camera.* findings, in time order.
        public let findings: [QCFinding]
        /// Per head: uniformity and COR findings of the chart period, in time order.
        public let heads: [Head]
    }

    /// One detector head's trend.
    public struct Head: Sendable {
        public let head: Int
        public let uniformity: [QCFinding]
        public let cor: [QCFinding]
    }

    static func cameraSections(_ all: [QCFinding], day: LocalDay, period: ClosedRange<LocalDay>) -> [CameraSection] {
        let camera = all.filter { $0.isCamera && period.contains($0.localDay) }
        let byCamera = Dictionary(grouping: camera, by: { $0.text("camera") ?? $0.device ?? "" })
        return byCamera.keys.sorted().map { id in
            let findings = byCamera[id] ?? []
            let heads = Set(findings.compactMap { $0.data["head"]?.intValue.map(Int.init) }).sorted()
            return CameraSection(
                camera: id, findings: findings.filter { $0.localDay == day },
                heads: heads.map { head in
                    let mine = findings.filter { $0.data["head"]?.intValue == Int64(head) }
                    return Head(
                        head: head, uniformity: mine.filter { $0.kind == "qc.camera.uniformity" && $0.value != nil },
                        cor: mine.filter { $0.kind == "qc.camera.cor" && $0.value != nil })
                })
        }
    }

    // MARK: Text

    var cameraText: String {
        guard !cameras.isEmpty else { return "" }
        var out = "\nCameras\n"
        for section in cameras {
            out += "  \(QCText.plain(section.camera))\n"
            for head in section.heads {
                out += "    head \(head.head): \(trendLine(head.uniformity, what: "uniformity", name: "UFOV IU", unit: "%"))\n"
                if !head.cor.isEmpty { out += "    head \(head.head): \(trendLine(head.cor, what: "COR", name: "offset", unit: "px"))\n" }
            }
            out += section.findings.isEmpty ? "    no findings on \(day)\n" : indented(findingTable(section.findings), by: 4)
        }
        return out
    }

    func trendLine(_ findings: [QCFinding], what: String, name: String, unit: String) -> String {
        let values = findings.compactMap(\.value)
        guard let last = values.last, let low = values.min(), let high = values.max() else { return "\(what): none in the period" }
        let flagged = findings.filter { $0.outcome != .pass }.count
        return String(
            format: "%@ %@ … %@: %d, %@ %.2f … %.2f %@, last %.2f %@%@", what, chartPeriod.lowerBound.description, chartPeriod.upperBound.description,
            values.count, name, low, high, unit, last, unit, flagged > 0 ? ", \(flagged) not passed" : "")
    }

    // MARK: HTML

    var cameraHTML: String {
        guard !cameras.isEmpty else { return "" }
        var out = "<h2>Cameras</h2>\n"
        for section in cameras {
            out += "<section class=\"camera\">\n<h3>\(QCText.html(section.camera))</h3>\n"
            for head in section.heads {
                out += "<h4>Head \(head.head)</h4>\n<p class=\"trend\">\(QCText.html(trendLine(head.uniformity, what: "uniformity", name: "UFOV IU", unit: "%")))</p>\n"
                out += "<div class=\"camera-row\">\n"
                if let latest = section.findings.last(where: { $0.kind == "qc.camera.uniformity" && $0.data["head"]?.intValue == Int64(head.head) }),
                    let map = latest.data["map"]
                {
                    out += FloodPicture(map: map, caption: "head \(head.head), \(QCText.timeOfDay(latest.time, zone: zone))").svg
                }
                out += CameraTrendChart(title: "Integral uniformity, head \(head.head) (%)", findings: head.uniformity, period: chartPeriod, zone: zone, symmetric: false).svg
                if !head.cor.isEmpty {
                    out += CameraTrendChart(title: "COR offset, head \(head.head) (pixels)", findings: head.cor, period: chartPeriod, zone: zone, symmetric: true).svg
                }
                out += "</div>\n"
            }
            out += section.findings.isEmpty ? "<p class=\"empty\">No camera findings on \(day).</p>\n" : cameraTable(section.findings)
            out += "</section>\n"
        }
        return out
    }

    private func cameraTable(_ findings: [QCFinding]) -> String {
        var out = "<table>\n<tr><th>Time</th><th>Check</th><th>Result</th><th>Value</th><th>Limit</th><th>Detail</th></tr>\n"
        for finding in findings {
            let style = finding.outcome.cssClass
            out += "<tr class=\"\(style)\"><td>\(QCText.timeOfDay(finding.time, zone: zone))</td><td>\(QCText.html(finding.check))</td>"
            out += "<td><span class=\"mark \(style)\">\(QCText.html(finding.marker))</span></td><td class=\"num\">\(QCText.html(finding.valueText))</td>"
            out += "<td class=\"limit\">\(QCText.html(finding.limit))</td><td>\(QCText.html(finding.detail))</td></tr>\n"
        }
        return out + "</table>\n"
    }

    static let cameraCSS = """
        .camera-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; } h4 { font-size: 13px; margin: .8em 0 .2em; }
        svg.flood-map, svg.camera-chart { display: block; max-width: 100%; height: auto; }
        .ufov-outline { fill: none; stroke: #1565c0; stroke-width: .25; } .cfov-outline { fill: none; stroke: #f9a825; stroke-width: .25; stroke-dasharray: .8 .4; }
        .marker-min { fill: none; stroke: #00e5ff; stroke-width: .3; } .marker-max { fill: none; stroke: #ff1744; stroke-width: .3; }
        .cfov-line { stroke-dasharray: 4 2; }
        """
}

extension QCFinding {
    static let cameraPrefix = "qc.camera."

    var isCamera: Bool { kind.hasPrefix(Self.cameraPrefix) }

    /// The CSV/table columns of a camera finding: UFOV integral uniformity for a flood, the
    /// COR offset for a COR acquisition, the heads for a missed flood.
    static func cameraColumns(_ kind: String, _ data: [String: JSONValue]) -> (value: Double?, unit: String, limit: String, detail: String) {
        let finding = data["finding"]?.stringValue ?? data["reason"]?.stringValue ?? ""
        let head = data["head"]?.intValue.map { "head \($0): " } ?? ""
        switch kind {
        case "qc.camera.uniformity":
            let limit = data["limits"]?["ufov_integral_pct"]
            let text = limit.map { "\(QCText.number($0["investigate"]?.doubleValue))/\(QCText.number($0["fail"]?.doubleValue)) %" } ?? ""
            let detail = finding.hasPrefix(head) ? finding : head + finding
            return (data["ufov"]?["integral_pct"]?.doubleValue, "%", text, detail)
        case "qc.camera.cor":
            let limit = data["limits"]?["offset_px"]
            let text = limit.map { "±\(QCText.number($0["investigate"]?.doubleValue))/±\(QCText.number($0["fail"]?.doubleValue)) px" } ?? ""
            return (data["offset_px"]?.doubleValue, "px", text, finding)
        default:
            return (nil, "", "", finding)
        }
    }
}

/// The smoothed flood as a grey-scale picture (an inline PNG) with the UFOV outlined in
/// blue, the CFOV in dashed yellow, the coldest pixel ringed cyan and the hottest red.
struct FloodPicture {
    let map: JSONValue
    let caption: String

    var svg: String {
        guard let rows = map["rows"]?.intValue.map(Int.init), let columns = map["columns"]?.intValue.map(Int.init), rows > 0, columns > 0,
            rows <= 4096, columns <= 4096,
            let pixels = map["pixels_b64"]?.stringValue.flatMap({ Data(base64Encoded: $0) }).map([UInt8].init), pixels.count == rows * columns
        else { return "" }
        let cfov = map["cfov_b64"]?.stringValue.flatMap({ Data(base64Encoded: $0) }).map([UInt8].init) ?? []
        let ufovMask = pixels.map { $0 != 0 }
        let cfovMask = cfov.count == pixels.count ? cfov.map { $0 != 0 } : [Bool](repeating: false, count: pixels.count)
        // Grey levels: outside the UFOV black; inside from dark (coldest) to white (hottest).
        let grey = pixels.map { $0 == 0 ? UInt8(0) : UInt8(40 + Int($0) * 215 / 255) }
        let png = PNG.grayscale(width: columns, height: rows, pixels: grey).base64EncodedString()
        let scale = 5.0  // SVG units are pixels of the rebinned grid; the picture is drawn 5× larger
        let footer = max(6, rows / 8)
        var out = """
            <svg class="flood-map" viewBox="0 0 \(columns) \(rows + footer)" width="\(Int(Double(columns) * scale))" height="\(Int(Double(rows + footer) * scale))" \
            role="img" aria-label="\(QCText.html("smoothed flood, \(caption)"))">
            <image x="0" y="0" width="\(columns)" height="\(rows)" preserveAspectRatio="none" style="image-rendering: pixelated" \
            href="data:image/png;base64,\(png)"/>

            """
        out += "<path class=\"ufov-outline\" d=\"\(Self.outline(ufovMask, rows: rows, columns: columns))\"/>\n"
        out += "<path class=\"cfov-outline\" d=\"\(Self.outline(cfovMask, rows: rows, columns: columns))\"/>\n"
        for (key, style) in [("min_at", "marker-min"), ("max_at", "marker-max")] {
            if case .array(let at) = map[key], at.count == 2, let r = at[0].intValue, let c = at[1].intValue {
                out += "<circle cx=\"\(Double(c) + 0.5)\" cy=\"\(Double(r) + 0.5)\" r=\"1.4\" class=\"\(style)\"/>\n"
            }
        }
        let font = Double(footer) / 3.2
        out += "<text x=\"0.5\" y=\"\(Double(rows) + font * 1.2)\" style=\"font: \(font)px sans-serif\">smoothed flood, \(QCText.html(caption))</text>\n"
        out += "<text x=\"0.5\" y=\"\(Double(rows) + font * 2.5)\" style=\"font: \(font)px sans-serif\">UFOV blue, CFOV dashed yellow, min cyan, max red</text>\n"
        return out + "</svg>\n"
    }

    /// The boundary of a mask as unit segments along pixel edges.
    static func outline(_ mask: [Bool], rows: Int, columns: Int) -> String {
        var d = ""
        func inside(_ r: Int, _ c: Int) -> Bool { r >= 0 && r < rows && c >= 0 && c < columns && mask[r * columns + c] }
        for r in 0..<rows {
            for c in 0..<columns where mask[r * columns + c] {
                if !inside(r - 1, c) { d += "M\(c) \(r)h1" }
                if !inside(r + 1, c) { d += "M\(c) \(r + 1)h1" }
                if !inside(r, c - 1) { d += "M\(c) \(r)v1" }
                if !inside(r, c + 1) { d += "M\(c + 1) \(r)v1" }
            }
        }
        return d
    }
}

/// A 30-day trend of one head's integral uniformity (UFOV solid, CFOV dashed) or COR offset,
/// over bands of the latest finding's limits: green pass, amber investigate, red fail.
struct CameraTrendChart {
    let title: String
    let findings: [QCFinding]
    let period: ClosedRange<LocalDay>
    let zone: TimeZone
    /// COR offsets are signed: bands on both sides of zero.
    let symmetric: Bool

    static let width = 420.0, height = 220.0, left = 44.0, right = 12.0, top = 24.0, bottom = 30.0

    var limits: (investigate: Double, fail: Double) {
        let key = symmetric ? "offset_px" : "ufov_integral_pct"
        let limit = findings.last?.data["limits"]?[key]
        let investigate = limit?["investigate"]?.doubleValue ?? (symmetric ? 0.5 : 5)
        return (investigate, max(limit?["fail"]?.doubleValue ?? (symmetric ? 1 : 7), investigate))
    }

    var svg: String {
        let (investigate, fail) = limits
        let values = findings.compactMap(\.value) + findings.compactMap { $0.data["cfov"]?["integral_pct"]?.doubleValue }
        let top = max(fail * 1.3, (values.map(abs).max() ?? 0) * 1.1)
        let bottom = symmetric ? -top : 0
        let plotWidth = Self.width - Self.left - Self.right, plotHeight = Self.height - Self.top - Self.bottom
        let days = period.lowerBound.days(to: period.upperBound) + 1
        func y(_ v: Double) -> Double { Self.top + (top - min(max(v, bottom), top)) / (top - bottom) * plotHeight }
        func x(_ finding: QCFinding) -> Double {
            let day = period.lowerBound.days(to: finding.localDay)
            return Self.left + (Double(day) + QCText.secondsIntoDay(finding.time, zone: zone) / 86_400) / Double(days) * plotWidth
        }
        var out = """
            <svg class="camera-chart" viewBox="0 0 \(Self.width) \(Self.height)" width="\(Self.width)" height="\(Self.height)" role="img" \
            aria-label="\(QCText.html(title))">
            <text x="\(Self.left)" y="14" class="title">\(QCText.html(title))</text>

            """
        func band(_ from: Double, _ to: Double, _ style: String) {
            out += "<rect x=\"\(f(Self.left))\" y=\"\(f(y(to)))\" width=\"\(f(plotWidth))\" height=\"\(f(y(from) - y(to)))\" class=\"\(style)\"/>\n"
        }
        band(symmetric ? -investigate : 0, investigate, "band-pass")
        band(investigate, fail, "band-investigate")
        band(fail, top, "band-fail")
        if symmetric {
            band(-fail, -investigate, "band-investigate")
            band(bottom, -fail, "band-fail")
        }
        for limit in (symmetric ? [investigate, fail, -investigate, -fail] : [investigate, fail]) {
            let style = abs(limit) == fail ? "limit-fail" : "limit-investigate"
            out += "<line x1=\"\(f(Self.left))\" y1=\"\(f(y(limit)))\" x2=\"\(f(Self.left + plotWidth))\" y2=\"\(f(y(limit)))\" class=\"\(style)\"/>\n"
            out += "<text x=\"\(f(Self.left - 4))\" y=\"\(f(y(limit) + 3))\" text-anchor=\"end\" class=\"limit-label\">\(QCText.number(limit))</text>\n"
        }
        out += "<line x1=\"\(f(Self.left))\" y1=\"\(f(y(bottom)))\" x2=\"\(f(Self.left + plotWidth))\" y2=\"\(f(y(bottom)))\" class=\"axis-line\"/>\n"
        out += "<text x=\"\(f(Self.left))\" y=\"\(f(Self.height - 10))\" class=\"axis\">\(period.lowerBound.shortDescription)</text>\n"
        out += "<text x=\"\(f(Self.left + plotWidth))\" y=\"\(f(Self.height - 10))\" text-anchor=\"end\" class=\"axis\">\(period.upperBound.shortDescription)</text>\n"
        if findings.isEmpty {
            out += "<text x=\"\(f(Self.left + plotWidth / 2))\" y=\"\(f(Self.top + plotHeight / 2))\" text-anchor=\"middle\" class=\"no-data\">no data in the period</text>\n"
        }
        var series: [(String, [(Double, Double, QCFinding)])] = [("", findings.compactMap { f in f.value.map { (x(f), y($0), f) } })]
        if !symmetric {
            series.append(("cfov-line", findings.compactMap { f in f.data["cfov"]?["integral_pct"]?.doubleValue.map { (x(f), y($0), f) } }))
        }
        for (style, points) in series where points.count > 1 {
            out += "<polyline class=\"trend-line \(style)\" points=\"\(points.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " "))\"/>\n"
        }
        for (style, points) in series {
            for (px, py, finding) in points {
                out += "<circle cx=\"\(f(px))\" cy=\"\(f(py))\" r=\"\(style.isEmpty ? 3 : 2)\" class=\"point \(finding.outcome.cssClass)\">"
                out += "<title>\(QCText.html("\(finding.localDay) \(QCText.timeOfDay(finding.time, zone: zone)) \(finding.valueText) \(finding.marker)"))</title></circle>\n"
            }
        }
        if !symmetric { out += "<text x=\"\(f(Self.left + plotWidth))\" y=\"14\" text-anchor=\"end\" class=\"legend\">UFOV solid, CFOV dashed</text>\n" }
        return out + "</svg>\n"
    }

    private func f(_ value: Double) -> String { String(format: "%.1f", value) }
}

/// A minimal PNG writer: 8-bit grey, zlib with stored (uncompressed) deflate blocks, which
/// every PNG reader accepts; pictures here are at most a few hundred pixels a side.
enum PNG {
    static func grayscale(width: Int, height: Int, pixels: [UInt8]) -> Data {
        var raw: [UInt8] = []
        raw.reserveCapacity((width + 1) * height)
        for r in 0..<height {
            raw.append(0)  // filter: none
            raw += pixels[(r * width)..<((r + 1) * width)]
        }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let count = min(65_535, raw.count - offset)
            let last: UInt8 = offset + count >= raw.count ? 1 : 0
            zlib += [last, UInt8(count & 0xFF), UInt8(count >> 8), UInt8(~count & 0xFF), UInt8((~count >> 8) & 0xFF)]
            zlib += raw[offset..<(offset + count)]
            offset += count
        } while offset < raw.count
        zlib += be32(adler32(raw))
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        out += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [8, 0, 0, 0, 0])
        out += chunk("IDAT", zlib)
        out += chunk("IEND", [])
        return Data(out)
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return be32(UInt32(data.count)) + body + be32(crc32(body))
    }

    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for x in bytes {
            a = (a + UInt32(x)) % 65_521
            b = (b + a) % 65_521
        }
        return b << 16 | a
    }
}
