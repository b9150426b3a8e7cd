import NMBridgeCore

/// When a reading counts as a measurement (`settle = "polls"` or `"device"`).
public struct SettleRule: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        /// `count` consecutive polls of the same nuclide and chamber, each within `band`
        /// (relative, e.g. 0.01) of the one before.
        case polls(count: Int, band: Double)
        /// The device marks final readings itself (a printed line is final).
        case device
    }

    public var mode: Mode
    /// Below this the chamber is taken as empty (background): no measurement, and the
    /// next vial starts a new one.
    public var minActivityBq: Double

    public init(mode: Mode, minActivityBq: Double = 100_000) {
        self.mode = mode
        self.minActivityBq = minActivityBq
    }
}

/// Turns a stream of readings into measurements: one per vial in the chamber.
///
/// In `polls` mode a measurement is emitted when `count` consecutive readings agree within
/// the band; no further one is emitted for that vial until the chamber reads empty, the
/// nuclide or chamber changes, or a reading jumps beyond the band (another vial). Slow
/// decay while a vial stays in the chamber moves each reading less than the band, so it
/// never counts twice.
public struct Settler: Sendable {
    public let rule: SettleRule
    private var run: [ActivityReading] = []
    /// The measurement emitted for the vial in the chamber, while it stays there.
    private var emitted: ActivityReading?

    public init(rule: SettleRule) {
        self.rule = rule
    }

    /// Feeds one reading; returns it when it completes a measurement.
    public mutating func add(_ reading: ActivityReading) -> ActivityReading? {
        guard reading.activityBq >= rule.minActivityBq else {
            reset()
            return nil
        }
        switch rule.mode {
        case .device:
            return reading.final ? reading : nil
        case .polls(let count, let band):
            // After a doubtful reply the run starts again, but the vial already measured is
            // still that vial: its readings are compared with its measurement.
            if let previous = run.last ?? emitted {
                let sameSource = previous.nuclide == reading.nuclide && previous.chamber == reading.chamber
                let step = abs(reading.activityBq - previous.activityBq)
                if !sameSource || step > band * previous.activityBq {
                    reset()
                }
            }
            run.append(reading)
            if run.count > count { run.removeFirst(run.count - count) }
            guard run.count >= count, emitted == nil else { return nil }
            emitted = reading
            return reading
        }
    }

    /// The device answered with nothing to report (empty chamber): the next reading starts
    /// a new measurement.
    public mutating func reset() {
        run.removeAll(keepingCapacity: true)
        emitted = nil
    }

    /// A reply was in doubt (bytes between replies, a late reply): the readings so far no
    /// longer count towards a measurement. A vial already measured is not measured again
    /// unless its readings show another vial (a late reply on a loaded machine once made
    /// one vial two measurements).
    public mutating func doubt() {
        run.removeAll(keepingCapacity: true)
    }
}
