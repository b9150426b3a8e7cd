import Foundation

/// One detector's image of counts, row-major, as the camera QC algorithms take it.
///
/// Row 0 is the top row of the DICOM image, column 0 its left column. `rowSpacingMM` is the
/// distance between rows (the first value of Pixel Spacing, y), `columnSpacingMM` the
/// distance between columns (the second value, x); nil when the image does not say.
public struct CountImage: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public var counts: [Double]
    public var rowSpacingMM: Double?
    public var columnSpacingMM: Double?

    /// An image of `rows` × `columns` counts; `counts` must hold exactly that many values
    /// (fewer are padded with zeros, more are cut: the type never holds a ragged array).
    public init(rows: Int, columns: Int, counts: [Double], rowSpacingMM: Double? = nil, columnSpacingMM: Double? = nil) {
        self.rows = max(0, rows)
        self.columns = max(0, columns)
        let n = self.rows * self.columns
        var values = counts
        if values.count > n { values.removeLast(values.count - n) }
        if values.count < n { values += [Double](repeating: 0, count: n - values.count) }
        self.counts = values
        self.rowSpacingMM = rowSpacingMM
        self.columnSpacingMM = columnSpacingMM
    }

    /// An image of `rows` × `columns` pixels all holding `value`.
    public init(rows: Int, columns: Int, value: Double, rowSpacingMM: Double? = nil, columnSpacingMM: Double? = nil) {
        self.init(
            rows: rows, columns: columns, counts: [Double](repeating: value, count: max(0, rows) * max(0, columns)), rowSpacingMM: rowSpacingMM,
            columnSpacingMM: columnSpacingMM)
    }

    @inlinable public subscript(row: Int, column: Int) -> Double {
        get { counts[row * columns + column] }
        set { counts[row * columns + column] = newValue }
    }

    /// The sum of all counts.
    public var total: Double { counts.reduce(0, +) }
}

/// Why a camera QC image could not be analysed; the message names what is wrong.
public struct CameraQCError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
