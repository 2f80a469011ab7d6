"""Plaintext credentials in the `aws:` and `modelplane:` namespaces are an error that shows the `pulumi config set
--secret` command; a `secure:` value, or a key Pulumi holds as a secret, passes."""

import copy
import json
from typing import Any

import pytest
from pydantic import Field

from infra.config.base import Section
from infra.config.credentials import SECRET_FIELD, plaintext_secret_issues
from infra.config.errors import ConfigError
from infra.config.parse import from_pulumi_runtime, parse_config
from tests.support.graph import load_stack_config, stack_config_with

SECURE = {"secure": "v1:AAABAKz9fWqu1eGmMR3b2A==:7k5Y"}


def _issues(changes: dict[str, Any], stack: str = "dev") -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(stack, stack_config_with(stack, changes))
    return {issue.path: issue.message for issue in info.value.issues}


@pytest.mark.parametrize("key", ["aws:secretKey", "aws:accessKey", "aws:token"])
def test_a_plaintext_aws_credential_shows_the_command_that_encrypts_it(key: str) -> None:
    issues = _issues({key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})
    assert issues[key] == ("is a credential in plain text in the stack file; remove it and set it as a secret with "
                           f"`pulumi config set --secret --stack dev '{key}' <value>` (the file then holds only its "
                           "`secure:` ciphertext)")


def test_the_message_never_repeats_the_secret() -> None:
    issues = _issues({"aws:secretKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})
    assert "wJalrXUtnFEMI" not in issues["aws:secretKey"]


def test_secure_values_pass() -> None:
    config = parse_config("dev", stack_config_with("dev", {"aws:secretKey": SECURE, "aws:accessKey": SECURE}))
    assert config.stack == "dev"


def test_a_key_pulumi_holds_as_a_secret_passes_decrypted() -> None:
    raw = {"aws:secretKey": "decrypted-by-the-engine", "aws:region": "us-east-1"}
    assert plaintext_secret_issues("dev", raw, secret_keys=["aws:secretKey"]) == []
    assert [i.path for i in plaintext_secret_issues("dev", raw)] == ["aws:secretKey"]


def test_a_credential_nested_in_a_modelplane_section_needs_path() -> None:
    raw = {"modelplane:cache": {"nodeType": "cache.t4g.small", "authToken": "hunter2-hunter2"},
           "modelplane:logging": {"openSearch": {"masterPassword": SECURE}}}
    issues = plaintext_secret_issues("staging", raw)
    assert [(i.path, i.message.split("`")[1]) for i in issues] == [
        ("modelplane:cache.authToken",
         "pulumi config set --secret --path --stack staging 'modelplane:cache.authToken' <value>")]


def test_a_top_level_modelplane_credential_is_flagged_beside_the_unknown_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", stack_config_with("dev", {"modelplane:registryPassword": "s3cret"}))
    messages = [i.message for i in info.value.issues if i.path == "modelplane:registryPassword"]
    assert len(messages) == 2 and messages[1].startswith("unknown key"), messages
    assert "`pulumi config set --secret --stack dev 'modelplane:registryPassword' <value>`" in messages[0]


def test_names_of_secrets_and_switches_are_not_credentials() -> None:
    raw = stack_config_with("dev", {"modelplane:inference": {"services": [
        {"name": "chat", "model": "lm-small", "apiKey": True, "runtime": "vllm",
         "vllm": {"apiKeysSecret": "chat-keys", "preset": "small"}}]}})
    assert plaintext_secret_issues("dev", raw) == []


def test_under_pulumi_up_a_key_the_engine_holds_as_a_secret_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine hands the program decrypted values and the names of the secret keys (PULUMI_CONFIG*).
    raw = {key: value if isinstance(value, str) else json.dumps(value)
           for key, value in stack_config_with("dev", {"aws:secretKey": "decrypted"}).items()}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(raw))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["aws:secretKey"]))
    assert from_pulumi_runtime("dev").stack == "dev"
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    with pytest.raises(ConfigError) as info:
        from_pulumi_runtime("dev")
    assert [issue.path for issue in info.value.issues] == ["aws:secretKey"]


def test_a_switch_the_schema_knows_is_no_credential_whatever_its_value() -> None:
    # `apiKey` is a bool; "false" (quoted in YAML) parses as one, and must not read as a plain-text API key.
    services = copy.deepcopy(load_stack_config("dev")["modelplane:inference"]["services"])
    services[1]["apiKey"] = "false"
    config = parse_config("dev", stack_config_with("dev", {"modelplane:inference": {"services": services}}))
    assert config.inference.services[1].api_key is False


def test_an_unknown_credential_key_inside_a_known_section_is_flagged_beside_the_unknown_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", stack_config_with("dev", {"modelplane:cache": {"authToken": "hunter2-hunter2"}}))
    messages = [i.message for i in info.value.issues if i.path == "modelplane:cache.authToken"]
    assert any(m.startswith("unknown key") for m in messages), messages
    assert any("`pulumi config set --secret --path --stack dev 'modelplane:cache.authToken' <value>`" in m
               for m in messages), messages


class _Vault(Section):
    """A section with a credential field, as a future one would declare it."""

    url: str = ""
    """Where the vault is."""
    token: str = Field(default="", json_schema_extra=SECRET_FIELD)
    """Its access token."""
    api_key: bool = True
    """A switch named like a credential."""


class _Root(Section):
    """A section holding a list of `_Vault`s."""

    vaults: list[_Vault] = []
    """The vaults."""


def test_a_field_the_schema_marks_secret_must_be_a_secure_value() -> None:
    schema = {"root": _Root, "tags": None}
    raw = {"modelplane:root": {"vaults": [{"url": "https://v", "token": SECURE, "apiKey": "false"},
                                          {"url": "https://w", "token": "s.hunter2"}]},
           "modelplane:tags": {"apiToken": "a tag, not a credential"}}
    assert [i.path for i in plaintext_secret_issues("dev", raw, schema=schema)] == ["modelplane:root.vaults[1].token"]
