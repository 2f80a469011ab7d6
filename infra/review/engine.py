"""The offline render engine: run the real program for a stack under Pulumi's mock engine.

Pulumi has no offline preview, so this is the spine of `modelplane render|policy|diff|cost`
and of the tests. It
- loads the project's `Pulumi.<stack>.yaml` itself (mocks never read stack files) and validates it
  before any resource is registered;
- runs `infra.program.build` under `pulumi.runtime.set_mocks` with a recording monitor;
- synthesizes plausible outputs (ids, ARNs, endpoints) so dependent resources can render;
- applies registered stack transforms and per-resource transforms by hand (mocks record but
  never run them);
- records every resource (urn, type, name, parent, provider, inputs in the camelCase wire
  format CrossGuard policies see), with secrets masked as "[secret]".

The result is a deterministic `Graph`: two renders of the same tree are byte-identical.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import ROOT, SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra.config.errors import ConfigError, ConfigIssue
from infra.config.parse import PlatformConfig, parse_config
from infra.review.graph import Graph, Resource
from infra.review.outputs import synthesize_call, synthesize_outputs
from infra.review.project import find_project

PROJECT = "modelplane"
"""The project in rendered URNs, and the package of our components' type tokens (`modelplane:<module>:<Type>`)."""
SECRET = "[secret]"
"""What a secret input is rendered as, in graph.json and everywhere the graph is read."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}; each key may appear once", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def stack_file(stack: str, stacks_dir: Path | None = None) -> Path:
    """Path of the stack's config file (in the project of the current directory unless `stacks_dir` is given)."""
    return (stacks_dir or find_project().stacks_dir) / f"Pulumi.{stack}.yaml"


def list_stacks(stacks_dir: Path | None = None) -> list[str]:
    """Stack names that have a config file, sorted."""
    folder = stacks_dir or find_project().stacks_dir
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in folder.glob("Pulumi.*.yaml"))


def load_stack_config(stack: str, stacks_dir: Path | None = None) -> dict[str, Any]:
    """The raw `config:` map of a stack file; a `ConfigError` when it is missing or malformed."""
    folder = stacks_dir or find_project().stacks_dir
    if not folder.is_dir():
        raise ConfigError([ConfigIssue("--stacks-dir", f"{folder} is not a directory. Fix: pass the folder that holds "
                                                       f"the Pulumi.<stack>.yaml files")])
    path = stack_file(stack, folder)
    if not path.is_file():
        known = ", ".join(list_stacks(folder)) or "none"
        raise ConfigError([ConfigIssue("--stack", f"no stack file {path} (known stacks: {known})")])
    try:
        doc = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(str(path), f"is not valid YAML: {exc}")], source=str(path)) from exc
    config = doc.get("config", {}) if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ConfigError([ConfigIssue(f"{path}:config", "must be a map of config keys")], source=str(path))
    return config


def _normalize(value: Any) -> Any:
    """Mask secrets, turn integral floats back into ints (the wire format makes 3 into 3.0)."""
    if rpc.is_rpc_secret(value):
        inner = rpc.unwrap_rpc_secret(value)
        # A secret map (a Secret's data/stringData) keeps its keys: the manifest stays schema-valid and reviewable.
        return {k: SECRET for k in inner if not k.startswith("__")} if isinstance(inner, dict) else SECRET
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items() if not k.startswith("__") or k == "__meta"}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def _strip_id(provider_ref: str) -> str:
    # Provider references are "URN::ID"; the URN alone is stable across renders.
    return provider_ref.rsplit("::", 1)[0] if provider_ref else ""


