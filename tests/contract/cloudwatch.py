"""CloudWatch's GetMetricData in the JSON protocol as documented: ``POST /`` with
``X-Amz-Target: GraniteServiceVersion20100801.GetMetricData`` and ``Content-Type: application/x-amz-json-1.0``,
signed with SigV4. The signature is checked with botocore's signer (an implementation independent of Fledge's):
the request's canonical form is signed again with the known secret key and must give the same signature."""

from __future__ import annotations

import re

from botocore import auth, awsrequest, credentials

from tests.contract import server

TARGET = "GraniteServiceVersion20100801.GetMetricData"
_AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                            r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")


def error(status: int, kind: str, message: str) -> server.Reply:
    return server.Reply(status, {"__type": f"com.amazonaws.cloudwatch#{kind}", "message": message})


class CloudWatch:
    def __init__(self, access_key: str, secret_key: str, region: str, answers: server.Answers, *,
                 url: str = "") -> None:
        self.access_key, self.secret_key, self.region, self.answers = access_key, secret_key, region, answers
        self.url = url  # the address the client signed for (its Host header is checked as part of the signature)

    def signature_problem(self, seen: server.Seen) -> str | None:
        found = _AUTHORIZATION.match(seen.header("Authorization") or "")
        if found is None:
            return "no SigV4 Authorization header"
        key, day, region, service, names, signature = found.groups()
        if key != self.access_key:
            return "unknown access key"
        if (region, service) != (self.region, "monitoring"):
            return f"credential scope {region}/{service} is not {self.region}/monitoring"
        stamp = seen.header("X-Amz-Date") or ""
        if not stamp.startswith(day):
            return "X-Amz-Date does not match the credential scope"
        headers = {name: seen.header(name) or "" for name in names.split(";")}
        if not {"host", "x-amz-date", "content-type", "x-amz-target"} <= set(headers):
            return "host, x-amz-date, content-type and x-amz-target must be signed"
        request = awsrequest.AWSRequest(method=seen.method, url=f"http://{headers['host']}{seen.path}",
                                        data=seen.body, headers=headers)
        request.context["timestamp"] = stamp
        signer = auth.SigV4Auth(credentials.Credentials(self.access_key, self.secret_key), "monitoring", self.region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return None if expected == signature else "signature does not match"

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.method != "POST" or seen.path != "/":
            return error(404, "UnknownOperationException", "not found")
        problem = self.signature_problem(seen)
        if problem is not None:
            return error(403, "SignatureDoesNotMatch" if "signature" in problem else "UnrecognizedClientException",
                         problem)
        if seen.header("X-Amz-Target") != TARGET or seen.header("Content-Type") != "application/x-amz-json-1.0":
            return error(400, "UnknownOperationException", "expected GetMetricData in the JSON 1.0 protocol")
        body = seen.json()
        queries = body.get("MetricDataQueries")
        if not queries or not isinstance(body.get("StartTime"), int) or body.get("EndTime", 0) <= body["StartTime"]:
            return error(400, "ValidationError", "MetricDataQueries, StartTime and EndTime are required")
        outcome = self.answers(seen.body.decode())
        if isinstance(outcome, server.Reply):
            return outcome
        returned = next((query for query in queries if query.get("ReturnData", True)), queries[0])
        values = [] if outcome is server.NO_DATA else [outcome]
        return server.Reply(200, {"MetricDataResults": [{
            "Id": returned.get("Id"), "Label": returned.get("Label", ""), "StatusCode": "Complete",
            "Timestamps": [body["EndTime"]] * len(values), "Values": values}], "Messages": []})


def throttled() -> server.Reply:
    return error(400, "ThrottlingException", "Rate exceeded")
