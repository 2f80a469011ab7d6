"""`modelplane:registry` and images/digests.json: the account id, the digest requirement and the file's format."""

import json
from pathlib import Path

import pytest

from infra import versions
from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import stack_config_with

FIXTURE = Path(__file__).resolve().parents[2] / "support" / "image_digests.json"


def _errors(stack: str, changes: dict) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(stack, stack_config_with(stack, changes))
    return [str(issue) for issue in raised.value.issues]


REQUIRE = {"modelplane:registry": {"requireDigest": True}}
"""Prod with the digest requirement on (its stack turns it on with the first recorded build)."""


def test_require_digest_needs_a_recorded_digest_for_every_image_and_says_how_to_get_one(monkeypatch, tmp_path) -> None:
    digests = json.loads(FIXTURE.read_text())
    del digests["serve-tf"]
    (tmp_path / "digests.json").write_text(json.dumps(digests))
    monkeypatch.setenv(versions.IMAGE_DIGESTS_ENV, str(tmp_path / "digests.json"))
    errors = _errors("prod", REQUIRE)
    assert len(errors) == 1
    assert errors[0].startswith("modelplane:registry.requireDigest: image 'serve-tf' has no digest in images/digests.json")
    assert "run the images workflow (.github/workflows/images.yml)" in errors[0]


def test_an_empty_digests_file_fails_a_requiring_stack_per_image_but_not_dev(monkeypatch, tmp_path) -> None:
    (tmp_path / "digests.json").write_text("{}")
    monkeypatch.setenv(versions.IMAGE_DIGESTS_ENV, str(tmp_path / "digests.json"))
    assert len(_errors("prod", REQUIRE)) == len(versions.MODELPLANE_IMAGES)
    assert parse_config("dev", stack_config_with("dev", {})).registry.require_digest is False


def test_the_account_id_is_required_when_the_stack_runs_our_images() -> None:
    [error] = _errors("dev", {"modelplane:registry": {"accountId": None}})
    assert error.startswith("modelplane:registry.accountId: is required when the stack runs modelplane images")


def test_no_account_id_is_needed_without_workloads() -> None:
    changes = {"modelplane:registry": None, "modelplane:training": None, "modelplane:inference": None,
               "modelplane:recommend": None, "modelplane:streaming": {"topics": []}}
    assert parse_config("dev", stack_config_with("dev", changes)).registry.account_id is None


@pytest.mark.parametrize(("changes", "key", "fragment"), [
    ({"accountId": "12345"}, "accountId", "must be a 12-digit AWS account id (got '12345')"),
    ({"keepTaggedImages": 0}, "keepTaggedImages", "greater than or equal to 1 (got 0)"),
    ({"untaggedExpiryDays": 0}, "untaggedExpiryDays", "greater than or equal to 1 (got 0)"),
    ({"requireDigests": True}, "requireDigests", "did you mean 'requireDigest'?"),
])
def test_bad_registry_values_name_the_key(changes, key, fragment) -> None:
    [error] = _errors("dev", {"modelplane:registry": changes})
    assert error.startswith(f"modelplane:registry.{key}:") and fragment in error


def test_a_kubeconfig_stack_has_no_registry() -> None:
    [error] = _errors("local", {"modelplane:registry": {"accountId": "123456789012"}})
    assert error == "modelplane:registry: has no effect with target 'kubeconfig' (no AWS); remove it"


@pytest.mark.parametrize("content", ['{"serve": "sha256:abc"}', '{"servee": "sha256:' + "0" * 64 + '"}', "[]"])
def test_a_malformed_digests_file_is_a_config_error_naming_the_file(monkeypatch, tmp_path, content) -> None:
    (tmp_path / "digests.json").write_text(content)
    monkeypatch.setenv(versions.IMAGE_DIGESTS_ENV, str(tmp_path / "digests.json"))
    [error] = _errors("dev", {})
    assert error.startswith("modelplane:registry.requireDigest: ") and str(tmp_path / "digests.json") in error


def test_the_committed_digests_file_is_valid() -> None:
    recorded = versions.read_image_digests(versions.IMAGE_DIGESTS_FILE)
    assert set(recorded) <= set(versions.MODELPLANE_IMAGES)


def test_every_image_folder_is_a_registry_image() -> None:
    folders = {p.parent.name for p in (versions.IMAGE_DIGESTS_FILE.parent).glob("*/Dockerfile")}
    assert folders == set(versions.MODELPLANE_IMAGES)
