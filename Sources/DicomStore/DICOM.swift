/// UIDs and constants from PS3.5, PS3.6 and PS3.7 that the receiver uses.
public enum DICOM {
    public static let applicationContext = "1.2.840.10008.3.1.1.1"
    public static let verification = "1.2.840.10008.1.1"
    /// Our implementation class UID (a UUID-derived 2.25 root) and version name.
    public static let implementationClassUID = "2.25.207461862918254305372936180316153417931"
    public static let implementationVersionName = "NMBRIDGE_1"

    public enum TransferSyntax {
        public static let implicitLittle = "1.2.840.10008.1.2"
        public static let explicitLittle = "1.2.840.10008.1.2.1"
        public static let deflatedExplicitLittle = "1.2.840.10008.1.2.1.99"
        public static let explicitBig = "1.2.840.10008.1.2.2"
        /// Encapsulated (compressed) syntaxes: the dataset is explicit VR little endian and
        /// the pixel data fragments are stored as received.
        public static let encapsulated = [
            "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",  // JPEG
            "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  // JPEG-LS
            "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  // JPEG 2000
            "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",  // HTJ2K
            "1.2.840.10008.1.2.5",  // RLE
        ]
        /// What the receiver accepts by default: every syntax it can read the header of.
        public static let defaultAccepted = [explicitLittle, implicitLittle, explicitBig, deflatedExplicitLittle] + encapsulated
    }

    /// Storage SOP classes accepted by default (PS3.4 Annex B.5), the ones a nuclear-medicine
    /// department's consoles and workstations send.
    public static let storageSOPClasses: [String: String] = [
        "1.2.840.10008.5.1.4.1.1.20": "NM Image",
        "1.2.840.10008.5.1.4.1.1.128": "PET Image",
        "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image",
        "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET Image",
        "1.2.840.10008.5.1.4.1.1.2": "CT Image",
        "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image",
        "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image",
        "1.2.840.10008.5.1.4.1.1.4": "MR Image",
        "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image",
        "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image",
        "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image - For Presentation",
        "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
        "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image",
        "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image",
        "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image",
        "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image",
        "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
        "1.2.840.10008.5.1.4.1.1.66": "Raw Data",
        "1.2.840.10008.5.1.4.1.1.66.1": "Spatial Registration",
        "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
        "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
        "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
        "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
        "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR",
        "1.2.840.10008.5.1.4.1.1.88.68": "Radiopharmaceutical Radiation Dose SR",
        "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
        "1.2.840.10008.5.1.4.1.1.481.1": "RT Image",
        "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
        "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
        "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan",
    ]

    /// DIMSE status codes the receiver sends (PS3.4 Annex B.2.3, PS3.7 Annex C).
    public enum Status {
        public static let success: UInt16 = 0x0000
        public static let outOfResources: UInt16 = 0xA700
        public static let dataSetDoesNotMatchSOPClass: UInt16 = 0xA900
        public static let cannotUnderstand: UInt16 = 0xC000
        /// Duplicate SOP Instance (PS3.7 Annex C.4.2): sent for `duplicates = "reject"`.
        public static let duplicateInstance: UInt16 = 0x0111
    }

    /// A valid UID: 1–64 characters of digits and dots, components without leading zeros,
    /// no empty component. Only such a UID becomes a path component.
    public static func isValidUID(_ uid: String) -> Bool {
        guard (1...64).contains(uid.utf8.count) else { return false }
        for component in uid.split(separator: ".", omittingEmptySubsequences: false) {
            guard !component.isEmpty, component.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return false }
            if component.count > 1, component.hasPrefix("0") { return false }
        }
        return true
    }
}
