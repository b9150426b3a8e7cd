/// Text from devices and network peers made safe to print on a terminal.
///
/// An AE title, a series description or a calibrator's reading can carry escape sequences
/// (`ESC]0;…BEL` retitles the window, `ESC[2J` clears the screen) or bidirectional
/// overrides that reorder what the reader sees. Printed for people, every such character
/// is written as a visible escape instead; JSON output escapes control characters itself.
public enum TerminalText {
    /// `text` with C0 and C1 control characters, DEL and Unicode bidirectional controls
    /// written as `\xNN` (below U+0100) or `\u{NNNN}`. Line feeds and tabs are kept only
    /// when `keepLayout` is set (a multi-line report), otherwise escaped too.
    public static func escape(_ text: String, keepLayout: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { needsEscape($0, keepLayout: keepLayout) }) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar, keepLayout: keepLayout) else {
                out.unicodeScalars.append(scalar)
                continue
            }
            let hex = String(scalar.value, radix: 16, uppercase: true)
            out += scalar.value < 0x100 ? "\\x" + String(repeating: "0", count: 2 - hex.count) + hex : "\\u{\(hex)}"
        }
        return out
    }

    static func needsEscape(_ scalar: Unicode.Scalar, keepLayout: Bool) -> Bool {
        switch scalar.value {
        case 0x0A, 0x09: !keepLayout
        case 0x00...0x1F, 0x7F...0x9F: true
        // LRE, RLE, PDF, LRO, RLO; LRI, RLI, FSI, PDI; LRM, RLM, ALM.
        case 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: true
        default: false
        }
    }
}