class _RenderMocks(pulumi_mocks.Mocks):
    """Answers resource registrations and invokes with synthesized, deterministic outputs."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.stack_transforms: list[Any] = []
        # Keyed by URN: a type and logical name may repeat under different parents, and registrations run in
        # parallel threads, so a (type, name) key would hand one resource another's inputs.
        self.transformed: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        # MockResourceArgs carries no URN: the monitor sets the one it registers on the thread that then calls
        # new_resource (MockMonitor.RegisterResource calls it synchronously).
        self.registering = threading.local()

    def register_transform(self, transform: Any) -> None:
        self.stack_transforms.append(transform)

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        inputs = self._apply_transforms(args)
        urn = getattr(self.registering, "urn", None)
        if urn is not None:
            with self.lock:
                self.transformed[urn] = inputs
        resource_id, outputs = synthesize_outputs(args.typ, args.name, _unwrap(inputs), self.region)
        return resource_id, {**inputs, **outputs}

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return synthesize_call(args.token, args.args, self.region), []

    def _apply_transforms(self, args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        props: dict[str, Any] = dict(args.inputs)
        # Stack transforms run after the resource's own transforms, as in the real engine.
        for transform in [*args.transforms, *self.stack_transforms]:
            result = transform(pulumi.ResourceTransformArgs(
                custom=bool(args.custom), type_=args.typ, name=args.name, props=props, opts=pulumi.ResourceOptions()
            ))
            if asyncio.iscoroutine(result):
                raise TypeError("async transforms are not supported by the offline renderer")
            if result is not None:
                props = dict(result.props)
        return props


def _unwrap(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return _unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """A MockMonitor that also records each registration's parent, provider and final inputs."""

    def __init__(self, mocks: _RenderMocks) -> None:
        super().__init__(mocks)
        self.render_mocks = mocks
        self.records: dict[str, Resource] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        urn = self.make_urn(request.parent, request.type, request.name)
        self.render_mocks.registering.urn = urn
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        with self.render_mocks.lock:
            inputs = self.render_mocks.transformed.pop(urn, {})
        if request.type.startswith(f"{PROJECT}:"):
            # Our components' inputs are our own args bags: their children carry the real inputs.
            # Remote components (helm v4 Chart, kustomize v2 Directory) keep theirs: mocks see no children.
            inputs = {}
        self.records[urn] = Resource(
            urn=urn, type=request.type, name=request.name, parent=_parent(request.parent),
            provider=_strip_id(request.provider), inputs=_normalize(inputs),
        )
        return response

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        # A read (`Resource.get`) is not recorded: nothing registers inputs for it.
        self.render_mocks.registering.urn = None
        return super().ReadResource(request)


def _parent(parent: str) -> str:
    # The root Stack resource is every top-level resource's parent; recording it adds only noise.
    return "" if ":pulumi:pulumi:Stack::" in parent or parent.endswith("pulumi:pulumi:Stack") else parent


def _reset_runtime() -> None:
    # Mocks keep process-wide state; clear it so several renders can share one process.
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    ROOT.set(None)


def _config_values(raw: Mapping[str, Any]) -> dict[str, str]:
    # pulumi.Config reads strings; structured values travel as JSON, like the CLI passes them.
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()}


def render(stack: str, stacks_dir: Path | None = None) -> Graph:
    """Render a stack offline into its resource graph. Raises `ConfigError` on invalid config."""
    folder = stacks_dir or find_project().stacks_dir
    raw = load_stack_config(stack, folder)
    config = parse_config(stack, raw, source=str(stack_file(stack, folder)))
    return render_config(config, raw)


def render_config(config: PlatformConfig, raw: Mapping[str, Any] | None = None) -> Graph:
    """Render an already-validated config (tests use this to render variants)."""
    from infra import program  # imported late: the program imports every component

    return render_program(config.stack, lambda: program.build(config), region=config.region or "us-east-1", raw=raw)


def _ensure_event_loop() -> None:
    # Pulumi's sync helpers call asyncio.get_event_loop(); after an asyncio.run() in the same process (a test, a
    # server) no loop is current and that raises, so a render must not depend on what ran before it.
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def render_program(stack: str, program: Callable[[], None], *, region: str = "us-east-1",
                   raw: Mapping[str, Any] | None = None) -> Graph:
    """Run any Pulumi program (a whole platform, or one component in a test) and record its graph."""
    _ensure_event_loop()
    mocks = _RenderMocks(region=region)
    monitor = _RecordingMonitor(mocks)
    _reset_runtime()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(_config_values(raw or {}))
    try:
        _sync_await(run_pulumi_func(program))
    finally:
        _reset_runtime()
    resources = sorted(monitor.records.values(), key=lambda r: r.urn)
    return Graph(stack=stack, resources=resources)
