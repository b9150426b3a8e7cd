/// DICOM upper-layer protocol data units (PS3.8 §9.3): what travels on an association.
///
/// Decoding is total: any byte sequence gives a PDU or a ``PDUError`` naming what was wrong,
/// and no length read from the wire allocates more than the bytes actually present (the
/// framer has already bounded the PDU's length).
public enum PDU: Sendable, Equatable {
    case associateRequest(AssociateRequest)
    case associateAccept(AssociateAccept)
    case associateReject(result: UInt8, source: UInt8, reason: UInt8)
    case data([PDV])
    case releaseRequest
    case releaseResponse
    case abort(source: UInt8, reason: UInt8)

    /// PDU types (the first byte).
    public static let dataType: UInt8 = 0x04
}

/// One presentation data value of a P-DATA-TF: a fragment of a command or a dataset.
public struct PDV: Sendable, Equatable {
    public var contextID: UInt8
    public var isCommand: Bool
    public var isLast: Bool
    public var bytes: [UInt8]

    public init(contextID: UInt8, isCommand: Bool, isLast: Bool, bytes: [UInt8]) {
        self.contextID = contextID
        self.isCommand = isCommand
        self.isLast = isLast
        self.bytes = bytes
    }
}

/// A proposed presentation context: one abstract syntax (SOP class) and the transfer
/// syntaxes the requestor can send it in.
public struct ProposedContext: Sendable, Equatable {
    public var id: UInt8
    public var abstractSyntax: String
    public var transferSyntaxes: [String]
}

/// SCU/SCP role selection for one SOP class (user-information sub-item 0x54).
public struct RoleSelection: Sendable, Equatable {
    public var sopClass: String
    public var scu: Bool
    public var scp: Bool
}

public struct AssociateRequest: Sendable, Equatable {
    public var calledAE: String
    public var callingAE: String
    public var applicationContext: String
    public var contexts: [ProposedContext]
    /// The largest P-DATA-TF the requestor will receive (0: unlimited).
    public var maxPDULength: UInt32
    public var implementationClassUID: String?
    public var implementationVersionName: String?
    /// Asynchronous operations window (invoked, performed), when proposed.
    public var asyncOperations: (invoked: UInt16, performed: UInt16)?
    public var roles: [RoleSelection]

    public static func == (a: AssociateRequest, b: AssociateRequest) -> Bool {
        a.calledAE == b.calledAE && a.callingAE == b.callingAE && a.applicationContext == b.applicationContext
            && a.contexts == b.contexts && a.maxPDULength == b.maxPDULength
            && a.implementationClassUID == b.implementationClassUID
            && a.implementationVersionName == b.implementationVersionName
            && a.asyncOperations?.invoked == b.asyncOperations?.invoked
            && a.asyncOperations?.performed == b.asyncOperations?.performed && a.roles == b.roles
    }
}

/// The answer to one proposed context.
public struct AcceptedContext: Sendable, Equatable {
    public enum Result: UInt8, Sendable {
        case acceptance = 0
        case userRejection = 1
        case noReason = 2
        case abstractSyntaxNotSupported = 3
        case transferSyntaxesNotSupported = 4
    }

    public var id: UInt8
    public var result: Result
    /// The transfer syntax chosen (meaningful on acceptance only).
    public var transferSyntax: String
}

public struct AssociateAccept: Sendable, Equatable {
    public var calledAE: String
    public var callingAE: String
    public var contexts: [AcceptedContext]
    public var maxPDULength: UInt32
    public var implementationClassUID: String
    public var implementationVersionName: String
    public var asyncOperations: (invoked: UInt16, performed: UInt16)?
    public var roles: [RoleSelection]

    public static func == (a: AssociateAccept, b: AssociateAccept) -> Bool {
        a.calledAE == b.calledAE && a.callingAE == b.callingAE && a.contexts == b.contexts && a.maxPDULength == b.maxPDULength
            && a.implementationClassUID == b.implementationClassUID && a.implementationVersionName == b.implementationVersionName
            && a.asyncOperations?.invoked == b.asyncOperations?.invoked
            && a.asyncOperations?.performed == b.asyncOperations?.performed && a.roles == b.roles
    }
}

/// Why bytes are not a PDU. The association is aborted with it.
public struct PDUError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - Decoding

