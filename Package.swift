// swift-tools-version: 6.1
import PackageDescription

// Versions are the ones mirrored for this build environment (see README "Building").

// How the two programs are linked on Linux. Most of the daemon's idle memory is mapped code,
// not data (docs/performance.md, "Idle memory"), so they are linked with lld and packed
// relative relocations (DT_RELR, glibc >= 2.36), so that the loader reads a few kB of
// relocations instead of 3 MB, and without exporting every Swift symbol to the dynamic
// symbol table, which the loader would search for each symbol of each library. The
// Makefile also builds them with --static-swift-stdlib (runtime and Foundation linked in).
let programLinking: [LinkerSetting] = [
    .unsafeFlags(
        [
            "-use-ld=lld",
            "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
            "-Xlinker", "--no-export-dynamic",
        ],
        .when(platforms: [.linux])
    )
]
let package = Package(
    name: "nmbridge",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "nmbridged", targets: ["nmbridged"]),
        .executable(name: "nmbridge", targets: ["nmbridge"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // C libraries, each imported by exactly one Swift module: libudev and libusb by
        // NMTransport, libmodbus by the Modbus driver, zlib by the DICOM receiver.
        .systemLibrary(name: "CUdev", pkgConfig: "libudev", providers: [.apt(["libudev-dev"])]),
        .systemLibrary(name: "CUSB", pkgConfig: "libusb-1.0", providers: [.apt(["libusb-1.0-0-dev"])]),
        .systemLibrary(name: "CModbus", pkgConfig: "libmodbus", providers: [.apt(["libmodbus-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // TOML 1.0 parser with source locations, for configuration errors that name the line.
        .target(name: "NMTOML"),
        // Event model, units, driver contract, the core's configuration tables and the
        // section contract the subsystems' tables follow. No I/O, no C, no NIOPosix.
        .target(
            name: "NMBridgeCore",
            dependencies: [
                "NMTOML",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Durable event journal on SQLite (WAL) through GRDB.
        .target(
            name: "NMJournal",
            dependencies: [
                "NMBridgeCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // pty calls that need C feature macros (simulators, tests).
        .target(name: "CTerminal"),
        // The DICOM spool's C helpers: CRC-32C with the CPU's crc32 instruction, early writeback.
        .target(name: "CSpool"),
        // Device transports: serial ports (termios), USB identity and reset (libusb),
        // udev enumeration and hotplug monitor (libudev).
        .target(
            name: "NMTransport",
            dependencies: [
                "NMBridgeCore",
                "CTerminal",
                "CUdev",
                "CUSB",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Drivers: one folder per family under Drivers/.
        .target(
            name: "ScriptDriver",
            dependencies: ["NMBridgeCore"],
            path: "Drivers/Script"
        ),
        .target(
            name: "DoseCalibrator",
            dependencies: [
                "NMBridgeCore",
                "NMTransport",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Drivers/DoseCalibrator"
        ),
        // Modbus gantry: register-map profiles, the libmodbus bus owner, the driver, the simulator.
        .target(
            name: "ModbusGantry",
            dependencies: [
                "NMBridgeCore",
                "NMTransport",
                "CModbus",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Drivers/ModbusGantry",
            exclude: ["profiles"]
        ),
        // DICOM C-STORE receiver: upper layer, DIMSE, dataset reader, Part-10 storage (NIO).
        // A service beside the drivers, not a `Driver`: no `[[device]]`, not in the catalog.
        .target(
            name: "DicomStore",
            dependencies: [
                "NMBridgeCore",
                "CZlib",
                "CSpool",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
        ),
        // Derives qc.* events from the journal; the daily QC report.
        .target(
            name: "NMQualityControl",
            dependencies: [
                "NMBridgeCore",
                "NMTOML",
                "NMJournal",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Sends onward: the durable outbound DICOM queue (jobs journaled), routing, and an
        // RRDSR per reconciled administration; delivery through DicomStore's requester.
        .target(
            name: "NMForward",
            dependencies: [
                "NMBridgeCore",
                "NMJournal",
                "NMQualityControl",
                "DicomStore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Ships the local journal to a department-wide PostgreSQL table; follows that table.
        .target(
            name: "NMShipper",
            dependencies: [
                "NMBridgeCore",
                "NMJournal",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // What this build knows: its drivers (`DriverCatalog.standard`), every module's event
        // kinds (`EventKindRegistry.standard`) and configuration sections
        // (`ConfigurationSectionCatalog.standard`), for the daemon and for the CLI without
        // linking the daemon.
        .target(
            name: "NMCatalog",
            dependencies: [
                "NMBridgeCore", "ScriptDriver", "DoseCalibrator", "ModbusGantry", "DicomStore", "NMJournal", "NMShipper",
                "NMQualityControl", "NMForward",
            ]
        ),
        // Composition: services, supervisor, HTTP API, sd_notify.
        .target(
            name: "NMServer",
            dependencies: [
                "NMBridgeCore",
                "NMCatalog",
                "NMJournal",
                "NMShipper",
                "NMQualityControl",
                "NMForward",
                "ScriptDriver",
                "DoseCalibrator",
                "ModbusGantry",
                "DicomStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Client of the API (unix socket or TCP) on AsyncHTTPClient, with our own SSE parser;
        // used by the CLI and the benchmarks.
        .target(
            name: "NMClient",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "nmbridged",
            dependencies: [
                "NMServer",
                "NMCatalog",
                "NMBridgeCore",
                "DicomStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            linkerSettings: programLinking
        ),
        .executableTarget(
            name: "nmbridge",
            dependencies: [
                "NMBridgeCore",
                "NMClient",
                "NMCatalog",
                "NMShipper",
                "NMQualityControl",
                "DoseCalibrator",
                "ModbusGantry",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            linkerSettings: programLinking
        ),
        .executableTarget(
            name: "nmbridge-bench",
            dependencies: [
                "NMBridgeCore",
                "NMTransport",
                "NMJournal",
                "NMClient",
                "NMServer",
                "NMCatalog",
                "ModbusGantry",
                "NMShipper",
                "NMQualityControl",
                "NMForward",
                "DicomStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "bench/Sources/nmbridge-bench"
        ),
        // Helpers shared by the test targets: a seeded random generator for fuzz tests, a
        // recording driver sink, private PostgreSQL servers, and `runBoundToTest`, through
        // which every process a test starts is bound to the test process (TestProcess.swift).
        .target(name: "TestSupport", dependencies: ["NMBridgeCore"], path: "Tests/TestSupport"),
        // The configuration's tests load whole files through the standard catalog, so they
        // see the subsystems' sections too.
        .testTarget(
            name: "NMBridgeCoreTests",
            dependencies: ["NMBridgeCore", "NMTOML", "NMCatalog", "ScriptDriver", "DicomStore", "NMQualityControl", "NMShipper", "TestSupport"]
        ),
        .testTarget(name: "NMJournalTests", dependencies: ["NMJournal", "NMBridgeCore", "NMCatalog", "TestSupport", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(
            name: "NMServerTests",
            dependencies: [
                "NMServer", "NMCatalog", "NMClient", "NMJournal", "NMForward", "DicomStore", "NMBridgeCore", "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "NMClientTests", dependencies: ["NMClient", "TestSupport"]),
        .testTarget(name: "NMTransportTests", dependencies: ["NMTransport", "NMBridgeCore", "NMTOML", "TestSupport"]),
        .testTarget(
            name: "DoseCalibratorTests",
            dependencies: [
                "DoseCalibrator", "NMTransport", "NMBridgeCore", "NMTOML", "TestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "ModbusGantryTests",
            dependencies: ["ModbusGantry", "NMBridgeCore", "NMTransport", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "DicomStoreTests", dependencies: ["DicomStore", "NMBridgeCore", "TestSupport"]),
        .testTarget(
            name: "ShipperTests",
            dependencies: [
                "NMShipper", "NMServer", "NMCatalog", "NMJournal", "NMBridgeCore", "TestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "QualityControlTests",
            dependencies: ["NMQualityControl", "NMCatalog", "NMJournal", "NMBridgeCore", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "IntegrationTests", dependencies: ["NMBridgeCore", "NMClient", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
