import NMBridgeCore

/// The DICOM receiver's lines of `nmbridge status`: its spool and materializer.
func dicomStatusLines(_ dicom: JSONValue) -> String {
    let spool = dicom["spool"] ?? .null
    let materializer = dicom["materializer"] ?? .null
    func mib(_ value: JSONValue?) -> String {
        String(format: "%.1f", Double(value?.intValue ?? 0) / 1_048_576)
    }
    var text = "dicom:    \(dicom["open_associations"]?.intValue ?? 0) association(s) open\n"
    if spool["enabled"] == .bool(true) {
        text += "          spool \(spool["records"]?.intValue ?? 0) record(s), \(mib(spool["bytes"])) of \(mib(spool["capacity_bytes"])) MiB; "
        text += "\(spool["syncs"]?.intValue ?? 0) sync(s) for \(spool["synced_records"]?.intValue ?? 0) record(s); "
        text += "\(spool["waits"]?.intValue ?? 0) wait(s), \(spool["bypassed"]?.intValue ?? 0) stored without it\n"
    } else {
        text += "          no spool: each instance is made durable on its own\n"
    }
    text += "          materializer \(materializer["pending"]?.intValue ?? 0) waiting, lag \(materializer["lag_s"]?.doubleValue ?? 0) s, "
    text += "\(materializer["materialized"]?.intValue ?? 0) put in place since start\n"
    if let fault = materializer["fault"]?.stringValue {
        text += "          CANNOT PUT INSTANCES IN PLACE: \(fault) (they wait in the spool)\n"
    }
    return text
}