/// Reads big-endian fields from a byte slice, failing instead of trapping.
struct ByteReader {
    let bytes: ArraySlice<UInt8>
    var index: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        index = bytes.startIndex
    }

    var remaining: Int { bytes.endIndex - index }

    mutating func u8(_ what: String) throws(PDUError) -> UInt8 {
        guard remaining >= 1 else { throw PDUError("truncated \(what)") }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func u16(_ what: String) throws(PDUError) -> UInt16 {
        guard remaining >= 2 else { throw PDUError("truncated \(what)") }
        defer { index += 2 }
        return UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1])
    }

    mutating func u32(_ what: String) throws(PDUError) -> UInt32 {
        guard remaining >= 4 else { throw PDUError("truncated \(what)") }
        defer { index += 4 }
        return UInt32(bytes[index]) << 24 | UInt32(bytes[index + 1]) << 16 | UInt32(bytes[index + 2]) << 8 | UInt32(bytes[index + 3])
    }

    mutating func take(_ count: Int, _ what: String) throws(PDUError) -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else { throw PDUError("\(what) claims \(count) bytes, \(remaining) remain") }
        defer { index += count }
        return bytes[index..<(index + count)]
    }

    mutating func skip(_ count: Int, _ what: String) throws(PDUError) { _ = try take(count, what) }
}

extension PDU {
    /// Decodes one whole PDU: `type`, and the bytes after the 6-byte header.
    public static func decode(type: UInt8, body: ArraySlice<UInt8>) throws(PDUError) -> PDU {
        var reader = ByteReader(body)
        switch type {
        case 0x01:
            return .associateRequest(try decodeAssociateRequest(&reader))
        case 0x02:
            return .associateAccept(try decodeAssociateAccept(&reader))
        case 0x03:
            try reader.skip(1, "A-ASSOCIATE-RJ")
            return .associateReject(
                result: try reader.u8("A-ASSOCIATE-RJ result"), source: try reader.u8("A-ASSOCIATE-RJ source"),
                reason: try reader.u8("A-ASSOCIATE-RJ reason"))
        case 0x04:
            var pdvs: [PDV] = []
            while reader.remaining > 0 {
                let length = Int(try reader.u32("PDV length"))
                guard length >= 2 else { throw PDUError("PDV length \(length) is shorter than its 2-byte header") }
                var item = ByteReader(try reader.take(length, "PDV"))
                let context = try item.u8("PDV context id")
                let header = try item.u8("PDV message control header")
                guard context % 2 == 1 else { throw PDUError("PDV presentation context id \(context) is even") }
                pdvs.append(
                    PDV(contextID: context, isCommand: header & 1 != 0, isLast: header & 2 != 0, bytes: Array(item.bytes[item.index...])))
            }
            guard !pdvs.isEmpty else { throw PDUError("P-DATA-TF without any PDV") }
            return .data(pdvs)
        case 0x05:
            return .releaseRequest
        case 0x06:
            return .releaseResponse
        case 0x07:
            try reader.skip(2, "A-ABORT")
            return .abort(source: try reader.u8("A-ABORT source"), reason: try reader.u8("A-ABORT reason"))
        default:
            throw PDUError("unknown PDU type 0x\(String(type, radix: 16))")
        }
    }

    /// AE titles are 16 bytes, space padded; leading and trailing spaces are not significant
    /// (trailing NULs, which some peers pad with, neither). What remains is returned as text
    /// with every byte that an AE value may not hold (PS3.5 §6.2: control characters and
    /// backslash; here also NUL and anything outside ASCII) written as `\xNN`, so that the
    /// text is safe to log and journal and `isValidAETitle` can tell.
    static func aeTitle(_ bytes: ArraySlice<UInt8>) -> String {
        var value = bytes
        while let last = value.last, last == 0x20 || last == 0 { value = value.dropLast() }
        while value.first == 0x20 { value = value.dropFirst() }
        var text = ""
        for byte in value {
            if (0x20...0x7E).contains(byte), byte != 0x5C {
                text.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                text += "\\x" + (hex.count == 1 ? "0" : "") + hex
            }
        }
        return text
    }

    /// Whether text from `aeTitle` is a valid AE value: not empty (all spaces) and nothing
    /// that had to be escaped (an escape is the only way a backslash gets into it).
    public static func isValidAETitle(_ text: String) -> Bool {
        !text.isEmpty && !text.contains("\\")
    }

    /// UIDs in items are padded with NUL (or, wrongly, space) by some peers.
    static func uid(_ bytes: ArraySlice<UInt8>) -> String { aeTitle(bytes) }

    /// Protocol version, reserved bytes, called and calling AE titles of an A-ASSOCIATE-RQ/AC.
    private static func associateHeader(_ reader: inout ByteReader, _ pdu: String) throws(PDUError) -> (called: String, calling: String) {
        _ = try reader.u16("protocol version")
        try reader.skip(2, "\(pdu) reserved")
        let called = aeTitle(try reader.take(16, "called AE title"))
        let calling = aeTitle(try reader.take(16, "calling AE title"))
        try reader.skip(32, "\(pdu) reserved")
        return (called, calling)
    }

