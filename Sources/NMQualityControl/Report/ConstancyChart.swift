import Foundation

/// An inline SVG chart of one calibrator's constancy deviation (%) per day of the report
/// period: the pass band (±investigate) green, the investigate band amber, beyond ±fail
/// red; one point per check coloured by its result, joined in time order so the drift
/// shows. Everything is drawn (no scripts, no fonts or images to fetch), so the chart
/// prints as it shows.
struct ConstancyChart {
    let device: String
    /// Constancy findings with a value, in time order.
    let trend: [QCFinding]
    let period: ClosedRange<LocalDay>
    let zone: TimeZone

    static let width = 760.0, height = 290.0
    static let left = 64.0, right = 16.0, top = 30.0, bottom = 46.0
    var plotWidth: Double { Self.width - Self.left - Self.right }
    var plotHeight: Double { Self.height - Self.top - Self.bottom }

    var dayCount: Int { period.lowerBound.days(to: period.upperBound) + 1 }

    /// The limits of the most recent check (a change of `[qc]` limits shows from then on).
    var investigatePct: Double { trend.last?.data["investigate_pct"]?.doubleValue ?? 5 }
    var failPct: Double { max(trend.last?.data["fail_pct"]?.doubleValue ?? 10, investigatePct) }

    /// The vertical scale, ± this much: room for the fail band and the points, but a wild
    /// outlier (a wrong nuclide setting) is pinned to the edge rather than squashing the
    /// trend into a line.
    var scale: (limit: Double, step: Double) {
        let largest = trend.compactMap { $0.value.map(abs) }.max() ?? 0
        let wanted = max(failPct * 1.5, min(largest * 1.15, failPct * 4), 1)
        let step = [0.5, 1, 2, 2.5, 5, 10, 20, 25, 50, 100, 250, 500, 1000].first { wanted * 2 / $0 <= 8 } ?? wanted / 4
        return ((wanted / step).rounded(.up) * step, step)
    }

    func x(day: Int, fraction: Double = 0) -> Double {
        Self.left + (Double(day) + fraction) / Double(dayCount) * plotWidth
    }

    func y(_ percent: Double) -> Double {
        let limit = scale.limit
        return Self.top + (limit - min(max(percent, -limit), limit)) / (2 * limit) * plotHeight
    }

    var svg: String {
        let (limit, step) = scale
        let (plotLeft, plotRight) = (Self.left, Self.left + plotWidth)
        var out = """
            <svg class="chart" viewBox="0 0 \(Self.width) \(Self.height)" width="\(Self.width)" height="\(Self.height)" \
            role="img" aria-label="\(QCText.html("Constancy deviation of \(device), \(period.lowerBound) to \(period.upperBound)"))">

            """
        func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ style: String) {
            out += "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\" class=\"\(style)\"/>\n"
        }
        func band(_ from: Double, _ to: Double, _ style: String) {
            out += "<rect x=\"\(f(plotLeft))\" y=\"\(f(y(to)))\" width=\"\(f(plotWidth))\" height=\"\(f(y(from) - y(to)))\" class=\"\(style)\"/>\n"
        }
        func text(_ x: Double, _ y: Double, _ anchor: String, _ content: String, _ style: String = "axis") {
            out += "<text x=\"\(f(x))\" y=\"\(f(y))\" text-anchor=\"\(anchor)\" class=\"\(style)\">\(QCText.html(content))</text>\n"
        }
        text(plotLeft, 16, "start", "\(device) — constancy deviation (%)", "title")
        band(-limit, limit, "band-fail")
        band(-failPct, failPct, "band-investigate")
        band(-investigatePct, investigatePct, "band-pass")

        // Days: a faint line at each midnight, a date under every few days, always the last.
        let labelEvery = max(1, Int((Double(dayCount) / 8).rounded(.up)))
        for day in 0...dayCount {
            line(x(day: day), Self.top, x(day: day), Self.top + plotHeight, "grid")
            if day < dayCount, (dayCount - 1 - day) % labelEvery == 0 {
                text(x(day: day, fraction: 0.5), Self.top + plotHeight + 16, "middle", period.lowerBound.adding(days: day).shortDescription)
            }
        }
        text(plotLeft + plotWidth / 2, Self.height - 8, "middle", "site-local date (\(zone.identifier))")
        // Deviation: labelled ticks, the limits as dashed lines named at the right.
        for tick in stride(from: -limit, through: limit + step / 2, by: step) {
            line(plotLeft - 4, y(tick), plotLeft, y(tick), "tick")
            text(plotLeft - 7, y(tick) + 4, "end", tick == 0 ? "0 %" : String(format: "%+g %%", tick))
        }
        line(plotLeft, y(0), plotRight, y(0), "zero")
        for (value, style, name) in [(investigatePct, "limit-investigate", "investigate"), (failPct, "limit-fail", "fail")] {
            line(plotLeft, y(value), plotRight, y(value), style)
            line(plotLeft, y(-value), plotRight, y(-value), style)
            text(plotRight - 4, y(value) - 4, "end", "\(name) ±\(QCText.number(value)) %", "limit-label")
        }
        line(plotLeft, Self.top, plotLeft, Self.top + plotHeight, "axis-line")
        line(plotLeft, Self.top + plotHeight, plotRight, Self.top + plotHeight, "axis-line")

        let points = trend.compactMap { finding -> (x: Double, y: Double, finding: QCFinding)? in
            guard let value = finding.value else { return nil }
            let day = period.lowerBound.days(to: finding.localDay)
            let fraction = min(QCText.secondsIntoDay(finding.time, zone: zone) / 86_400, 0.999)
            return (x(day: day, fraction: fraction), y(value), finding)
        }
        if points.isEmpty {
            text(plotLeft + plotWidth / 2, y(0) - 8, "middle", "no constancy checks in this period", "no-data")
        }
        if points.count > 1 {
            out += "<polyline class=\"trend-line\" points=\"\(points.map { "\(f($0.x)),\(f($0.y))" }.joined(separator: " "))\"/>\n"
        }
        for point in points {
            let finding = point.finding
            let pinned = abs(finding.value ?? 0) > limit
            let label = "\(finding.localDay) \(QCText.timeOfDay(finding.time, zone: zone)): \(finding.valueText) \(finding.marker)"
            out += "<circle cx=\"\(f(point.x))\" cy=\"\(f(point.y))\" r=\"\(finding.outcome == .fail ? 5 : 4)\" "
            out += "class=\"point \(finding.outcome.cssClass)\(pinned ? " pinned" : "")\"><title>\(QCText.html(label))</title></circle>\n"
        }
        // Legend, top right.
        var legendX = plotRight - 190
        for (outcome, width) in [(QCFinding.Outcome.pass, 50.0), (.investigate, 90), (.fail, 40)] {
            out += "<circle cx=\"\(f(legendX))\" cy=\"12\" r=\"4\" class=\"point \(outcome.cssClass)\"/>\n"
            text(legendX + 8, 16, "start", outcome.rawValue, "legend")
            legendX += width
        }
        return out + "</svg>\n"
    }

    /// Coordinates with at most one decimal.
    private func f(_ value: Double) -> String {
        String(format: "%.1f", value)
    }
}
