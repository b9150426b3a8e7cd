import Foundation
import NMQualityControl
import Testing

@testable import NMBridgeCore

/// `[[qc.check_source.reading]]`, `[[qc.reference_source]]`, `[qc.dosecal]`, `[[journal.retention]]`
/// and the instrument's identity in `[[device]]`.
@Suite struct DosecalQAConfigurationTests {
    @Test func theSettingsAreRead() throws {
        let configuration = try load(
            """
            [journal]
            retention_days = 365
            [[journal.retention]]
            kinds = ["gantry.state", "gantry.motion"]
            days = 30
            [[device]]
            id = "dosecal-hotlab"
            driver = "script"
            builtin = "flaky-demo"
            instrument_model = "CRC-55tR"
            instrument_serial = "551234"
            [qc]
            [[qc.check_source]]
            device = "dosecal-hotlab"
            nuclide = "Cs-137"
            reference_bq = 7.4e6
            reference_date = 2020-01-01T00:00:00Z
            serial = "CS137-0042"
            [[qc.check_source.reading]]
            setting = "TC99M"
            factor = 1.1
            time_window = "06:00-10:00"
            [[qc.check_source.reading]]
            setting = "I-131"
            reference_reading_bq = 6.1e6
            reference_date = "2025-06-01T00:00:00Z"
            band_pct = 10
            [[qc.reference_source]]
            nuclide = "Co-57"
            activity_bq = 1.85e8
            reference_date = 2026-01-01T00:00:00Z
            serial = "CO57-7"
            uncertainty_pct = 3
            [qc.dosecal]
            accuracy_fail_pct = 5
            accuracy_investigate_pct = 3
            linearity_interval_days = 91
            eluate_shelf_life_h = 8
            """)
        #expect(configuration.journal.retentionRules.map(\.kinds) == [["gantry.state", "gantry.motion"]])
        #expect(configuration.journal.retentionRules.first?.days == 30)
        #expect(configuration.devices.first?.instrumentModel == "CRC-55tR" && configuration.devices.first?.instrumentSerial == "551234")
        let qc = try #require(configuration.qualityControl)
        let readings = try #require(qc.checkSources.first?.readings)
        #expect(readings.count == 2)
        #expect(readings[0].setting == "Tc-99m" && readings[0].factor == 1.1 && readings[0].minutesOfDay == 360...600 && readings[0].bandPct == 25)
        #expect(readings[1].setting == "I-131" && readings[1].referenceReadingBq == 6.1e6 && readings[1].bandPct == 10)
        #expect(qc.referenceSources.map(\.serial) == ["CO57-7"] && qc.referenceSources.first?.uncertaintyPct == 3)
        #expect(qc.dosecal.accuracyFailPct == 5 && qc.dosecal.accuracyInvestigatePct == 3)
        #expect(qc.dosecal.linearityIntervalDays == 91 && qc.dosecal.accuracyIntervalDays == 365)
        #expect(qc.dosecal.eluateShelfLifeHours == 8 && qc.dosecal.tracksDueDates)
    }

    @Test func problemsNameTheKeyAndLine() {
        let text = """
            [[journal.retention]]
            kinds = ["Gantry State"]
            [[device]]
            id = "dosecal-hotlab"
            driver = "script"
            builtin = "flaky-demo"
            [qc]
            [[qc.check_source]]
            device = "dosecal-hotlab"
            nuclide = "Cs-137"
            reference_bq = 7.4e6
            reference_date = 2020-01-01T00:00:00Z
            serial = "CS137-0042"
            [[qc.check_source.reading]]
            setting = "Tc-99m"
            time_window = "10:00-06:00"
            [qc.dosecal]
            linearity_fail_pct = 2
            """
        let error = #expect(throws: ConfigurationError.self) { try load(text) }
        let problems = error?.problems.map(\.description) ?? []
        #expect(problems.contains { $0.hasPrefix("test.toml:2: journal.retention[#1].kinds: \"Gantry State\" is not an event-kind glob") }, "\(problems)")
        #expect(problems.contains { $0.contains("journal.retention[#1].days: required key is missing") }, "\(problems)")
        #expect(problems.contains { $0.contains("qc.check_source[CS137-0042].reading[Tc-99m].factor: give factor") }, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("test.toml:16: qc.check_source[CS137-0042].reading[Tc-99m].time_window") }, "\(problems)")
        #expect(problems.contains { $0.contains("qc.dosecal.linearity_fail_pct: 2.0 must not be smaller than linearity_investigate_pct 5.0") }, "\(problems)")
    }
}
