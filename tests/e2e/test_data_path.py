"""The local data path end to end: data → 2-process training → S3 → serving → cache → metrics → vLLM behind the
gateway → real-time recommendation over Kafka → alert rules."""

import shutil
from pathlib import Path

import pytest

from workloads.common import metrics
from workloads.common.uri import S3Uri
from workloads.demo import llm
from workloads.demo.datapath import DemoResult, Story, run
from workloads.demo.devservers import VLLM_PYTHON
from workloads.demo.recommend import CLUSTERS, FOLLOWED, NEW_CLUSTER, NEW_EVENTS, STREAM_EVENTS


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


@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no .venv-vllm: run `make setup-vllm`")
def test_vllm_answers_the_chat_through_the_gateway_and_the_repeat_is_a_cache_hit(story: DemoResult) -> None:
    assert story.llm is not None
    first, repeat = story.llm.turns
    assert (first.cache, repeat.cache) == ("miss", "hit")
    assert first.text and repeat.text == first.text
    assert story.llm.gateway_metrics[metrics.GATEWAY_CACHE_HITS_TOTAL] == 1
    assert story.llm.gateway_metrics[metrics.GATEWAY_CACHE_MISSES_TOTAL] == 1
    assert story.llm.gateway_metrics[metrics.GATEWAY_UPSTREAM_ERRORS_TOTAL] == 0


def test_without_the_vllm_venv_only_that_step_is_skipped_saying_how_to_add_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(llm, "VLLM_PYTHON", tmp_path / "no-venv" / "python")
    said: list[str] = []
    assert llm.serve_with_vllm(said.append, tmp_path, S3Uri.parse("s3://models/demo"), redis_port=1) is None
    assert len(said) == 1 and "make setup-vllm" in said[0], said


def test_the_recommender_beats_popularity_and_follows_a_users_new_events_within_seconds(story: DemoResult) -> None:
    step = story.recommend
    assert step is not None
    assert step.recall["model"] > step.recall["popularity"] + 0.1, step.recall
    assert step.followed_in_s is not None and step.followed_in_s < 10, step
    assert sum(1 for item in step.after if int(item.removeprefix("i")) % CLUSTERS == NEW_CLUSTER) >= FOLLOWED
    assert step.before != step.after


def test_the_processor_applied_every_event_and_caught_up(story: DemoResult) -> None:
    step = story.recommend
    assert step is not None
    assert step.processor_metrics["events_applied"] == STREAM_EVENTS + NEW_EVENTS
    assert step.processor_metrics["consumer_lag"] == 0
    assert 0 < step.processor_metrics["freshness_mean_s"] < 5


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package is not installed")
def test_prometheus_loads_and_evaluates_the_repo_rules(story: DemoResult) -> None:
    assert sum(story.rule_states.values()) >= 8
