"""The README's trainer section is generated from the settings model and kept up to date."""

from __future__ import annotations

from workloads.trainer_torch.config import TrainSettings
from workloads.trainer_torch.docs import HEADING, README, rewrite, section


def test_readme_trainer_section_is_up_to_date() -> None:
    assert section() in README.read_text(), (
        "README.md's trainer settings are stale; regenerate with `python -m workloads.trainer_torch.docs --write`")


def test_every_flag_appears_with_its_env_name_and_default() -> None:
    text = section()
    for name in TrainSettings.model_fields:
        assert f"| `{TrainSettings.flag_name(name)}` | `{TrainSettings.env_name(name)}` |" in text
    assert "| `--data` | `MODELPLANE_TRAIN_DATA` | required |" in text
    assert "| `--micro-batch` | `MODELPLANE_TRAIN_MICRO_BATCH` | 8 |" in text
    assert "| `--local-dir` | `MODELPLANE_TRAIN_LOCAL_DIR` | $TMPDIR/modelplane-trainer |" in text


def test_rewrite_replaces_only_the_trainer_section() -> None:
    readme = f"# p\n\n## A\n\na\n\n{HEADING}\n\nold\n\n## B\n\nb\n"
    assert rewrite(readme) == f"# p\n\n## A\n\na\n\n{section()}\n## B\n\nb\n"
    assert rewrite("# p\n") == f"# p\n\n{section()}"
