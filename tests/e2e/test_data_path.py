"""The local data path end to end: data → 2-process training → S3 → serving → cache → metrics → alert rules."""

import shutil
from pathlib import Path

import pytest

from workloads.common import metrics
from workloads.demo.datapath import DemoResult, Story, run


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return run(60, Path(tmp_path_factory.mktemp("demo")), Story())


def test_training_loss_fell(story: DemoResult) -> None:
    assert story.losses[-1] < 0.8 * story.losses[0], story.losses


def test_checkpoints_were_committed(story: DemoResult) -> None:
    assert story.checkpoints >= 1


def test_repeat_completion_is_a_cache_hit_with_the_same_text(story: DemoResult) -> None:
    (first_source, first_text), (second_source, second_text) = story.completions
    assert (first_source, second_source) == ("model", "cache hit")
    assert first_text == second_text


def test_metrics_are_present_and_counting(story: DemoResult) -> None:
    assert story.metrics[metrics.INFERENCE_REQUESTS_TOTAL] >= 2
    assert story.metrics[metrics.INFERENCE_CACHE_HITS_TOTAL] == 1
    assert story.metrics[metrics.INFERENCE_GENERATED_TOKENS_TOTAL] > 0


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package is not installed")
def test_prometheus_loads_and_evaluates_the_repo_rules(story: DemoResult) -> None:
    assert sum(story.rule_states.values()) >= 8
