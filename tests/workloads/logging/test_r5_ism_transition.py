"""The index lifecycle Job on a domain where an index is moving to `delete` while the Job runs (ISM's change_policy
refuses such an index with RestChangePolicyAction.INDEX_IN_TRANSITION)."""

from __future__ import annotations

import pytest

from tests.workloads.logging.fake_ism import FakeDomain
from tests.workloads.logging.test_ism import CREDENTIALS, domain, settings
from workloads.logging import ism
from workloads.logging.lifecycle import POLICY_ID

__all__ = ["domain"]


def test_an_index_on_its_way_to_deletion_is_skipped_not_a_failed_job(domain: tuple[FakeDomain, str]) -> None:
    fake, url = domain
    fake.transitioning.add("modelplane-2026.11.28")
    done = ism.run(settings(url), CREDENTIALS)
    assert done == {"policy": "created", "added": 1, "changed": 1, "in_transition": ["modelplane-2026.11.28"]}
    assert fake.indices["modelplane-2026.11.27"] == POLICY_ID


def test_other_change_policy_failures_still_fail_the_job(domain: tuple[FakeDomain, str]) -> None:
    fake, url = domain
    fake.transitioning.add("modelplane-2026.11.28")
    fake.closed.add("modelplane-2026.11.27")
    with pytest.raises(ism.LifecycleError, match=r"modelplane-2026\.11\.27: This index is closed") as failure:
        ism.run(settings(url), CREDENTIALS)
    assert "2026.11.28" not in str(failure.value)
