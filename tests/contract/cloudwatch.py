"""CloudWatch's GetMetricData in the JSON protocol as documented: ``POST /`` with
``X-Amz-Target: GraniteServiceVersion20100801.GetMetricData`` and ``Content-Type: application/x-amz-json-1.0``,
signed with SigV4. The signature is checked with botocore's signer (an implementation independent of Fledge's):
the request's canonical form is signed again with the known secret key and must give the same signature.

Temporary credentials, as the controller gets them without a Secret: ``Sts`` answers ``AssumeRoleWithWebIdentity``
(IRSA) and ``ContainerCredentials`` the EKS Pod Identity agent; each issues new keys with a session token,
which ``CloudWatch`` then takes, and only with that token sent and signed as ``X-Amz-Security-Token``."""

from __future__ import annotations

import datetime
import itertools
import re
import threading
from xml.sax import saxutils

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
        self.keys: dict[str, tuple[str, str]] = {access_key: (secret_key, "")}  # access key → (secret, token)
        self._lock = threading.Lock()

    def issue(self, session: str) -> tuple[str, str, str]:
        """New temporary credentials (access key, secret key, session token) this server then takes."""
        with self._lock:
            number = len(self.keys)
            issued = (f"ASIA{session.upper()}{number:04d}", f"temporary/secret+{session}{number}",
                      f"FwoGZXIvYXdzE{session}{number}session//token=")
            self.keys[issued[0]] = issued[1:]
        return issued

    def signature_problem(self, seen: server.Seen) -> str | None:
        found = _AUTHORIZATION.match(seen.header("Authorization") or "")
        if found is None:
            return "no SigV4 Authorization header"
        key, day, region, service, names, signature = found.groups()
        with self._lock:
            known = self.keys.get(key)
        if known is None:
            return "unknown access key"
        secret_key, session_token = known
        if (seen.header("X-Amz-Security-Token") or "") != session_token:
            return "the session token of these temporary credentials is missing or wrong"
        if (region, service) != (self.region, "monitoring"):
            return f"credential scope {region}/{service} is not {self.region}/monitoring"
        stamp = seen.header("X-Amz-Date") or ""
        if not stamp.startswith(day):
            return "X-Amz-Date does not match the credential scope"
        headers = {name: seen.header(name) or "" for name in names.split(";")}
        needed = {"host", "x-amz-date", "content-type", "x-amz-target"} | ({"x-amz-security-token"} if session_token
                                                                           else set())
        if not needed <= set(headers):
            return f"{', '.join(sorted(needed))} must be signed"
        request = awsrequest.AWSRequest(method=seen.method, url=f"http://{headers['host']}{seen.path}",
                                        data=seen.body, headers=headers)
        request.context["timestamp"] = stamp
        signer = auth.SigV4Auth(credentials.Credentials(key, secret_key, session_token or None), "monitoring",
                                self.region)
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


def expiration(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Sts:
    """STS's ``AssumeRoleWithWebIdentity`` in the query protocol (``POST /``, a form), unsigned as AWS documents
    it: the ServiceAccount token ``token`` for the role ``role_arn`` gets new credentials of ``cloudwatch``,
    valid ``lifetime`` seconds; XML answers, errors as ``ErrorResponse``."""

    NS = "https://sts.amazonaws.com/doc/2011-06-15/"

    def __init__(self, role_arn: str, token: str, cloudwatch: CloudWatch, lifetime: float = 3600) -> None:
        self.role_arn, self.token, self.cloudwatch, self.lifetime = role_arn, token, cloudwatch, lifetime
        self.issued = itertools.count()

    def error(self, status: int, code: str, message: str) -> server.Reply:
        return server.Reply(status, (f'<ErrorResponse xmlns="{self.NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
                                     f"<Message>{saxutils.escape(message)}</Message></Error>"
                                     "<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
                                     ).encode(), {"Content-Type": "text/xml"})

    def __call__(self, seen: server.Seen) -> server.Reply:
        form = seen.form() if seen.method == "POST" else {name: seen.param(name) or "" for name in seen.params}
        if seen.path != "/" or form.get("Action") != "AssumeRoleWithWebIdentity" or \
                form.get("Version") != "2011-06-15":
            return self.error(400, "InvalidAction", "expected AssumeRoleWithWebIdentity, Version 2011-06-15")
        if seen.header("Authorization"):
            return self.error(400, "InvalidParameterCombination", "AssumeRoleWithWebIdentity is not signed")
        if not form.get("RoleSessionName"):
            return self.error(400, "ValidationError", "RoleSessionName is required")
        if form.get("WebIdentityToken") != self.token:
            return self.error(400, "InvalidIdentityToken", "Couldn't retrieve verification key from your identity "
                                                           "provider")
        if form.get("RoleArn") != self.role_arn:
            return self.error(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
        access, secret, token = self.cloudwatch.issue(f"irsa{next(self.issued)}")
        xml = (f'<AssumeRoleWithWebIdentityResponse xmlns="{self.NS}"><AssumeRoleWithWebIdentityResult>'
               f"<SubjectFromWebIdentityToken>system:serviceaccount:fledge:fledge</SubjectFromWebIdentityToken>"
               f"<AssumedRoleUser><Arn>{self.role_arn}/{form['RoleSessionName']}</Arn></AssumedRoleUser>"
               f"<Credentials><SessionToken>{saxutils.escape(token)}</SessionToken>"
               f"<SecretAccessKey>{saxutils.escape(secret)}</SecretAccessKey>"
               f"<Expiration>{expiration(self.lifetime)}</Expiration><AccessKeyId>{access}</AccessKeyId>"
               f"</Credentials></AssumeRoleWithWebIdentityResult>"
               f"<ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>"
               f"</AssumeRoleWithWebIdentityResponse>")
        return server.Reply(200, xml.encode(), {"Content-Type": "text/xml"})


class ContainerCredentials:
    """The EKS Pod Identity agent (and ECS's endpoint): ``GET`` with the pod's token as ``Authorization``
    answers new credentials of ``cloudwatch`` as JSON, valid ``lifetime`` seconds."""

    def __init__(self, token: str, cloudwatch: CloudWatch, lifetime: float = 3600, path: str = "/v1/credentials"
                 ) -> None:
        self.token, self.cloudwatch, self.lifetime, self.path = token, cloudwatch, lifetime, path
        self.issued = itertools.count()

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.method != "GET" or seen.path != self.path:
            return server.Reply(404, {"Message": "not found"})
        if seen.header("Authorization") != self.token:
            return server.Reply(401, {"Message": "invalid authorization token"})
        access, secret, token = self.cloudwatch.issue(f"pod{next(self.issued)}")
        return server.Reply(200, {"AccessKeyId": access, "SecretAccessKey": secret, "Token": token,
                                  "AccountId": "111122223333", "Expiration": expiration(self.lifetime)})
