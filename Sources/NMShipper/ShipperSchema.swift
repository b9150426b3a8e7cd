import Logging
import NMBridgeCore
import PostgresNIO

/// The department-wide tables in PostgreSQL (schema `nmbridge`), created and migrated by
/// the shipper. `nmbridge.schema_version` has one row per applied migration.
///
/// Several shippers may start at once against an empty server: migrations run in one
/// transaction under an advisory lock, so exactly one of them applies each step.
public enum ShipperSchema {
    /// The version this build creates and reads.
    public static let currentVersion = 1
    /// `pg_advisory_xact_lock` key for migrations ("NMBS").
    static let migrationLock: Int64 = 0x4E4D_4253
    /// The channel the shipper NOTIFYs (payload: the node) in each batch's transaction.
    public static let notifyChannel = "nmbridge_events"

    /// Migration N brings the schema from version N-1 to N.
    static let migrations: [(version: Int, description: String, statements: [String])] = [
        (
            1, "events, cursors",
            [
                """
                CREATE TABLE nmbridge.events (
                    node       text        NOT NULL,
                    journal    uuid        NOT NULL,
                    seq        bigint      NOT NULL,
                    time       timestamptz NOT NULL,
                    device     text,
                    driver     text,
                    kind       text        NOT NULL,
                    severity   text        NOT NULL,
                    data       jsonb       NOT NULL,
                    raw        text,
                    shipped_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (node, journal, seq)
                )
                """,
                "CREATE INDEX events_time ON nmbridge.events (time)",
                """
                CREATE TABLE nmbridge.cursors (
                    node       text        NOT NULL,
                    journal    uuid        NOT NULL,
                    last_seq   bigint      NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (node, journal)
                )
                """,
            ]
        )
    ]

    /// Creates or migrates the schema; returns the version found before. Throws, naming the
    /// server, when the server's schema is newer than this build understands.
    @discardableResult
    public static func migrate(_ connection: PostgresConnection, server: String, logger: Logger) async throws -> Int {
        do {
            try connection.ensureOpen(server)
            return try await connection.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
                try await connection.query("CREATE SCHEMA IF NOT EXISTS nmbridge", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS nmbridge.schema_version (
                        version     integer     PRIMARY KEY,
                        description text        NOT NULL,
                        applied_at  timestamptz NOT NULL DEFAULT now()
                    )
                    """, logger: logger)
                var found = 0
                for try await version in try await connection.query(
                    "SELECT coalesce(max(version), 0)::bigint FROM nmbridge.schema_version", logger: logger
                ).decode(Int64.self) {
                    found = Int(version)
                }
                if found > currentVersion {
                    throw NMBridgeError(
                        .invalidConfiguration,
                        "\(server) has nmbridge schema version \(found); this nmbridge knows versions up to \(currentVersion) — upgrade nmbridge on this node")
                }
                for migration in migrations where migration.version > found {
                    for statement in migration.statements {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query(
                        "INSERT INTO nmbridge.schema_version (version, description) VALUES (\(migration.version), \(migration.description))",
                        logger: logger)
                    logger.notice("created nmbridge schema in PostgreSQL", metadata: ["postgres.server": "\(server)", "schema.version": "\(migration.version)"])
                }
                return found
            }
        } catch let error as NMBridgeError {
            throw error
        } catch let error as PostgresTransactionError {
            let cause = error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError
            if let nmb = cause as? NMBridgeError { throw nmb }
            throw PostgresFailure("cannot create or migrate the nmbridge schema on \(server)", cause ?? error)
        } catch {
            throw PostgresFailure("cannot create or migrate the nmbridge schema on \(server)", error)
        }
    }
}
