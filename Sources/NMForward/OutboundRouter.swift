import DicomStore
import Foundation
import NMBridgeCore

/// `[[dicom.route]]` rules applied to stored instances: which destinations an instance
/// goes to, and through which route. Pure: the event in, the matches out.
struct OutboundRouter: Sendable {
    typealias Route = DaemonConfiguration.Dicom.Route

    let routes: [Route]
    /// Whether an instance is a camera QC acquisition (from the QC configuration).
    let isQualityControl: @Sendable (Event) -> Bool

    /// Whether `route` takes the instance of a `dicom.instance.stored` event, whatever its timing.
    func matches(_ route: Route, _ event: Event) -> Bool {
        let data = event.data
        func any(_ patterns: [String], _ value: String?) -> Bool {
            guard !patterns.isEmpty else { return true }
            guard let value else { return false }
            return patterns.contains { Glob.matches(pattern: $0.lowercased(), value.lowercased()) }
        }
        guard any(route.devices, event.device), any(route.modalities, data["modality"]?.stringValue),
            any(route.seriesDescriptions, data["series_description"]?.stringValue),
            any(route.studyDescriptions, data["study_description"]?.stringValue)
        else { return false }
        return route.qualityControl || !isQualityControl(event)
    }

    /// The (route, destination) pairs an instance goes to at `when`, each destination once.
    func destinations(for event: Event, when: Route.When) -> [(route: String, destination: String)] {
        var seen = Set<String>()
        var out: [(String, String)] = []
        for route in routes where route.when == when && route.instances && matches(route, event) {
            for destination in route.destinations where seen.insert(destination).inserted { out.append((route.name, destination)) }
        }
        return out
    }

    /// The destinations of the RRDSR of a study whose image is `event`.
    func rrdsrDestinations(for event: Event) -> [(route: String, destination: String)] {
        var seen = Set<String>()
        var out: [(String, String)] = []
        for route in routes where route.rrdsr && matches(route, event) {
            for destination in route.destinations where seen.insert(destination).inserted { out.append((route.name, destination)) }
        }
        return out
    }
}
