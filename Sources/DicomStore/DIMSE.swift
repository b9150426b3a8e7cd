/// DIMSE command sets (PS3.7 §9, §E): group 0000, always implicit VR little endian.
public struct Command: Sendable, Equatable {
    public static let cStoreRequest: UInt16 = 0x0001
    public static let cStoreResponse: UInt16 = 0x8001
    public static let cEchoRequest: UInt16 = 0x0030
    public static let cEchoResponse: UInt16 = 0x8030
    /// CommandDataSetType value meaning "no dataset follows".
    public static let noDataSet: UInt16 = 0x0101

    public var field: UInt16
    public var messageID: UInt16?
    public var respondingTo: UInt16?
    public var affectedSOPClass: String?
    public var affectedSOPInstance: String?
    public var dataSetType: UInt16
    public var status: UInt16?
    public var priority: UInt16?

    public init(
        field: UInt16, messageID: UInt16? = nil, respondingTo: UInt16? = nil, affectedSOPClass: String? = nil,
        affectedSOPInstance: String? = nil, dataSetType: UInt16 = Command.noDataSet, status: UInt16? = nil, priority: UInt16? = nil
    ) {
        self.field = field
        self.messageID = messageID
        self.respondingTo = respondingTo
        self.affectedSOPClass = affectedSOPClass
        self.affectedSOPInstance = affectedSOPInstance
        self.dataSetType = dataSetType
        self.status = status
        self.priority = priority
    }

    public var hasDataSet: Bool { dataSetType != Command.noDataSet }

    /// Parses a command set. Unknown elements are ignored; a missing command field is an error.
    public static func decode(_ bytes: [UInt8]) throws(DatasetError) -> Command {
        var reader = DatasetReader(bytes: bytes, encoding: .implicitLittle)
        let set = try reader.read()
        func u16(_ element: UInt16) -> UInt16? {
            guard let value = set[Tag(0x0000, element)]?.value, value.count >= 2 else { return nil }
            return UInt16(value[value.startIndex]) | UInt16(value[value.startIndex + 1]) << 8
        }
        guard let field = u16(0x0100) else { throw DatasetError(message: "command set without a command field (0000,0100)") }
        return Command(
            field: field, messageID: u16(0x0110), respondingTo: u16(0x0120), affectedSOPClass: set.string(Tag(0x0000, 0x0002)),
            affectedSOPInstance: set.string(Tag(0x0000, 0x1000)), dataSetType: u16(0x0800) ?? Command.noDataSet,
            status: u16(0x0900), priority: u16(0x0700))
    }

    /// The command set's bytes, with its group length first.
    public func encoded() -> [UInt8] {
        var body: [UInt8] = []
        func element(_ element: UInt16, _ value: [UInt8]) {
            body += [0x00, 0x00, UInt8(element & 0xFF), UInt8(element >> 8)]
            let length = UInt32(value.count)
            body += [UInt8(length & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 24)]
            body += value
        }
        func uid(_ text: String) -> [UInt8] {
            var bytes = Array(text.utf8)
            if bytes.count % 2 == 1 { bytes.append(0) }
            return bytes
        }
        func u16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
        if let affectedSOPClass { element(0x0002, uid(affectedSOPClass)) }
        element(0x0100, u16(field))
        if let messageID { element(0x0110, u16(messageID)) }
        if let respondingTo { element(0x0120, u16(respondingTo)) }
        if let priority { element(0x0700, u16(priority)) }
        element(0x0800, u16(dataSetType))
        if let status { element(0x0900, u16(status)) }
        if let affectedSOPInstance { element(0x1000, uid(affectedSOPInstance)) }
        // (0000,0000) CommandGroupLength, UL, 4 bytes: the length of what follows.
        let length = UInt32(body.count)
        return [0, 0, 0, 0, 4, 0, 0, 0, UInt8(length & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 24)]
            + body
    }
}
