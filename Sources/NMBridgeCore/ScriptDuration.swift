/// A duration as the simulator scripts write it: `500ms`, `8s`, `2m`, or a bare number of
/// seconds; at most a year. Nil for anything else.
public func scriptSeconds(_ text: String) -> Double? {
    let (number, scale): (Substring, Double) =
        if text.hasSuffix("ms") {
            (text.dropLast(2), 0.001)
        } else if text.hasSuffix("s") {
            (text.dropLast(), 1)
        } else if text.hasSuffix("m") {
            (text.dropLast(), 60)
        } else {
            (Substring(text), 1)
        }
    guard let value = Double(number), value.isFinite, value >= 0, value <= 86_400 * 365 else { return nil }
    return value * scale
}