    /// The user-information item (0x50) of an A-ASSOCIATE-RQ or -AC.
    private struct UserInformation {
        var maxPDULength: UInt32 = 0
        var implementationClassUID: String?
        var implementationVersionName: String?
        var asyncOperations: (invoked: UInt16, performed: UInt16)?
        var roles: [RoleSelection] = []
    }

    private static func userInformation(_ item: inout ByteReader) throws(PDUError) -> UserInformation {
        var info = UserInformation()
        while item.remaining > 0 {
            let subType = try item.u8("user sub-item type")
            try item.skip(1, "user sub-item reserved")
            var sub = ByteReader(try item.take(Int(try item.u16("user sub-item length")), "user sub-item"))
            switch subType {
            case 0x51: info.maxPDULength = try sub.u32("maximum length")
            case 0x52: info.implementationClassUID = uid(sub.bytes)
            case 0x53: info.asyncOperations = (try sub.u16("invoked operations"), try sub.u16("performed operations"))
            case 0x54: info.roles.append(try roleSelection(&sub))
            case 0x55: info.implementationVersionName = aeTitle(sub.bytes)
            default: break  // 56 (extended negotiation), 58 (user identity), unknown: skipped
            }
        }
        return info
    }

    private static func roleSelection(_ sub: inout ByteReader) throws(PDUError) -> RoleSelection {
        let length = Int(try sub.u16("role UID length"))
        let sopClass = uid(try sub.take(length, "role SOP class UID"))
        return RoleSelection(sopClass: sopClass, scu: try sub.u8("SCU role") == 1, scp: try sub.u8("SCP role") == 1)
    }

    private static func decodeAssociateRequest(_ reader: inout ByteReader) throws(PDUError) -> AssociateRequest {
        let (called, calling) = try associateHeader(&reader, "A-ASSOCIATE-RQ")
        var request = AssociateRequest(
            calledAE: called, callingAE: calling, applicationContext: "", contexts: [], maxPDULength: 0,
            implementationClassUID: nil, implementationVersionName: nil, asyncOperations: nil, roles: [])
        while reader.remaining > 0 {
            let type = try reader.u8("item type")
            try reader.skip(1, "item reserved")
            var item = ByteReader(try reader.take(Int(try reader.u16("item length")), "item 0x\(String(type, radix: 16))"))
            switch type {
            case 0x10:
                request.applicationContext = uid(item.bytes)
            case 0x20:
                let id = try item.u8("presentation context id")
                try item.skip(3, "presentation context reserved")
                var context = ProposedContext(id: id, abstractSyntax: "", transferSyntaxes: [])
                while item.remaining > 0 {
                    let subType = try item.u8("sub-item type")
                    try item.skip(1, "sub-item reserved")
                    let value = uid(try item.take(Int(try item.u16("sub-item length")), "syntax sub-item"))
                    if subType == 0x30 { context.abstractSyntax = value } else if subType == 0x40 { context.transferSyntaxes.append(value) }
                }
                request.contexts.append(context)
            case 0x50:
                let info = try userInformation(&item)
                request.maxPDULength = info.maxPDULength
                request.implementationClassUID = info.implementationClassUID
                request.implementationVersionName = info.implementationVersionName
                request.asyncOperations = info.asyncOperations
                request.roles = info.roles
            default:
                break  // unknown items are skipped (PS3.8 §9.3.1)
            }
        }
        return request
    }

    private static func decodeAssociateAccept(_ reader: inout ByteReader) throws(PDUError) -> AssociateAccept {
        let (called, calling) = try associateHeader(&reader, "A-ASSOCIATE-AC")
        var accept = AssociateAccept(
            calledAE: called, callingAE: calling, contexts: [], maxPDULength: 0, implementationClassUID: "",
            implementationVersionName: "", asyncOperations: nil, roles: [])
        while reader.remaining > 0 {
            let type = try reader.u8("item type")
            try reader.skip(1, "item reserved")
            var item = ByteReader(try reader.take(Int(try reader.u16("item length")), "item"))
            switch type {
            case 0x21:
                let id = try item.u8("context id")
                try item.skip(1, "reserved")
                let result = AcceptedContext.Result(rawValue: try item.u8("result")) ?? .noReason
                try item.skip(1, "reserved")
                var syntax = ""
                while item.remaining > 0 {
                    let subType = try item.u8("sub-item type")
                    try item.skip(1, "reserved")
                    let value = uid(try item.take(Int(try item.u16("sub-item length")), "transfer syntax"))
                    if subType == 0x40 { syntax = value }
                }
                accept.contexts.append(AcceptedContext(id: id, result: result, transferSyntax: syntax))
            case 0x50:
                let info = try userInformation(&item)
                accept.maxPDULength = info.maxPDULength
                accept.implementationClassUID = info.implementationClassUID ?? accept.implementationClassUID
                accept.implementationVersionName = info.implementationVersionName ?? accept.implementationVersionName
                accept.asyncOperations = info.asyncOperations
                accept.roles = info.roles
            default:
                break
            }
        }
        return accept
    }
}

