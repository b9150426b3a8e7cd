/// Scripts shipped with nmbridge, used by `nmbridged --demo`.
///
/// The values are plausible for a nuclear-medicine department (a Cs-137 constancy check
/// before Tc-99m bone-scan doses, a dual-head SPECT gantry) but are a replay, never data.
public enum BuiltinScripts {
    public static let names = ["dosecal-demo", "gantry-demo", "flaky-demo"]

    public static func text(named name: String) -> String? {
        switch name {
        case "dosecal-demo": dosecalDemo
        case "gantry-demo": gantryDemo
        case "flaky-demo": flakyDemo
        default: nil
        }
    }

    static let dosecalDemo = """
        # A hot-lab dose calibrator: morning constancy check, then patient doses.
        link up "simulated dose calibrator"
        wait 1
        emit dosecal.measurement {"nuclide": "Cs-137", "activity_bq": 7.0485e6, "reading": "190.5 uCi", "unit": "uCi", "calibration_number": "Cs-137"}
        wait 3
        emit dosecal.measurement {"nuclide": "Tc-99m", "activity_bq": 7.4e8, "reading": "20.00 mCi", "unit": "mCi"}
        wait 2
        heartbeat
        wait 2
        emit dosecal.measurement {"nuclide": "Tc-99m", "activity_bq": 6.956e8, "reading": "18.80 mCi", "unit": "mCi"}
        wait 2
        emit device.protocol_error {"error": "checksum mismatch in reply to poll", "bytes_hex": "02410d7f03"} raw 02410d7f03
        wait 3
        emit dosecal.measurement {"nuclide": "Tc-99m", "activity_bq": 5.55e7, "reading": "1.500 mCi", "unit": "mCi"}
        wait 3
        loop
        """

    static let gantryDemo = """
        # A dual-head SPECT gantry: move to the start angle, acquire, stop.
        link up "simulated gantry controller"
        wait 1.5
        emit gantry.motion {"state": "started", "positions": {"rotation_angle_deg": 0, "detector_radius_mm": 320}}
        wait 1
        emit gantry.state {"values": {"rotation_angle_deg": 45.0, "detector_radius_mm": 260.5, "table_height_mm": 812.0}}
        wait 1
        emit gantry.motion {"state": "stopped", "positions": {"rotation_angle_deg": 90.0, "detector_radius_mm": 245.0}}
        wait 1
        emit gantry.acquisition {"state": "started"}
        wait 4
        emit gantry.fault.raised {"fault": "collimator_interlock", "word": "0x0004"}
        wait 1
        emit gantry.fault.cleared {"fault": "collimator_interlock"}
        wait 3
        emit gantry.acquisition {"state": "stopped"}
        wait 4
        loop
        """

    static let flakyDemo = """
        # An instrument with a bad cable: goes silent (stale), comes back, then its driver crashes.
        link up "simulated flaky instrument"
        wait 1
        emit experimental.demo.ping {"note": "hello"}
        wait 12
        emit experimental.demo.ping {"note": "back after silence"}
        wait 2
        fail "simulated driver fault"
        """
}
