import Foundation
import NMBridgeCore

/// Prints events for people (aligned, coloured on a terminal) or as JSON Lines.
struct EventPrinter {
    enum Format { case human, jsonl }
    let format: Format
    let colour: Bool
    /// Prefix human lines with the node (events of several nodes, `tail --postgres`).
    let showNode: Bool

    init(json: Bool, showNode: Bool = false) {
        self.showNode = showNode
        let terminal = isatty(STDOUT_FILENO) == 1
        format = json || !terminal ? .jsonl : .human
        colour = terminal && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    }

    /// Prints one envelope given as JSON text.
    func print(envelopeJSON: String) {
        switch format {
        case .jsonl:
            writeStdout(envelopeJSON + "\n")
        case .human:
            guard let event = try? Event(json: envelopeJSON) else {
                writeStdout(envelopeJSON + "\n")
                return
            }
            writeStdout(human(event) + "\n")
        }
    }

    /// One line for people. Every piece that came from a device or a peer (device id, kind,
    /// node, keys, values) is escaped: an AE title or a reading must not drive the terminal.
    func human(_ event: Event) -> String {
        let safe = { (text: String) in TerminalText.escape(text) }
        let time = LocalTime.format(event.time)
        let deviceText = safe(event.device ?? "-")
        let kindText = safe(event.kind)
        let device = deviceText.padding(toLength: max(14, deviceText.count), withPad: " ", startingAt: 0)
        let kind = kindText.padding(toLength: max(22, kindText.count), withPad: " ", startingAt: 0)
        var line = "\(time) \(device) \(kind)"
        if showNode { line = "\(safe(event.node)) " + line }
        let data = event.data
        for key in data.keys.sorted() {
            let value = data[key]!
            let text: String =
                switch value {
                case .string(let s): s.contains(" ") || s.isEmpty ? "\"\(safe(s))\"" : safe(s)
                default: safe(value.jsonText)
                }
            line += " \(safe(key))=\(text)"
        }
        guard colour else { return "\(event.seq) " + line }
        let code: String? =
            switch event.severity {
            case .debug: "2"
            case .info: nil
            case .notice: "36"
            case .warning: "33"
            case .error, .critical: "31;1"
            }
        let seq = "\u{1B}[2m\(event.seq)\u{1B}[0m "
        guard let code else { return seq + line }
        return seq + "\u{1B}[\(code)m" + line + "\u{1B}[0m"
    }
}