// MARK: - Encoding

/// Big-endian writer for PDUs.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    mutating func u32(_ v: UInt32) { bytes += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    mutating func ae(_ title: String) {
        let raw = Array(title.utf8.prefix(16))
        bytes += raw + [UInt8](repeating: 0x20, count: 16 - raw.count)
    }
    /// The fixed start of A-ASSOCIATE-RQ and -AC: protocol version 1, AE titles, reserved
    /// bytes, then the application context item.
    mutating func associateHeader(called: String, calling: String, applicationContext: String) {
        u16(1)
        u16(0)
        ae(called)
        ae(calling)
        bytes += [UInt8](repeating: 0, count: 32)
        item(0x10, Array(applicationContext.utf8))
    }

    /// An item: type, reserved, 16-bit length, value.
    /// Values longer than an item can say (65 535 bytes) are cut: callers bound what they
    /// put here, and a cut value is a malformed PDU for the peer, never a crash for us.
    mutating func item(_ type: UInt8, _ value: [UInt8]) {
        let fitting = value.prefix(Int(UInt16.max))
        u8(type)
        u8(0)
        u16(UInt16(fitting.count))
        bytes += fitting
    }
}

extension PDU {
    /// The PDU on the wire: header and body.
    public func encoded() -> [UInt8] {
        var body = ByteWriter()
        let type: UInt8
        switch self {
        case .associateRequest(let rq):
            type = 0x01
            body.associateHeader(called: rq.calledAE, calling: rq.callingAE, applicationContext: rq.applicationContext)
            for context in rq.contexts {
                var value = ByteWriter()
                value.u8(context.id)
                value.bytes += [0, 0, 0]
                value.item(0x30, Array(context.abstractSyntax.utf8))
                for syntax in context.transferSyntaxes { value.item(0x40, Array(syntax.utf8)) }
                body.item(0x20, value.bytes)
            }
            var user = ByteWriter()
            var max = ByteWriter()
            max.u32(rq.maxPDULength)
            user.item(0x51, max.bytes)
            if let uid = rq.implementationClassUID { user.item(0x52, Array(uid.utf8)) }
            body.item(0x50, user.bytes)
        case .associateAccept(let ac):
            type = 0x02
            body.associateHeader(called: ac.calledAE, calling: ac.callingAE, applicationContext: DICOM.applicationContext)
            for context in ac.contexts {
                var value = ByteWriter()
                value.u8(context.id)
                value.u8(0)
                value.u8(context.result.rawValue)
                value.u8(0)
                value.item(0x40, Array(context.transferSyntax.utf8))
                body.item(0x21, value.bytes)
            }
            var user = ByteWriter()
            var max = ByteWriter()
            max.u32(ac.maxPDULength)
            user.item(0x51, max.bytes)
            user.item(0x52, Array(ac.implementationClassUID.utf8))
            if let window = ac.asyncOperations {
                var value = ByteWriter()
                value.u16(window.invoked)
                value.u16(window.performed)
                user.item(0x53, value.bytes)
            }
            for role in ac.roles {
                var value = ByteWriter()
                value.u16(UInt16(role.sopClass.utf8.count))
                value.bytes += Array(role.sopClass.utf8)
                value.u8(role.scu ? 1 : 0)
                value.u8(role.scp ? 1 : 0)
                user.item(0x54, value.bytes)
            }
            user.item(0x55, Array(ac.implementationVersionName.utf8.prefix(16)))
            body.item(0x50, user.bytes)
        case .associateReject(let result, let source, let reason):
            type = 0x03
            body.bytes = [0, result, source, reason]
        case .data(let pdvs):
            type = 0x04
            for pdv in pdvs {
                body.u32(UInt32(pdv.bytes.count + 2))
                body.u8(pdv.contextID)
                body.u8((pdv.isCommand ? 1 : 0) | (pdv.isLast ? 2 : 0))
                body.bytes += pdv.bytes
            }
        case .releaseRequest:
            type = 0x05
            body.bytes = [0, 0, 0, 0]
        case .releaseResponse:
            type = 0x06
            body.bytes = [0, 0, 0, 0]
        case .abort(let source, let reason):
            type = 0x07
            body.bytes = [0, 0, source, reason]
        }
        var out = ByteWriter()
        out.u8(type)
        out.u8(0)
        out.u32(UInt32(body.bytes.count))
        return out.bytes + body.bytes
    }
}
