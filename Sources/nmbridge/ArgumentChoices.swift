import ArgumentParser
import DoseCalibrator
import NMBridgeCore
import NMQualityControl
import NMShipper

// A choice on the command line is the library's own enum: ArgumentParser checks the value,
// names the valid ones in its error, in --help and in shell completions, and the command
// gets the enum, not a string to look up again.

extension QCReport.Format: ExpressibleByArgument {}
extension SimulatedModel: ExpressibleByArgument {}
extension DaemonConfiguration.Shipper.TLSMode: ExpressibleByArgument {}

/// `nmbridge query --format`.
enum QueryFormat: String, CaseIterable, ExpressibleByArgument {
    case jsonl, csv
}
