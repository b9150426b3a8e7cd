/// One Modbus read: a contiguous run of bits or registers of one table, covering one or
/// more resources.
public struct ReadRequest: Sendable, Equatable {
    /// The table read (decides the function code).
    public var table: ModbusTable
    /// The first wire address read.
    public var address: Int
    /// How many bits or registers are read.
    public var count: Int
    /// The resources covered, in address order.
    public var resources: [ModbusResource]

    /// Creates a request.
    public init(table: ModbusTable, address: Int, count: Int, resources: [ModbusResource]) {
        self.table = table
        self.address = address
        self.count = count
        self.resources = resources
    }

    /// The addresses read.
    public var addresses: ClosedRange<Int> { address...(address + count - 1) }

    /// The part of this request's response that belongs to `resource`, ready for
    /// ``ModbusResource/decode(_:)``; nil when the response is shorter than asked or the
    /// resource is not inside this request.
    public func raw(for resource: ModbusResource, in response: ModbusRawValue) -> ModbusRawValue? {
        guard resource.table == table, addresses.contains(resource.addresses.lowerBound),
            addresses.contains(resource.addresses.upperBound)
        else { return nil }
        let range = (resource.address - address)..<(resource.address - address + resource.type.width)
        switch response {
        case .registers(let registers) where !table.holdsBits && registers.count >= range.upperBound:
            return .registers(Array(registers[range]))
        case .bits(let bits) where table.holdsBits && bits.count >= range.upperBound:
            return .bits(Array(bits[range]))
        default:
            return nil
        }
    }
}

/// Groups resources into as few reads as the protocol allows.
///
/// Resources of one table are sorted by address and merged while the merged read stays
/// within the limit (Modbus allows 125 registers or 2000 bits per read) and the hole between
/// two neighbours is at most `maxRegisterGap` registers or `maxBitGap` bits: reading a few
/// unused addresses costs less than another round trip, but devices may answer "illegal
/// address" for holes, so keep the gaps small (0 disables reading through them).
///
/// Pass the resources that are due together (one poll interval). Requests come out by table
/// (coil, discrete, input, holding) then address. A resource wider than the limit (the
/// loader allows none) gets a request of its own, the only case that exceeds the limit.
public func readPlan(
    resources: [ModbusResource], maxRegisters: Int = 125, maxBits: Int = 2000, maxRegisterGap: Int = 8,
    maxBitGap: Int = 128
) -> [ReadRequest] {
    var plan: [ReadRequest] = []
    let byTable = Dictionary(grouping: resources, by: \.table)
    for table in byTable.keys.sorted() {
        let limit = max(1, table.holdsBits ? maxBits : maxRegisters)
        let gap = max(0, table.holdsBits ? maxBitGap : maxRegisterGap)
        let sorted = byTable[table]!.sorted { ($0.address, $0.name) < ($1.address, $1.name) }
        var current: ReadRequest?
        for resource in sorted {
            let span = resource.addresses
            if var request = current {
                let end = max(request.addresses.upperBound, span.upperBound)
                // Overlapping resources (built by hand) merge too: their start is inside.
                let hole = span.lowerBound - request.addresses.upperBound - 1
                if hole <= gap, end - request.address + 1 <= limit {
                    request.count = end - request.address + 1
                    request.resources.append(resource)
                    current = request
                    continue
                }
                plan.append(request)
            }
            current = ReadRequest(table: table, address: span.lowerBound, count: span.count, resources: [resource])
        }
        if let current { plan.append(current) }
    }
    return plan
}
