/// The nmbridge release.
public enum NMBridgeVersion {
    public static let current = "0.1.0"
}
