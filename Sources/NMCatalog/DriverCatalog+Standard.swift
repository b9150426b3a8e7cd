import DoseCalibrator
import ModbusGantry
import NMBridgeCore
import ScriptDriver

extension DriverCatalog {
    /// Every driver this build of nmbridge knows. A new driver family is one line here.
    ///
    /// A module of its own so that both programs have it: the daemon runs these drivers,
    /// the CLI checks configurations against them (`nmbridge config check`) without
    /// linking the daemon.
    public static let standard = DriverCatalog(
        [ScriptDriver.self] + doseCalibratorDrivers + [ModbusGantryDriver.self], eventKinds: .standard)
}
