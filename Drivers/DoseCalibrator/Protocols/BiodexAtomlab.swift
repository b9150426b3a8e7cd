import Foundation

// Biodex Atomlab 400/500, RS-232.
//
// Source: DOMAIN.md ("Biodex Atomlab 400/500"), from the Atomlab 500 operation manual's
// remote-control chapter as described publicly; not verified on an instrument.
// - 19 200 baud, no parity, 1 stop bit, null-modem cable.
// - `1` (0x31) or ^C (0x03), with no CR, returns the current activity reading; the reply
//   ends in CR LF. We send `1` only: no command that changes a setting is ever sent.
// - The layout of the reply line was not found in any public source. It is read with a
//   configurable line pattern (LinePattern.swift); the default expects
//   "<nuclide> <activity> <unit>", e.g. "Tc99m 20.00 mCi". Verify against the device and
//   set `pattern` in the device table if it differs.

public enum BiodexAtomlab {
    /// "Send the current reading."
    public static let request: [UInt8] = [0x31]
}
