import Foundation
import Testing
import TestSupport

@testable import NMTOML
import NMBridgeCore

// `Testing` has its own `SourceLocation`, so the parser's is always spelled in full here.
private typealias TOMLLocation = NMTOML.SourceLocation

private func at(_ line: Int, _ column: Int) -> TOMLLocation {
    TOMLLocation(line: line, column: column)
}

/// The errors `text` produces; empty when it parses.
/// The document gives exactly one error, on the expected line, saying the expected thing.
private func expectSingleError(_ example: TOMLErrorTests.Case, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    let found = errors(example.text)
    #expect(found.count == 1, "\(found)", sourceLocation: sourceLocation)
    #expect(found.first?.location.line == example.line, "\(found)", sourceLocation: sourceLocation)
    #expect(found.first?.message.contains(example.fragment) == true, "\(found)", sourceLocation: sourceLocation)
}

private func errors(_ text: String) -> [TOMLSyntaxError] {
    do {
        _ = try TOMLParser.parse(text)
        return []
    } catch {
        return error.errors
    }
}

/// The value of `key` in a one-line document `key = <literal>`.
private func value(_ literal: String) throws -> TOMLNode {
    let table = try TOMLParser.parse("v = \(literal)\n")
    return try #require(table["v"])
}

private let sampleConfig = """
    [daemon]
    node = "spect-ws-01"
    [journal]
    sync = "full"
    retention_days = 365
    [[device]]
    id = "dosecal-hotlab"
    driver = "capintec-crc15r"
    serial = { baud = 4800, data_bits = 8, parity = "none", stop_bits = 1 }
    poll_ms = 1000
    [[device]]
    id = "gantry-1"
    modbus = { tcp = "192.0.2.20:502", unit = 1 }

    """

