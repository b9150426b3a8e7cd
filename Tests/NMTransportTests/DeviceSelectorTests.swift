#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NMBridgeCore
import NMTOML
import Testing

@testable import NMTransport

extension UdevTests {
    /// `[[device]]` keys → `DeviceSelector`, and matching, without udev.
    @Suite struct Selectors {
        /// Reads the selector of the first `[[device]]` table of `toml`.
        func read(_ toml: String) throws -> (DeviceSelector?, [ConfigProblem]) {
            let root = try TOMLParser.parse(toml)
            let reader = ConfigTableReader(root: root, file: "nmbridge.toml")
            let device = try #require(reader.tables("device") { _, _ in "device[dosecal-hotlab]" }.first)
            return (DeviceSelector.read(from: device), reader.problems)
        }

        @Test func eachFormIsRead() throws {
            let cases: [(String, DeviceSelector)] = [
                (#"path = "/dev/nmbridge/dosecal-hotlab""#, .path("/dev/nmbridge/dosecal-hotlab")),
                (#"usb_serial = "A50285BI""#, .usbSerial("A50285BI")),
                (
                    "usb_serial = \"A50285BI\"\nusb_vendor = \"0x0403\"\nusb_product = \"6001\"",
                    .usbSerial("A50285BI", vendorID: "0403", productID: "6001")
                ),
                (#"usb_serial = "A50285BI""# + "\n" + #"usb_vendor = "10C4""#, .usbSerial("A50285BI", vendorID: "10c4")),
                (
                    #"by_id = "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0""#,
                    .byID("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0")
                ),
                (
                    #"by_id = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0""#,
                    .byID("usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0")
                ),
                (#"bus_path = "pci-0000:00:14.0-usb-0:2:1.0""#, .busPath("pci-0000:00:14.0-usb-0:2:1.0")),
            ]
            for (keys, expected) in cases {
                let (selector, problems) = try read("[[device]]\nid = \"dosecal-hotlab\"\n" + keys)
                #expect(problems == [], "\(keys)")
                #expect(selector == expected, "\(keys)")
            }
        }

        @Test func chipIDAloneIsRejectedNamingTheKey() throws {
            for keys in [#"usb_vendor = "0403""#, "usb_vendor = \"0403\"\nusb_product = \"6001\"", #"usb_product = "6001""#] {
                let (selector, problems) = try read("[[device]]\nid = \"dosecal-hotlab\"\n" + keys)
                #expect(selector == nil)
                #expect(problems.count == 1, "\(problems)")
                let problem = try #require(problems.first)
                #expect(problem.key.hasPrefix("device[dosecal-hotlab].usb_"))
                #expect(problem.line == 3)
                #expect(problem.message.contains("shared by countless devices"), "\(problem)")
                #expect(problem.description.contains("nmbridge.toml:3: device[dosecal-hotlab].usb_"))
            }
        }

        @Test func everyOtherMistakeIsReportedWithItsKey() throws {
            let cases: [(keys: String, key: String, says: String)] = [
                ("", "device[dosecal-hotlab]", "exactly one of path, usb_serial, by_id or bus_path"),
                ("path = \"/dev/ttyS0\"\nusb_serial = \"A50285BI\"", "device[dosecal-hotlab].usb_serial", "path and usb_serial"),
                ("by_id = \"x\"\nusb_vendor = \"0403\"", "device[dosecal-hotlab].usb_vendor", "only narrows usb_serial"),
                ("usb_serial = \"A50285BI\"\nusb_vendor = \"FTDI\"", "device[dosecal-hotlab].usb_vendor", "four hex digits"),
                ("path = \"ttyUSB0\"", "device[dosecal-hotlab].path", "absolute path"),
                ("by_id = \"/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0\"", "device[dosecal-hotlab].by_id", "/dev/serial/by-id/"),
                ("usb_serial = \"\"", "device[dosecal-hotlab].usb_serial", "must not be empty"),
                ("usb_serial = 42", "device[dosecal-hotlab].usb_serial", "expected a string"),
            ]
            for (keys, key, says) in cases {
                let (selector, problems) = try read("[[device]]\nid = \"dosecal-hotlab\"\n" + keys)
                #expect(selector == nil, "\(keys)")
                #expect(problems.count == 1, "\(keys): \(problems)")
                #expect(problems.first?.key == key, "\(keys): \(problems)")
                #expect(problems.first?.message.contains(says) == true, "\(keys): \(problems)")
            }
        }

        @Test func matchingComparesOnlyWhatNamesOneAdapter() {
            let info = FakeSerialAdapter.listed.expectedInfo
            let other = FakeSerialAdapter.unlisted.expectedInfo
            let matching: [DeviceSelector] = [
                .usbSerial("A50285BI"), .usbSerial("A50285BI", vendorID: "0403", productID: "6001"),
                .usbSerial("A50285BI", vendorID: "0403"), .byID("usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"),
                .busPath("pci-0000:00:14.0-usb-0:2:1.0"), .path("/dev/ttyUSB0"), .path("/dev/nmbridge/dosecal-hotlab"),
                .path("/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0"),
            ]
            for selector in matching {
                #expect(selector.matches(info), "\(selector)")
                #expect(!selector.matches(other), "\(selector)")
            }
            // Serial numbers are compared exactly; ids narrow.
            #expect(!DeviceSelector.usbSerial("a50285bi").matches(info))
            #expect(!DeviceSelector.usbSerial("A50285BI", productID: "6015").matches(info))
            // A device without USB identity never matches a USB selector.
            let uart = TTYDeviceInfo(devnode: "/dev/ttyS0", syspath: "/sys/devices/platform/serial8250/tty/ttyS0")
            #expect(!DeviceSelector.usbSerial("A50285BI").matches(uart))
            #expect(!DeviceSelector.busPath("pci-0000:00:14.0-usb-0:2:1.0").matches(uart))
            #expect(DeviceSelector.path("/dev/ttyS0").matches(uart))
        }

        @Test func pathFollowsSymlinksMadeOutsideUdev() throws {
            let directory = try TemporaryDirectory()
            let node = directory.path + "/ttyFAKE0"
            let link = directory.path + "/dosecal"
            #expect(FileManager.default.createFile(atPath: node, contents: nil))
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "ttyFAKE0")
            let info = TTYDeviceInfo(devnode: node, syspath: "/sys/devices/virtual/tty/ttyFAKE0")
            #expect(DeviceSelector.path(link).matches(info))
            #expect(!DeviceSelector.path(directory.path + "/missing").matches(info))
        }

        @Test func descriptionsNameTheKey() {
            #expect("\(DeviceSelector.usbSerial("A50285BI", vendorID: "0403"))" == #"usb_serial "A50285BI" (vendor 0403)"#)
            #expect("\(DeviceSelector.byID("x"))" == #"by_id "/dev/serial/by-id/x""#)
            #expect("\(DeviceSelector.path("/dev/ttyS0"))" == #"path "/dev/ttyS0""#)
            #expect("\(DeviceSelector.busPath("pci-0"))" == #"bus_path "pci-0""#)
        }

        @Test func udevEscapesAreDecoded() {
            #expect(decodeUdevEscapes(#"FT232R\x20USB\x20UART"#) == "FT232R USB UART")
            #expect(decodeUdevEscapes(#"Silicon\x20Labs\x20"#) == "Silicon Labs")
            #expect(decodeUdevEscapes(#"Caf\xc3\xa9"#) == "Café")
            #expect(decodeUdevEscapes(#"odd\x2"#) == #"odd\x2"#)
        }
    }
}
