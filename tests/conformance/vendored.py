"""The vendored upstream files of tests/conformance (sources.py): where each pinned bundle lives, its CRD schemas,
each chart's values.yaml, and the values paths a chart does not have. Shared by the conformance suite and the
component tests that check their own Helm values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conformance.sources import BUNDLES, REFRESH_HINT, Bundle
from tests.support.conformance import chart_defaults, chart_view, crd_schemas, unknown_value_paths

FLUENT_BIT_VALUES = Path(__file__).resolve().parents[1] / "infra" / "k8s" / "fluent_bit_values.yaml"
"""Fluent Bit's values.yaml, vendored with issue 15 (its SOURCE is infra/versions.py FLUENT_BIT_CHART_VERSION)."""


def vendored(bundle: Bundle) -> Path:
    """The bundle's directory, or a failure saying how to vendor the pinned version."""
    missing = [name for name in [*bundle.files.values(), "SOURCE"] if not (bundle.directory / name).is_file()]
    if missing:
        hint = REFRESH_HINT.format(name=bundle.name, repo=bundle.repo, version=bundle.version)
        raise AssertionError(f"{bundle.name} {bundle.version} (infra/versions.py) is not vendored: missing {missing} in "
                             f"{bundle.directory}; {hint}")
    return bundle.directory


def crd_schemas_vendored() -> dict[tuple[str, str], dict[str, Any]]:
    """Every vendored CRD's schema by (apiVersion, kind)."""
    files = [vendored(b) / name for b in BUNDLES for name in b.files.values() if not name.startswith("values")]
    return crd_schemas(files)


def chart_values_files() -> dict[str, Path]:
    """Each pinned chart's vendored values.yaml by chart reference."""
    charts = {chart: vendored(b) / name for b in BUNDLES for chart, name in b.charts.items()}
    return {**charts, "fluent-bit": FLUENT_BIT_VALUES}


def unknown_chart_values(chart: str, values: dict[str, Any]) -> list[str]:
    """The values paths `chart` does not have, with the bundle's free-form paths and root aliases applied."""
    bundle = next((b for b in BUNDLES if chart in b.charts), None)
    free_form = bundle.free_form.get(chart, ()) if bundle else ()
    aliases = bundle.root_aliases.get(chart, ()) if bundle else ()
    defaults = chart_defaults(chart_values_files()[chart])
    for key, name in (bundle.subcharts.items() if bundle else ()):
        dependency = next(b for b in BUNDLES if b.name == name)
        defaults[key] = _merged(chart_defaults(vendored(dependency) / "values.yaml"), defaults.get(key) or {})
    ours, defaults = chart_view(values, defaults, free_form, aliases)
    return unknown_value_paths(ours, defaults)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, maps merged key by key, as Helm coalesces a parent's values over a dependency's."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out
