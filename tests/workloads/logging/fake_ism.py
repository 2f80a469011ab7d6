"""A loopback stand-in for an OpenSearch domain's ISM API that checks every request's SigV4 signature.

It answers as the ISM API documents (opensearch-project documentation-website, _im-plugin/ism/api.md): a policy
update needs the `if_seq_no`/`if_primary_term` the last read returned, `add` reports indices that already have a
policy, `change_policy` moves managed indices except those in transition between states. A request whose
signature botocore does not reproduce from what arrived (method, raw path and query, the signed headers, the body)
gets 403, as the domain would answer.
"""

from __future__ import annotations

import fnmatch
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

POLICIES = "/_plugins/_ism/policies/"


@dataclass
class Captured:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


@dataclass
class FakeDomain:
    """The domain's state: ISM policies and log indices (name → policy id, or None when unmanaged)."""

    credentials: Credentials
    region: str
    indices: dict[str, str | None] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    transitioning: set[str] = field(default_factory=set)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq_no: int = 6
    deny: int | None = None
    requests: list[Captured] = field(default_factory=list)

    def verify(self, method: str, url: str, headers: dict[str, str], body: bytes) -> bool:
        """Recompute the signature from what arrived, as the service does."""
        lower = {key.lower(): value for key, value in headers.items()}
        authorization = lower.get("authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return False
        parts = dict(item.strip().split("=", 1) for item in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(","))
        signed = parts["SignedHeaders"].split(";")
        request = AWSRequest(method=method, url=url, data=body,
                             headers={k: v for k, v in headers.items() if k.lower() in signed})
        request.context["timestamp"] = lower["x-amz-date"]
        scope = parts["Credential"].split("/")
        if scope[0] != self.credentials.access_key or scope[2:] != [self.region, "es", "aws4_request"]:
            return False
        auth = SigV4Auth(self.credentials, "es", self.region)
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        return expected == parts["Signature"] and lower.get("x-amz-security-token") == self.credentials.token

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """The ISM API's answer to one verified request."""
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path.startswith(POLICIES):
            return self._policy(method, url.path.removeprefix(POLICIES), query, body)
        verb, _, pattern = url.path.removeprefix("/_plugins/_ism/").partition("/")
        policy_id = json.loads(body)["policy_id"]
        updated, failed = 0, []
        for name in sorted(fnmatch.filter(self.indices, pattern)):
            if name in self.closed:
                failed.append({"index_name": name, "reason": "This index is closed"})
            elif verb == "add" and self.indices[name] is not None:
                failed.append({"index_name": name, "reason": "This index already has a policy, use the update policy "
                                                             "API to update index policies"})
            elif verb == "change_policy" and self.indices[name] is None:
                # index-management RestChangePolicyAction.INDEX_NOT_MANAGED / INDEX_IN_TRANSITION
                failed.append({"index_name": name, "reason": "This index is not being managed"})
            elif verb == "change_policy" and name in self.transitioning:
                failed.append({"index_name": name, "reason": "Cannot change policy while transitioning to new state"})
            else:
                self.indices[name] = policy_id
                updated += 1
        return 200, {"updated_indices": updated, "failures": bool(failed), "failed_indices": failed}

    def _policy(self, method: str, policy_id: str, query: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        current = self.policies.get(policy_id)
        if method == "GET":
            if current is None:
                return 404, {"error": {"type": "status_exception", "reason": "Policy not found"}, "status": 404}
            return 200, {"_id": policy_id, "_version": 1, "_seq_no": self.seq_no, "_primary_term": 1,
                         "policy": {"policy_id": policy_id, **current}}
        if current is not None and (query.get("if_seq_no"), query.get("if_primary_term")) != (str(self.seq_no), "1"):
            return 409, {"error": {"type": "version_conflict_engine_exception"}, "status": 409}
        self.seq_no += 1
        self.policies[policy_id] = json.loads(body)["policy"]
        return (201 if current is None else 200), {"_id": policy_id, "_seq_no": self.seq_no, "_primary_term": 1}

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        """Start it on a free loopback port; the server and its base URL."""
        domain = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                url = f"http://{self.headers['Host']}{self.path}"
                ok = domain.verify(self.command, url, headers, body)
                domain.requests.append(Captured(self.command, self.path, headers, body, ok))
                answer: dict[str, Any]
                if not ok:
                    status, answer = 403, {"message": "The request signature we calculated does not match"}
                elif domain.deny is not None:
                    status, answer = domain.deny, {"error": "no permissions", "status": domain.deny}
                else:
                    status, answer = domain.handle(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._any()

            def do_PUT(self) -> None:
                self._any()

            def do_POST(self) -> None:
                self._any()

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"
