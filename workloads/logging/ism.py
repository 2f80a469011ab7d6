"""Put the log indices' ISM policy on the OpenSearch domain: `python -m workloads.logging.ism` (the index lifecycle
Job, infra/k8s/logging.py).

No Pulumi provider for OpenSearch's own APIs is installed, so a Kubernetes Job does it, signing each request with
SigV4 (botocore's `SigV4Auth`, service `es`) as the IAM role of Fluent Bit's ServiceAccount: that role is the
domain's fine-grained access control master user, so it may manage ISM. Credentials come from botocore's default
chain (EKS Pod Identity in the cluster). The Job, idempotent:

1. reads the policy (GET _plugins/_ism/policies/<id>) and creates it, or updates it with the `if_seq_no` and
   `if_primary_term` it read (ISM API, "Update policy": an update without them is refused);
2. attaches it to the log indices that have no policy yet (POST _plugins/_ism/add/<pattern>): those created before
   the policy existed, which its `ism_template` does not reach; indices that already have one are reported back
   with ADD_ALREADY_MANAGED and are fine;
3. moves every managed log index to the policy's current version (POST _plugins/_ism/change_policy/<pattern>), so
   a new retention also applies to the indices that exist; an index in transition (to `delete`) is skipped.

Exit 0 when all three succeed, 1 naming the failed request or the failed indices, 2 on bad settings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import botocore.session
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from workloads.common.logs import log_event
from workloads.common.settings import SettingsError
from workloads.logging.lifecycle import INDEX_PATTERN, POLICY_ID, IndexLifecycleSettings, retention_policy

SERVICE: Final = "es"
"""The SigV4 service name of Amazon OpenSearch Service domains."""
POLICY_PATH: Final = f"/_plugins/_ism/policies/{POLICY_ID}"
"""Where the policy lives."""
ADD_ALREADY_MANAGED: Final = "This index already has a policy"
"""Start of the reason ISM's add API gives for an index that has a policy (opensearch-project/index-management,
TransportAddPolicyAction)."""
CHANGE_IN_TRANSITION: Final = "Cannot change policy while transitioning to new state"
"""The reason ISM's change_policy API gives for an index moving between states (index-management,
RestChangePolicyAction.INDEX_IN_TRANSITION): in our policy the only transition is hot → delete, so such an index is
being deleted and needs no new version; it is reported as skipped, not as a failure of the Job."""


class LifecycleError(RuntimeError):
    """The domain refused a request or failed indices; the message says which and why."""


class SignedClient:
    """An httpx client whose every request carries a SigV4 signature for `es` in `region`."""

    def __init__(self, endpoint: str, region: str, credentials: Credentials, *, timeout_s: float) -> None:
        """Requests go to `endpoint` (https://HOST) and are signed with `credentials`."""
        self._endpoint = endpoint
        self._signer = SigV4Auth(credentials, SERVICE, region)
        self._http = httpx.Client(timeout=timeout_s)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                params: Mapping[str, str] | None = None) -> httpx.Response:
        """Send `method path` with a JSON `body`; the signed URL, headers and body are exactly what is sent."""
        url = httpx.URL(self._endpoint + path, params=dict(params or {}))
        data = json.dumps(body).encode() if body is not None else b""
        signed = AWSRequest(method=method, url=str(url), data=data,
                            headers={"Content-Type": "application/json"} if body is not None else {})
        self._signer.add_auth(signed)
        return self._http.request(method, str(url), content=data, headers=dict(signed.headers.items()))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 300:
        raise LifecycleError(f"{what}: HTTP {response.status_code} {response.text[:500]}")
    document = response.json()
    return document if isinstance(document, dict) else {}


def put_policy(client: SignedClient, retention_days: int) -> str:
    """Create or update the policy; 'created' or 'updated'."""
    current = client.request("GET", POLICY_PATH)
    body = retention_policy(retention_days)
    if current.status_code == 404:
        _json(client.request("PUT", POLICY_PATH, body), f"PUT {POLICY_PATH}")
        return "created"
    read = _json(current, f"GET {POLICY_PATH}")
    params = {"if_seq_no": str(read["_seq_no"]), "if_primary_term": str(read["_primary_term"])}
    _json(client.request("PUT", POLICY_PATH, body, params), f"PUT {POLICY_PATH}")
    return "updated"


def _failed(document: Mapping[str, Any], tolerated: str | None) -> list[str]:
    failed = document.get("failed_indices") or []
    return [f"{item.get('index_name')}: {item.get('reason')}" for item in failed
            if not (tolerated and str(item.get("reason", "")).startswith(tolerated))]


def _in_transition(document: Mapping[str, Any]) -> list[str]:
    return sorted(str(item.get("index_name")) for item in document.get("failed_indices") or []
                  if str(item.get("reason", "")).startswith(CHANGE_IN_TRANSITION))


def attach(client: SignedClient) -> dict[str, Any]:
    """Attach the policy to unmanaged log indices and move managed ones to its current version; updated counts, and
    the indices skipped because they are on their way to deletion."""
    body = {"policy_id": POLICY_ID}
    added = _json(client.request("POST", f"/_plugins/_ism/add/{INDEX_PATTERN}", body), "add policy")
    changed = _json(client.request("POST", f"/_plugins/_ism/change_policy/{INDEX_PATTERN}", body), "change policy")
    problems = _failed(added, ADD_ALREADY_MANAGED) + _failed(changed, CHANGE_IN_TRANSITION)
    if problems:
        raise LifecycleError("indices the policy could not be applied to: " + "; ".join(problems))
    return {"added": int(added.get("updated_indices", 0)), "changed": int(changed.get("updated_indices", 0)),
            "in_transition": _in_transition(changed)}


def run(settings: IndexLifecycleSettings, credentials: Credentials) -> dict[str, Any]:
    """Put the policy and apply it to the log indices; what was done."""
    client = SignedClient(settings.endpoint, settings.region, credentials, timeout_s=settings.timeout_s)
    try:
        return {"policy": put_policy(client, settings.retention_days), **attach(client)}
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Apply the policy; exit 0 on success, 1 when the domain refused something, 2 on bad settings."""
    try:
        settings = IndexLifecycleSettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        print("no AWS credentials found (EKS Pod Identity, AWS_* variables or a profile)", file=sys.stderr)
        return 1
    try:
        done = run(settings, credentials)
    except (LifecycleError, httpx.HTTPError) as exc:
        print(f"index lifecycle not applied on {settings.endpoint}: {exc}", file=sys.stderr)
        return 1
    log_event("index_lifecycle_applied", policy_id=POLICY_ID, pattern=INDEX_PATTERN,
              retention_days=settings.retention_days, **done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
