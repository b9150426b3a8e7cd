import Testing
import TestSupport

@testable import ModbusGantry

func register(_ name: String, _ address: Int, _ type: ModbusDataType = .u16, table: ModbusTable = .holding) -> ModbusResource {
    ModbusResource(name: name, table: table, address: address, type: type)
}

@Suite struct ReadPlanTests {
    @Test func theExampleProfileIsTwoReads() throws {
        let profile = try ModbusProfileLoader.load(path: profilesDirectory + "/spect-gantry-example.toml")
        let plan = readPlan(resources: profile.resources)
        // Input registers 0–13 and 20–27 (a hole of 6 ≤ 8) merge; the discrete input alone.
        #expect(plan.map(\.table) == [.discrete, .input])
        #expect(plan.map(\.address) == [0, 0])
        #expect(plan.map(\.count) == [1, 28])
        #expect(plan[1].resources.count == 11)
        #expect(readPlan(resources: profile.resources, maxRegisterGap: 0).count == 4, "0…8, 10…13, 20…27, discrete")
    }

    @Test func gapsUpToTheLimitAreReadThrough() {
        #expect(readPlan(resources: [register("a", 0), register("b", 9)]).map(\.count) == [10], "hole of 8")
        #expect(readPlan(resources: [register("a", 0), register("b", 10)]).map(\.count) == [1, 1], "hole of 9")
        #expect(readPlan(resources: [register("a", 0, .f64), register("b", 4)]).map(\.count) == [5], "adjacent")
        let split = readPlan(resources: [register("b", 100), register("a", 0), register("c", 0, table: .input)])
        #expect(split.map(\.table) == [.input, .holding, .holding])
        #expect(split.map(\.address) == [0, 0, 100])
    }

    @Test func requestsStayWithinTheProtocolLimits() {
        let registers = (0..<130).map { register("r\($0)", $0) }
        #expect(readPlan(resources: registers).map(\.count) == [125, 5])
        let coils = (0..<2100).map { register("c\($0)", $0, .bool, table: .coil) }
        #expect(readPlan(resources: coils).map(\.count) == [2000, 100])
        // A value is never split over two requests: the f64 at 123 starts the next one.
        let straddling = (0..<123).map { register("r\($0)", $0) } + [register("wide", 123, .f64)]
        #expect(readPlan(resources: straddling).map(\.count) == [123, 4])
        // A value wider than the limit (the loader allows none) is read whole, on its own.
        let wide = [register("a", 0), register("text", 1, .string(registers: 125)), register("b", 126)]
        #expect(readPlan(resources: wide, maxRegisters: 100).map(\.count) == [1, 125, 1])
    }

    @Test func rawForAResource() throws {
        let a = register("a", 10)
        let b = register("b", 12, .u32)
        let plan = readPlan(resources: [a, b])
        let request = try #require(plan.first)
        #expect(request.address == 10 && request.count == 4)
        let response = ModbusRawValue.registers([1, 2, 3, 4])
        #expect(request.raw(for: b, in: response) == .registers([3, 4]))
        #expect(request.raw(for: a, in: response) == .registers([1]))
        #expect(request.raw(for: b, in: .registers([1, 2, 3])) == nil, "short response")
        #expect(request.raw(for: register("z", 50), in: response) == nil, "not in this request")
        #expect(request.raw(for: a, in: .bits([true])) == nil, "bits for a register table")
    }

    /// Over random non-overlapping maps: every resource is read exactly once, whole, by a
    /// request of its own table within the limits, and requests of a table do not overlap.
    @Test func planProperty() {
        var rng = SeededGenerator(state: 125)
        let types: [ModbusDataType] = [.u16, .i32, .f64, .string(registers: 10), .bitfield]
        for _ in 0..<300 {
            var resources: [ModbusResource] = []
            var next = [ModbusTable: Int]()
            for index in 0..<Int.random(in: 0...60, using: &rng) {
                let table = ModbusTable.allCases.randomElement(using: &rng)!
                let type = table.holdsBits ? .bool : types.randomElement(using: &rng)!
                let address = next[table, default: 0] + Int.random(in: 0...20, using: &rng)
                guard address + type.width <= 65536 else { continue }
                next[table] = address + type.width
                resources.append(ModbusResource(name: "r\(index)", table: table, address: address, type: type))
            }
            let maxRegisters = Int.random(in: 10...125, using: &rng)
            let maxBits = Int.random(in: 1...2000, using: &rng)
            let plan = readPlan(resources: resources, maxRegisters: maxRegisters, maxBits: maxBits)
            #expect(plan.flatMap(\.resources).map(\.name).sorted() == resources.map(\.name).sorted())
            for request in plan {
                #expect(request.count <= (request.table.holdsBits ? maxBits : maxRegisters))
                for resource in request.resources {
                    #expect(resource.table == request.table)
                    #expect(request.addresses.contains(resource.address) && request.addresses.contains(resource.addresses.upperBound))
                }
            }
            for table in ModbusTable.allCases {
                let ranges = plan.filter { $0.table == table }.map(\.addresses)
                for (first, second) in zip(ranges, ranges.dropFirst()) {
                    #expect(first.upperBound < second.lowerBound)
                }
            }
        }
    }
}
