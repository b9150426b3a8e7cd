import NMShipper
import Testing

@Suite struct PostgresURLTests {
    @Test func parsesTCPAndSocketURLs() throws {
        let tcp = try PostgresURL("postgres://nmb@db.example:6543/department")
        #expect(tcp.user == "nmb" && tcp.host == "db.example" && tcp.port == 6543 && tcp.database == "department")
        #expect(tcp.password == nil && tcp.socketPath == nil)
        let withPassword = try PostgresURL("postgresql://nmb:p%40ss@[::1]/db")
        #expect(withPassword.password == "p@ss" && withPassword.host == "::1" && withPassword.port == 5432)
        #expect(!withPassword.description.contains("p@ss"), "description never shows the password")
        let socket = try PostgresURL("postgres://nmb@/db?host=/run/postgresql")
        #expect(socket.socketPath == "/run/postgresql/.s.PGSQL.5432" && socket.host == nil)
    }

    @Test(arguments: [
        ("mysql://u@h/db", "postgres://"), ("postgres://u@h", "no database"), ("postgres://h/db", "no user"),
        ("postgres://u@h:99999/db", "bad port"), ("postgres://u@/db", "no host"), ("postgres://u@h/db?sslmode=x", "unknown parameter"),
        ("postgres://u@h/db?host=relative", "absolute"),
    ])
    func rejectsMalformedURLs(text: String, expected: String) {
        let error = #expect(throws: PostgresURLError.self) { try PostgresURL(text) }
        #expect(error?.message.contains(expected) == true, "\(text): \(error?.message ?? "")")
    }
}
