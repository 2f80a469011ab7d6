"""The log indices' names and their Index State Management (ISM) policy: delete an index once it is older than the
retention. Only stdlib, pydantic and workloads.common are imported, so infra reads the names and settings without
botocore or httpx.

Fluent Bit's `opensearch` output with `Logstash_Format On` writes each record to the index
`<Logstash_Prefix><Logstash_Prefix_Separator><strftime(Logstash_DateFormat)>` (Fluent Bit manual, outputs/opensearch;
fluent/fluent-bit plugins/out_opensearch/opensearch.c compose_index_header), so one index per day:
`modelplane-2026.11.29`. infra/k8s/logging.py sets those three keys from the constants below, and the policy's
`ism_template` matches `modelplane-*`, so ISM attaches the policy to every new daily index by itself.

The policy follows OpenSearch's ISM API ("Create policy"; documentation-website _im-plugin/ism/api.md and
policies.md): a `hot` state that moves to `delete` once `min_index_age` (counted from the index's creation) reaches
the retention, and a `delete` state whose `delete` action removes the index.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from workloads.common.settings import WorkloadSettings
from workloads.common.vocab import INDEX_LIFECYCLE_ENV_PREFIX

INDEX_PREFIX: Final = "modelplane"
"""Fluent Bit's Logstash_Prefix: every log index's name starts with it."""
INDEX_SEPARATOR: Final = "-"
"""Fluent Bit's Logstash_Prefix_Separator, between the prefix and the date."""
INDEX_DATE_FORMAT: Final = "%Y.%m.%d"
"""Fluent Bit's Logstash_DateFormat (strftime): one index per UTC day."""
INDEX_PATTERN: Final = f"{INDEX_PREFIX}{INDEX_SEPARATOR}*"
"""The indices the policy manages. Never a bare `*`: that would also match the security plugin's own indices."""
POLICY_ID: Final = "modelplane-log-retention"
"""The ISM policy's id (its path under _plugins/_ism/policies/)."""
TEMPLATE_PRIORITY: Final = 100
"""ism_template priority: ours wins over any lower-priority template matching the same indices."""


class IndexLifecycleSettings(WorkloadSettings):
    """Everything `python -m workloads.logging.ism` (the index lifecycle Job) can be configured with."""

    env_prefix: ClassVar[str] = INDEX_LIFECYCLE_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.logging.ism"

    endpoint: str
    """Base URL of the OpenSearch domain, such as https://vpc-logs-abc.us-east-1.es.amazonaws.com."""
    region: str = Field(min_length=1)
    """AWS region of the domain; requests are signed with SigV4 for service `es` there."""
    retention_days: int = Field(ge=1, le=3653)
    """Days a log index is kept, counted from its creation; older indices are deleted. Valid: 1 to 3653."""
    timeout_s: float = Field(30.0, gt=0, le=600)
    """Seconds each HTTP request to the domain may take. Defaults to 30."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            raise ValueError("use the domain's base URL, https://HOST (no path)")
        return value.rstrip("/")


def retention_policy(retention_days: int) -> dict[str, Any]:
    """The ISM policy document (the body of PUT _plugins/_ism/policies/<POLICY_ID>)."""
    return {"policy": {
        "description": f"Delete {INDEX_PATTERN} log indices {retention_days} days after they are created.",
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [],
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{retention_days}d"}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": [INDEX_PATTERN], "priority": TEMPLATE_PRIORITY}],
    }}
