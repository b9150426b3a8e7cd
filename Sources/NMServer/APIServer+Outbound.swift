import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NMBridgeCore
import NMForward

/// The outbound queue and the RRDSRs on the API (docs/dicom.md, "Forwarding"):
/// `GET /v1/outbound`, `POST /v1/outbound/jobs/{job}/retry|drop`, `GET /v1/rrdsr/{study}`.
extension APIRoutes {
    func addOutboundRoutes(_ router: Router<APIRequestContext>) {
        router.get("/v1/outbound") { request, _ in try outboundStatus(request) }
        router.post("/v1/outbound/jobs/:job/retry") { _, context in try await outboundAction(context, retry: true) }
        router.post("/v1/outbound/jobs/:job/drop") { _, context in try await outboundAction(context, retry: false) }
        router.get("/v1/rrdsr/:study") { request, context in try await rrdsr(request, context) }
    }

    func outboundService() throws -> OutboundService {
        guard let outbound else {
            throw HTTPError(.notFound, message: "no outbound queue: configure [[dicom.destination]] (or [dicom.outbound] rrdsr = true)")
        }
        return outbound
    }

    func outboundStatus(_ request: Request) throws -> Response {
        let service = try outboundService()
        let limit = request.uri.queryParameters.get("limit", as: Int.self) ?? 100
        guard (0...10_000).contains(limit) else { return .jsonError(.badRequest, code: "bad_request", message: "limit must be 0…10000") }
        var body = service.queue.snapshot(jobLimit: limit)
        if case .object(var fields) = body {
            fields["routed_seq"] = .int(service.routedSeq)
            body = .object(fields)
        }
        return .json(body.jsonText)
    }

    func outboundAction(_ context: APIRequestContext, retry: Bool) async throws -> Response {
        let service = try outboundService()
        guard let job = context.parameters.get("job", as: Int64.self), job > 0 else {
            return .jsonError(.badRequest, code: "bad_request", message: "the job is the seq of its dicom.forward.queued event (a positive integer)")
        }
        do {
            let result = retry ? try await service.retry(job: job) : try await service.drop(job: job)
            return .json(result.jsonText)
        } catch let error as OutboundService.ActionError {
            return .jsonError(error.notFound ? .notFound : .conflict, code: error.notFound ? "not_found" : "conflict", message: error.message)
        }
    }

    /// The RRDSR of a study: `?format=dicom` gives the Part-10 bytes, else a JSON summary.
    func rrdsr(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let service = try outboundService()
        let study = context.parameters.get("study") ?? ""
        guard !study.isEmpty, study.utf8.count <= 64, study.allSatisfy({ $0.isNumber || $0 == "." }) else {
            return .jsonError(.badRequest, code: "bad_request", message: "\"\(study)\" is not a Study Instance UID")
        }
        let seq = request.uri.queryParameters.get("seq", as: Int64.self)
        do {
            let (bytes, summary) = try await service.rrdsr(study: study, seq: seq)
            if request.uri.queryParameters.get("format") == "dicom" {
                var headers = HTTPFields()
                headers[.contentType] = "application/dicom"
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            return .json(summary.jsonText)
        } catch let error as OutboundService.ActionError {
            return .jsonError(error.notFound ? .notFound : .unprocessableContent, code: error.notFound ? "not_found" : "incomplete", message: error.message)
        }
    }

    /// The `outbound` section of `/v1/health`: depth, oldest job and last error per destination.
    func outboundHealth() -> JSONValue? {
        guard let outbound else { return nil }
        var summary = outbound.queue.snapshot(jobLimit: 0)
        if case .object(var fields) = summary {
            fields["routed_seq"] = .int(outbound.routedSeq)
            summary = .object(fields)
        }
        return summary
    }

    func outboundMetrics(_ text: inout PrometheusText) {
        guard let outbound else { return }
        let rows = outbound.queue.metrics()
        text.metric("nmbridge_outbound_waiting", .gauge, "Jobs waiting per destination.", rows.map { (["destination": $0.destination], Double($0.waiting)) })
        text.metric("nmbridge_outbound_oldest_seconds", .gauge, "Age of the oldest waiting job (0 when none).", rows.map { (["destination": $0.destination], $0.oldestAge) })
        text.metric("nmbridge_outbound_failures", .gauge, "Consecutive failed associations.", rows.map { (["destination": $0.destination], Double($0.failures)) })
        text.metric("nmbridge_outbound_delivered_total", .counter, "Jobs delivered since start.", rows.map { (["destination": $0.destination], Double($0.delivered)) })
        text.metric("nmbridge_outbound_gave_up_total", .counter, "Jobs given up since start.", rows.map { (["destination": $0.destination], Double($0.gaveUp)) })
    }
}
