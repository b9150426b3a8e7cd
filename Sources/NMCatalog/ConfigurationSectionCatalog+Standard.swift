import DicomStore
import NMBridgeCore
import NMQualityControl
import NMShipper

extension ConfigurationSectionCatalog {
    /// Every configuration section this build reads, besides the core's tables (`[daemon]`,
    /// `[journal]`, `[api]`, `[supervisor]`, `[[device]]`). A new section is one line here;
    /// its type and reader live in the module that owns it.
    public static let standard = ConfigurationSectionCatalog([
        DaemonConfiguration.Shipper.self,
        DaemonConfiguration.Dicom.self,
        DaemonConfiguration.QualityControl.self,
    ])
}