@Suite("TOML parser: values")
struct TOMLValueTests {
    @Test func basicStringEscapes() throws {
        let node = try value(#""tab\there \"q\" back\\slash \u00E9 \U0001F600 \b\f\n\r""#)
        #expect(node.string == "tab\there \"q\" back\\slash é 😀 \u{8}\u{C}\n\r")
    }

    @Test func literalStringsKeepBackslashes() throws {
        #expect(try value(#"'C:\Users\nmbridge\'"#).string == #"C:\Users\nmbridge\"#)
        #expect(try value(#"'<\i\c*\s*>'"#).string == #"<\i\c*\s*>"#)
        #expect(try value(#""""#).string == "")
        #expect(try value("''").string == "")
    }

    @Test func multilineBasicStrings() throws {
        let table = try TOMLParser.parse(#"""
            roses = """
            Roses are red
            Violets are blue"""
            fox = """\
                The quick \
                brown \   
                fox.\
                """
            quotes = """Here are two quotation marks: "". Simple enough."""
            edge = """"This," she said, "is just a pointless statement.""""
            escaped = """tab\tand \u00E9"""
            """#)
        #expect(table["roses"]?.string == "Roses are red\nViolets are blue")
        #expect(table["fox"]?.string == "The quick brown fox.")
        #expect(table["quotes"]?.string == #"Here are two quotation marks: "". Simple enough."#)
        #expect(table["edge"]?.string == #""This," she said, "is just a pointless statement.""#)
        #expect(table["escaped"]?.string == "tab\tand é")
    }

    @Test func multilineLiteralStrings() throws {
        let table = try TOMLParser.parse(#"""
            regex = '''I [dw]on't need \d{2} apples'''
            lines = '''
            The first newline is
            trimmed in raw strings.
               All other whitespace
               is preserved.
            '''
            quotes = '''Here are fifteen quotation marks: """""""""""""""'''
            apostrophes = ''''That,' she said, 'is still pointless.''''
            """#)
        #expect(table["regex"]?.string == #"I [dw]on't need \d{2} apples"#)
        #expect(table["lines"]?.string == "The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n")
        #expect(table["quotes"]?.string == "Here are fifteen quotation marks: " + String(repeating: "\"", count: 15))
        #expect(table["apostrophes"]?.string == "'That,' she said, 'is still pointless.'")
    }

    @Test func multilineStringsNormalizeCRLF() throws {
        let table = try TOMLParser.parse("a = \"\"\"\r\none\r\ntwo\"\"\"\r\nb = '''x\r\ny'''\r\n")
        #expect(table["a"]?.string == "one\ntwo")
        #expect(table["b"]?.string == "x\ny")
        #expect(table["b"]?.location == at(4, 1))
    }

    @Test(arguments: [
        ("+99", Int64(99)), ("42", 42), ("0", 0), ("-17", -17), ("+0", 0), ("-0", 0),
        ("1_000", 1000), ("5_349_221", 5_349_221), ("1_2_3_4_5", 12345),
        ("0xDEADBEEF", 0xDEAD_BEEF), ("0xdeadbeef", 0xDEAD_BEEF), ("0xdead_beef", 0xDEAD_BEEF),
        ("0x00ff", 255), ("0o01234567", 0o1234567), ("0o755", 493), ("0b11010110", 214), ("0b1101_0110", 214),
        ("9223372036854775807", Int64.max), ("-9223372036854775808", Int64.min),
        ("0x7FFFFFFFFFFFFFFF", Int64.max),
    ])
    func integers(literal: String, expected: Int64) throws {
        let node = try value(literal)
        #expect(node.int == expected)
        #expect(node.typeName == "integer")
    }

    @Test(arguments: [
        ("+1.0", 1.0), ("3.1415", 3.1415), ("-0.01", -0.01), ("5e+22", 5e22), ("1e06", 1e6),
        ("-2E-2", -0.02), ("6.626e-34", 6.626e-34), ("224_617.445_991_228", 224_617.445_991_228),
        ("0.0", 0.0), ("0e0", 0.0), ("1e1_0", 1e10), ("inf", Double.infinity), ("+inf", Double.infinity),
        ("-inf", -Double.infinity),
    ])
    func floats(literal: String, expected: Double) throws {
        let node = try value(literal)
        #expect(node.value == .float(expected))
        #expect(node.typeName == "float")
    }

    @Test func notANumberAndNegativeZero() throws {
        for literal in ["nan", "+nan", "-nan"] {
            let number = try #require(try value(literal).double)
            #expect(number.isNaN, "\(literal)")
        }
        #expect(try value("-nan").double?.sign == .minus)
        #expect(try value("-0.0").double?.sign == .minus)
    }

    @Test func booleans() throws {
        #expect(try value("true").bool == true)
        #expect(try value("false").bool == false)
        #expect(try value("true").typeName == "boolean")
    }

    @Test func offsetDateTimes() throws {
        let table = try TOMLParser.parse("""
            utc = 1979-05-27T07:32:00Z
            offset = 1979-05-27T00:32:00-07:00
            spaced = 1979-05-27 07:32:00Z
            lower = 1979-05-27t07:32:00z
            """)
        let moment = Date(timeIntervalSince1970: 296_638_320)
        for key in ["utc", "offset", "spaced", "lower"] {
            let stamp = try #require(table[key]?.dateTime, "\(key)")
            #expect(stamp.kind == .offsetDateTime, "\(key)")
            #expect(stamp.date == moment, "\(key)")
        }
        let offset = try #require(table["offset"]?.dateTime)
        #expect(offset.utcOffsetSeconds == -7 * 3600)
        #expect(offset.hour == 0 && offset.minute == 32 && offset.second == 0)
        #expect(table["spaced"]?.dateTime?.text == "1979-05-27 07:32:00Z")
        #expect(table["utc"]?.typeName == "date-time")
    }

    @Test func offsetDateTimeKeepsFractionalSeconds() throws {
        let stamp = try #require(try value("1979-05-27T00:32:00.999999-07:00").dateTime)
        #expect(stamp.nanosecond == 999_999_000)
        let date = try #require(stamp.date)
        #expect(abs(date.timeIntervalSince1970 - 296_638_320.999_999) < 1e-6)
        #expect(date > Date(timeIntervalSince1970: 296_638_320.99))

        let millis = try #require(try value("2024-02-29T23:59:59.5+01:30").dateTime)
        #expect(millis.nanosecond == 500_000_000)
        let expected = try #require(
            Calendar(identifier: .gregorian).date(from: DateComponents(
                timeZone: TimeZone(secondsFromGMT: 5400), year: 2024, month: 2, day: 29,
                hour: 23, minute: 59, second: 59
            ))
        )
        #expect(millis.date == expected.addingTimeInterval(0.5))
    }

    @Test func datesAgreeWithFoundationCalendar() throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try #require(TimeZone(identifier: "UTC"))
        // After the 1582 Gregorian reform, where Foundation's calendar is proleptic too.
        for (year, month, day) in [(1600, 2, 29), (1900, 3, 1), (1969, 12, 31), (2000, 2, 29), (2100, 12, 31), (9999, 12, 31)] {
            func padded(_ number: Int, _ width: Int) -> String {
                String(repeating: "0", count: max(0, width - String(number).count)) + String(number)
            }
            let text = "\(padded(year, 4))-\(padded(month, 2))-\(padded(day, 2))T12:34:56Z"
            let stamp = try #require(try value(text).dateTime)
            let expected = calendar.date(from: DateComponents(year: year, month: month, day: day, hour: 12, minute: 34, second: 56))
            #expect(stamp.date == expected, "\(text)")
        }
        #expect(try value("0001-01-01T00:00:00Z").dateTime?.date?.timeIntervalSince1970 == -62_135_596_800)
    }

    @Test func localDateTimeDateAndTime() throws {
        let table = try TOMLParser.parse("""
            ldt = 1979-05-27T07:32:00
            ldtf = 1979-05-27 00:32:00.999999
            ld = 1979-05-27 # a date, then a comment
            lt = 07:32:00
            ltf = 00:32:00.123456789123
            """)
        let ldt = try #require(table["ldt"]?.dateTime)
        #expect(ldt.kind == .localDateTime)
        #expect(ldt.date == nil && ldt.utcOffsetSeconds == nil)
        #expect([ldt.year, ldt.month, ldt.day, ldt.hour, ldt.minute, ldt.second] == [1979, 5, 27, 7, 32, 0])
        #expect(table["ldtf"]?.dateTime?.nanosecond == 999_999_000)
        #expect(table["ldtf"]?.dateTime?.kind == .localDateTime)

        let ld = try #require(table["ld"]?.dateTime)
        #expect(ld.kind == .localDate)
        #expect(ld.text == "1979-05-27")
        #expect(ld.hour == nil && ld.date == nil)

        let lt = try #require(table["lt"]?.dateTime)
        #expect(lt.kind == .localTime)
        #expect(lt.year == nil && lt.hour == 7 && lt.minute == 32)
        #expect(table["ltf"]?.dateTime?.nanosecond == 123_456_789)
    }

    @Test func arrays() throws {
        let table = try TOMLParser.parse("""
            empty = []
            mixed = [ 1, 2.5, "three", true, 1979-05-27, [4], { five = 5 } ]
            ports = [  # comment after the bracket
              8080,
              # a comment line
              8081,   # trailing comment
            ]
            nested = [ [ 1, 2 ], ["a", 'b'] ]
            """)
        #expect(table["empty"]?.array?.isEmpty == true)
        let mixed = try #require(table["mixed"]?.array)
        #expect(mixed.map(\.typeName) == ["integer", "float", "string", "boolean", "date-time", "array", "table"])
        #expect(mixed[6].table?["five"]?.int == 5)
        #expect(mixed.map(\.location.column) == [11, 14, 19, 28, 34, 46, 51])
        let ports = try #require(table["ports"]?.array)
        #expect(ports.map(\.int) == [8080, 8081])
        #expect(ports.map(\.location) == [at(4, 3), at(6, 3)])
        #expect(table["nested"]?.array?[1].array?.map(\.string) == ["a", "b"])
        #expect(table["nested"]?.typeName == "array")
    }

    @Test func inlineTables() throws {
        let table = try TOMLParser.parse("""
            name = { first = "Tom", last = "Preston-Werner" }
            point = {x=1,y=2}
            empty = {}
            nested = { a.b = 1, a.c = { d = true } }
            """)
        let name = try #require(table["name"]?.table)
        #expect(name.keys == ["first", "last"])
        #expect(name.location == at(1, 8))
        #expect(name["last"]?.location == at(1, 25))
        #expect(table["point"]?.table?["y"]?.int == 2)
        #expect(table["empty"]?.table?.entries.isEmpty == true)
        let nested = try #require(table["nested"]?.table?["a"]?.table)
        #expect(nested["b"]?.int == 1)
        #expect(nested["c"]?.table?["d"]?.bool == true)
        #expect(table["nested"]?.typeName == "table")
    }

    @Test func typedAccessorsRefuseOtherTypes() throws {
        let integer = try value("5")
        #expect(integer.double == 5.0)
        #expect(integer.string == nil && integer.bool == nil && integer.table == nil && integer.array == nil)
        let text = try value("\"5\"")
        #expect(text.int == nil && text.double == nil && text.dateTime == nil)
        #expect(text.typeName == "string")
    }

    @Test func keysOfEveryForm() throws {
        let table = try TOMLParser.parse(#"""
            bare_key-1 = 1
            1234 = 2
            "127.0.0.1" = 3
            "ʎǝʞ" = 4
            'quoted "value"' = 5
            "" = 6
            3.14159 = "pi"
            "escaped\tkey" = 7
            """#)
        #expect(table.keys == ["bare_key-1", "1234", "127.0.0.1", "ʎǝʞ", "quoted \"value\"", "", "3", "escaped\tkey"])
        #expect(table["3"]?.table?["14159"]?.string == "pi")
        #expect(table[""]?.int == 6)
    }

    @Test func byteOrderMarkIsIgnored() throws {
        let table = try TOMLParser.parse("\u{FEFF}a = 1\n")
        #expect(table["a"]?.location == at(1, 1))
    }
}

@Suite("TOML parser: locations")
struct TOMLLocationTests {
    @Test func sampleConfigLocations() throws {
        let root = try TOMLParser.parse(sampleConfig)
        #expect(root.location == at(1, 1))
        #expect(root.keys == ["daemon", "journal", "device"])
        let daemon = try #require(root["daemon"])
        #expect(daemon.location == at(1, 2))
        #expect(daemon.table?.location == at(1, 1))
        #expect(daemon.table?["node"]?.location == at(2, 1))
        #expect(root["journal"]?.table?["retention_days"]?.location == at(5, 1))

        let devices = try #require(root["device"]?.array)
        #expect(devices.count == 2)
        #expect(root["device"]?.location == at(6, 3))
        #expect(devices.map(\.location.line) == [6, 11])
        let first = try #require(devices[0].table)
        #expect(first.location == at(6, 1))
        #expect(first["poll_ms"]?.int == 1000)
        #expect(first["poll_ms"]?.location.description == "line 10")
        let serial = try #require(first["serial"])
        #expect(serial.location == at(9, 1))
        #expect(serial.table?.location == at(9, 10))
        #expect(serial.table?["baud"]?.location == at(9, 12))
        #expect(serial.table?["stop_bits"]?.int == 1)
        let second = try #require(devices[1].table)
        #expect(second["id"]?.location == at(12, 1))
        #expect(second["modbus"]?.table?["unit"]?.location == at(13, 36))
        #expect(second["poll_ms"] == nil)
    }

    @Test func dottedKeysCreateNestedTablesAtTheirParts() throws {
        let root = try TOMLParser.parse("""
            title = "x"
            a.b."c d" = 1
            a.b.e = 2
              site . room = 'hot lab'
            """)
        let a = try #require(root["a"])
        #expect(a.location == at(2, 1))
        let b = try #require(a.table?["b"])
        #expect(b.location == at(2, 3))
        #expect(b.table?.location == at(2, 3))
        #expect(b.table?["c d"]?.location == at(2, 5))
        #expect(b.table?["c d"]?.int == 1)
        #expect(b.table?["e"]?.location == at(3, 5))
        #expect(root["site"]?.table?["room"]?.location == at(4, 10))
    }

    @Test func tableHeadersAndSuperTablesDefinedLater() throws {
        let root = try TOMLParser.parse("""
            # comment line
            [x.y.z.w]
            a = 1

            [x] # defining a super-table afterwards is fine
            b = 2
            [ x . "quoted part" ]
            c = 3
            """)
        let x = try #require(root["x"])
        #expect(x.location == at(5, 2))
        #expect(x.table?.location == at(5, 1))
        #expect(x.table?.keys == ["y", "b", "quoted part"])
        let y = try #require(x.table?["y"])
        #expect(y.location == at(2, 4))
        #expect(y.table?.location == at(2, 1))
        #expect(y.table?["z"]?.table?["w"]?.table?["a"]?.location == at(3, 1))
        #expect(x.table?["quoted part"]?.table?["c"]?.location == at(8, 1))
    }

    @Test func nestedArraysOfTables() throws {
        let root = try TOMLParser.parse("""
            [[fruits]]
            name = "apple"

            [fruits.physical]
            color = "red"

            [[fruits.varieties]]
            name = "red delicious"

            [[fruits.varieties]]
            name = "granny smith"

            [[fruits]]
            name = "banana"

            [[fruits.varieties]]
            name = "plantain"
            """)
        let fruits = try #require(root["fruits"]?.array)
        #expect(fruits.map(\.location.line) == [1, 13])
        #expect(fruits.map { $0.table?["name"]?.string } == ["apple", "banana"])
        let apple = try #require(fruits[0].table)
        #expect(apple["physical"]?.table?["color"]?.location == at(5, 1))
        let varieties = try #require(apple["varieties"]?.array)
        #expect(varieties.map { $0.table?["name"]?.location.line } == [8, 11])
        #expect(apple["varieties"]?.location == at(7, 10))
        #expect(fruits[1].table?["varieties"]?.array?.first?.table?["name"]?.string == "plantain")
    }

    @Test func crlfLineEndingsCountAsOneLine() throws {
        let root = try TOMLParser.parse("a = 1\r\n# comment\r\n[t]\r\nb = [\r\n  1,\r\n]\r\n")
        #expect(root["t"]?.table?["b"]?.location == at(4, 1))
        #expect(root["t"]?.table?["b"]?.array?.first?.location == at(5, 3))
    }

    @Test func columnsCountUnicodeScalars() throws {
        let found = errors("k = \"é\" x\n")
        #expect(found.map(\.location) == [at(1, 9)])
    }
}

@Suite("TOML parser: errors")
struct TOMLErrorTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var text: String
        var line: Int
        var fragment: String
        var testDescription: String { fragment }
    }

    @Test(arguments: [
        // Syntax
        Case(text: "a = 1\npoll_ms 1000\n", line: 2, fragment: "expected '=' after key \"poll_ms\", found '1'"),
        Case(text: "a = 1\nb =\n", line: 2, fragment: "missing value for key \"b\""),
        Case(text: "a = 1\nnode = spect-ws-01\n", line: 2, fragment: "found spect-ws-01 (strings must be in quotes)"),
        Case(text: "a = 1\nflag = True\n", line: 2, fragment: "lowercase"),
        Case(text: "a = 1\nb = 1 2\n", line: 2, fragment: "expected the end of the line after the value of key \"b\", found '2'"),
        Case(text: "[a]\n[b\nc = 1\n", line: 2, fragment: "expected ']' after table name \"b\""),
        Case(text: "[[a]\n", line: 1, fragment: "expected ']]'"),
        Case(text: "[]\n", line: 1, fragment: "expected a table name after '['"),
        Case(text: "a = 1\n= 2\n", line: 2, fragment: "missing key before '='"),
        Case(text: "a.= 1\n", line: 1, fragment: "expected a key after 'a.'"),
        Case(text: "é = 1\n", line: 1, fragment: "must be quoted"),
        Case(text: "\"\"\"k\"\"\" = 1\n", line: 1, fragment: "multi-line string cannot be used as a key"),
        // Strings
        Case(text: "a = 1\ns = \"bad \\q escape\"\n", line: 2, fragment: "invalid escape sequence \\q for key \"s\""),
        Case(text: "s = \"\\uD800\"\n", line: 1, fragment: "\\uD800"),
        Case(text: "s = \"\\U00110000\"\n", line: 1, fragment: "not a Unicode scalar value"),
        Case(text: "s = \"\\u12\"\n", line: 1, fragment: "4 hexadecimal digits"),
        Case(text: "s = \"\\e\"\n", line: 1, fragment: "invalid escape sequence \\e"),
        Case(text: "s = \"\"\"\nfine\n\\x\n\"\"\"\n", line: 3, fragment: "invalid escape sequence \\x"),
        Case(text: "a = 1\ns = \"open\nb = 2\n", line: 2, fragment: "unterminated string for key \"s\""),
        Case(text: "a = 1\ns = 'open\n", line: 2, fragment: "unterminated literal string"),
        Case(text: "a = 1\ns = \"\"\"\nnever closed\nb = 2\n", line: 2, fragment: "unterminated multi-line string for key \"s\""),
        Case(text: "a = 1\ns = '''\nnever closed\n", line: 2, fragment: "unterminated multi-line literal string"),
        Case(text: "s = \"a\u{1}b\"\n", line: 1, fragment: "control character U+0001 must be escaped"),
        Case(text: "s = 'a\u{7F}b'\n", line: 1, fragment: "control character U+007F"),
        Case(text: "s = \"\"\"\nline\u{0}\n\"\"\"\n", line: 2, fragment: "control character U+0000"),
        Case(text: "a = 1\n# comment \u{1B} escape\n", line: 2, fragment: "not allowed in a comment"),
        Case(text: "a = 1\rb = 2\n", line: 1, fragment: "carriage return"),
        Case(text: "a = 1\n# comment\r\n# bare\rcr\n", line: 3, fragment: "carriage return"),
        // Numbers and date-times
        Case(text: "a = 1\nn = 9223372036854775808\n", line: 2, fragment: "out of range for a 64-bit integer"),
        Case(text: "n = -9223372036854775809\n", line: 1, fragment: "out of range"),
        Case(text: "n = 0x8000000000000000\n", line: 1, fragment: "out of range"),
        Case(text: "n = 1e400\n", line: 1, fragment: "out of range for a 64-bit float"),
        Case(text: "n = 01\n", line: 1, fragment: "leading zeros"),
        Case(text: "n = 1__0\n", line: 1, fragment: "between two digits"),
        Case(text: "n = 1_\n", line: 1, fragment: "between two digits"),
        Case(text: "n = +0x10\n", line: 1, fragment: "cannot have a sign"),
        Case(text: "n = 0b102\n", line: 1, fragment: "'2' is not a binary digit"),
        Case(text: "n = 0o\n", line: 1, fragment: "expected octal digits"),
        Case(text: "n = 1.\n", line: 1, fragment: "digits after the decimal point"),
        Case(text: "n = .5\n", line: 1, fragment: "expected a value for key \"n\""),
        Case(text: "n = 1e\n", line: 1, fragment: "digits in the exponent"),
        Case(text: "n = 12ab\n", line: 1, fragment: "invalid number 12ab for key \"n\""),
        Case(text: "d = 2023-02-29\n", line: 1, fragment: "day 29 does not exist in February 2023"),
        Case(text: "d = 1979-13-01\n", line: 1, fragment: "month 13"),
        Case(text: "d = 07:32\n", line: 1, fragment: "seconds are required"),
        Case(text: "d = 1979-05-27T25:00:00Z\n", line: 1, fragment: "hour must be 00–23"),
        Case(text: "d = 1979-05-27T07:32:00+24:00\n", line: 1, fragment: "UTC offset"),
        Case(text: "d = 1979-05-27T07:32:00Zjunk\n", line: 1, fragment: "after the UTC offset"),
        // Arrays and inline tables
        Case(text: "a = [1 2]\n", line: 1, fragment: "expected ',' or ']'"),
        Case(text: "a = [1,\n  2\n", line: 1, fragment: "never closed with ']'"),
        Case(text: "a = [,]\n", line: 1, fragment: "expected a value for key \"a\", found ','"),
        Case(text: "t = { a = 1, }\n", line: 1, fragment: "trailing comma"),
        Case(text: "t = { a = 1\n}\n", line: 1, fragment: "on the same line"),
        Case(text: "t = { a = 1 b = 2 }\n", line: 1, fragment: "expected ',' or '}'"),
        Case(text: "serial = { baud = x }\n", line: 1, fragment: "key \"serial.baud\""),
        Case(text: "t = { a = 1, a = 2 }\n", line: 1, fragment: "duplicate key \"t.a\""),
    ])
    func reportsError(_ example: Case) {
        expectSingleError(example)
    }

    @Test(arguments: [
        Case(text: "a = 1\nb = 2\na = 3\n", line: 3, fragment: "duplicate key \"a\" (first defined on line 1)"),
        Case(text: "[t]\nx = 1\n[u]\n[t]\n", line: 4, fragment: "table [t] is already defined on line 1"),
        Case(text: "[d]\npoll_ms = 1\npoll_ms = 2\n", line: 3, fragment: "duplicate key \"d.poll_ms\""),
        Case(text: "a = [1]\n[[a]]\n", line: 2, fragment: "cannot append to \"a\" with [[a]]: it is a static array defined on line 1"),
        Case(text: "serial = { baud = 1 }\nserial.parity = \"none\"\n", line: 2, fragment: "inline table defined on line 1"),
        Case(text: "serial = { baud = 1 }\n[serial]\n", line: 2, fragment: "inline table"),
        Case(text: "serial = { baud = 1 }\n[serial.extra]\n", line: 2, fragment: "inline tables cannot be extended"),
        Case(text: "[a.b.c]\nz = 9\n[a]\nb.c.t = 1\n", line: 4, fragment: "defined by its header on line 1"),
        Case(text: "[fruit]\napple.color = \"red\"\n[fruit.apple]\n", line: 3, fragment: "already defined by dotted keys on line 2"),
        Case(text: "[[a]]\n[a]\n", line: 2, fragment: "already an array of tables"),
        Case(text: "[a]\n[[a]]\n", line: 2, fragment: "already a table"),
        Case(text: "a = 1\n[a]\n", line: 2, fragment: "an integer defined on line 1"),
        Case(text: "a = 1\na.b = 2\n", line: 2, fragment: "an integer defined on line 1"),
        Case(text: "[[a.b]]\n[a]\nb.y = 2\n", line: 3, fragment: "is an array of tables"),
        Case(text: "[a.b.c]\n[a]\nb.d = 1\n[a.b]\n", line: 4, fragment: "already defined by dotted keys"),
    ])
    func reportsRedefinition(_ example: Case) {
        expectSingleError(example)
    }

    @Test func allowedTableExtensions() throws {
        let root = try TOMLParser.parse("""
            [fruit]
            apple.color = "red"
            apple.taste.sweet = true
            [fruit.apple.texture]
            smooth = true
            [a.b.c]
            [a]
            b.d = 1
            """)
        #expect(root["fruit"]?.table?["apple"]?.table?.keys == ["color", "taste", "texture"])
        #expect(root["a"]?.table?["b"]?.table?.keys == ["c", "d"])
    }

    @Test func descriptionNamesLineColumnAndKey() {
        let found = errors("[daemon]\nnode = \"x\"\npoll_ms\n")
        #expect(found.map(\.description) == [#"line 3, column 8: expected '=' after key "poll_ms""#])
        #expect(TOMLParseFailure(errors: found).description == found[0].description)
    }

    @Test func reportsSeveralErrorsInLineOrder() {
        let found = errors("""
            [daemon]
            node = "spect-ws-01
            [journal]
            sync = full
            retention_days = 365 days
            a = 1
            a = 2
            [[device]]
            id = "ok"
            """)
        #expect(found.map(\.location.line) == [2, 4, 5, 7])
        #expect(found[0].message.contains("\"node\""))
        #expect(found[1].message.contains("\"sync\""))
        #expect(found[2].message.contains("\"retention_days\""))
        #expect(found[3].message.contains("duplicate key \"journal.a\""))
    }

    @Test func recoveryDoesNotRepeatErrorsForOneBrokenMultilineArray() {
        let found = errors("""
            ports = [
              1,
              2 3,
              4,
            ]
            name = oops
            """)
        #expect(found.map(\.location.line) == [3, 6])
    }

    @Test func unclosedArrayResumesAtTheNextHeader() {
        let found = errors("""
            ports = [1, 2
            [next]
            x = 1
            x = 2
            """)
        #expect(found.map(\.location.line) == [1, 4])
        #expect(found.first?.message.contains("not closed: expected ']' before line 2") == true)
        #expect(found.last?.message.contains("duplicate key \"next.x\"") == true)
    }

    @Test func keysUnderABrokenHeaderDoNotLeakIntoTheTableBefore() {
        let found = errors("""
            [a]
            x = 1
            [a]
            x = 2
            """)
        #expect(found.map(\.location.line) == [3])
    }

    @Test func stopsAfterFiftyErrors() {
        let text = String(repeating: "broken line\n", count: 80)
        let found = errors(text)
        #expect(found.count == TOMLParser.maximumErrorCount)
        #expect(found.map(\.location.line) == Array(1...50))
    }

    @Test func nestingDepthIsLimited() throws {
        let limit = TOMLParser.maximumNestingDepth
        let deepest = try TOMLParser.parse("a = " + String(repeating: "[", count: limit) + String(repeating: "]", count: limit))
        #expect(deepest["a"]?.array?.count == 1)

        let arrays = errors("a = " + String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1))
        #expect(arrays.count == 1)
        #expect(arrays.first?.message.contains("more than 64 levels deep") == true)

        let tables = errors("a = " + String(repeating: "{b=", count: limit + 1) + "1" + String(repeating: "}", count: limit + 1))
        #expect(tables.count == 1)

        let hostile = errors("a = " + String(repeating: "[{x=", count: 200_000) + "\nb = 1 2\n")
        #expect(hostile.map(\.location.line) == [1, 2])

        let header = (0..<limit).map { "k\($0)" }.joined(separator: ".")
        #expect(try TOMLParser.parse("[\(header)]\nv = 1\n")["k0"] != nil)
        #expect(errors("[\(header).one_more]\n").first?.message.contains("nested more than 64 levels deep") == true)
        // A dotted key of n parts creates n - 1 tables: 65 parts still fit, 66 do not.
        #expect(try TOMLParser.parse("\(header).leaf = 1\n")["k0"] != nil)
        #expect(errors("\(header).one_more.leaf = 1\n").count == 1)
        #expect(errors(String(repeating: "k.", count: 100_000) + "k = 1\n").count == 1)
    }

    @Test func documentSizeIsLimited() throws {
        let limit = TOMLParser.maximumDocumentBytes
        let largest = "#" + String(repeating: "x", count: limit - 2) + "\n"
        #expect(try TOMLParser.parse(largest).entries.isEmpty)
        let tooLarge = errors(largest + "a")
        #expect(tooLarge.count == 1)
        #expect(tooLarge.first?.location == at(1, 1))
        #expect(tooLarge.first?.message.contains("4 MiB") == true)
    }
}

@Suite("TOML parser: robustness")
struct TOMLRobustnessTests {

    /// Characters that mean something to TOML, so random text reaches deep into the parser.
    static let alphabet: [Unicode.Scalar] = Array(#"[]{}="'#.,:+-_\ \#t0123456789abefinotruxzETZ"#.unicodeScalars)
        + ["\n", "\r", "\u{0}", "\u{1}", "\u{7F}", "é", "😀", "\u{FEFF}"]

    /// Checks what must hold for any input: it parses, or it fails with 1...50 errors in
    /// order at plausible positions. Returns a description of what went wrong, if anything.
    static func violation(for text: String) -> String? {
        do {
            _ = try TOMLParser.parse(text)
            return nil
        } catch {
            let found = error.errors
            let lineCount = text.utf8.filter { $0 == 0x0A }.count + 1
            if found.isEmpty || found.count > TOMLParser.maximumErrorCount { return "\(found.count) errors" }
            let positions = found.map { ($0.location.line, $0.location.column) }
            if zip(positions, positions.dropFirst()).contains(where: { $0 > $1 }) { return "errors out of order" }
            if found.contains(where: { $0.location.line < 1 || $0.location.line > lineCount || $0.location.column < 1 }) {
                return "error outside the document: \(found)"
            }
            if found.contains(where: { $0.message.isEmpty }) { return "empty message" }
            return nil
        }
    }

    @Test func randomBytesNeverCrash() {
        var generator = SeededGenerator(state: 0x5EED_0001)
        var failures: [String] = []
        for _ in 0..<5_000 {
            let length = Int.random(in: 0...160, using: &generator)
            var bytes: [UInt8] = []
            for _ in 0..<length {
                if Bool.random(using: &generator) {
                    bytes.append(UInt8.random(in: 0...255, using: &generator))
                } else {
                    let scalar = Self.alphabet.randomElement(using: &generator) ?? "a"
                    bytes.append(contentsOf: String(scalar).utf8)
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            if let problem = Self.violation(for: text) { failures.append("\(text.debugDescription): \(problem)") }
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    @Test func randomEditsOfARealConfigNeverCrash() throws {
        #expect(Self.violation(for: sampleConfig) == nil)
        _ = try TOMLParser.parse(sampleConfig)
        var generator = SeededGenerator(state: 0x5EED_0002)
        let original = Array(sampleConfig.unicodeScalars)
        var failures: [String] = []
        var parsedAfterEdit = 0
        for _ in 0..<5_000 {
            var scalars = original
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let index = Int.random(in: 0...scalars.count, using: &generator)
                let replacement = Self.alphabet.randomElement(using: &generator) ?? "a"
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: scalars.insert(replacement, at: index)
                case 1 where index < scalars.count: scalars.remove(at: index)
                default: if index < scalars.count { scalars[index] = replacement }
                }
            }
            var text = ""
            text.unicodeScalars.append(contentsOf: scalars)
            if let problem = Self.violation(for: text) { failures.append("\(text.debugDescription): \(problem)") }
            if (try? TOMLParser.parse(text)) != nil { parsedAfterEdit += 1 }
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        // Some edits (inside strings and comments) keep the document valid; most do not.
        #expect(parsedAfterEdit > 0 && parsedAfterEdit < 5_000)
    }
}
