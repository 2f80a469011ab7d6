# Every target bootstraps what it needs, so `make preview` and `make test` work on a fresh clone.
# The interpreter for new venvs: 3.11 to 3.13 are supported (pyproject.toml requires-python); the oldest one found.
PYTHON ?= $(firstword $(foreach v,3.11 3.12 3.13,$(shell command -v python$(v) 2>/dev/null)) python3)
VENV := .venv
BIN := $(VENV)/bin
TF_VENV := .venv-tf
VLLM_VENV := .venv-vllm
PYTEST_ARGS ?=

.PHONY: lock setup setup-workloads setup-tf setup-vllm preview test test-infra test-workloads test-tf lint bench gpu-wheels soak demo clean

# Infra + tooling only: enough for `make preview` (no torch download). Every transitive dependency comes from the
# lock at its pinned version and hash; pip shows its progress, as the first run downloads a few hundred MB.
INFRA_LOCK := requirements/infra.lock
setup: $(VENV)/.infra
$(VENV)/.infra: pyproject.toml $(INFRA_LOCK)
	@echo "==> Installing the infra toolchain (Pulumi, providers, linters, test tools) into $(VENV) from $(INFRA_LOCK);" \
		"the first run takes a few minutes"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on --upgrade pip
	$(BIN)/pip install --progress-bar on --require-hashes -r $(INFRA_LOCK)
	$(BIN)/pip install --no-deps -e .
	touch $@

# Re-resolve the lock after changing the infra or dev pins in pyproject.toml (pip-tools in a throwaway venv). The
# image pins constrain it, so packages both sets share (boto3, botocore) stay at the versions the images run.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install pip-tools==7.6.2
	.venv-lock/bin/pip-compile --generate-hashes --extra dev --strip-extras --allow-unsafe --no-header \
		--no-emit-index-url --no-emit-find-links $(addprefix -c ,$(IMAGE_PINS)) -o $(INFRA_LOCK) pyproject.toml
	rm -rf .venv-lock

# The PyTorch trainer and the server share the main venv (no protobuf clash with torch). The images install their
# requirements with --no-deps at exact versions; the same files constrain this venv, so the tests run those versions.
IMAGE_PINS := images/trainer-torch/requirements.txt images/serve/requirements.txt
setup-workloads: $(VENV)/.workloads
$(VENV)/.workloads: $(VENV)/.infra pyproject.toml $(IMAGE_PINS)
	$(BIN)/pip install -q -e '.[dev,torch,serve]' $(addprefix -c ,$(IMAGE_PINS))
	touch $@

# TensorFlow needs protobuf >= 6.31; pulumi-policy pins 5.29. So TF (trainer and TF-enabled server) gets its own venv.
setup-tf: $(TF_VENV)/.installed
$(TF_VENV)/.installed: images/trainer-tf/requirements.txt images/serve-tf/requirements.txt tests/workloads/trainer_tf/requirements-test.txt
	test -x $(TF_VENV)/bin/python || $(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/pip install -q --upgrade pip
	$(TF_VENV)/bin/pip install -q -r images/trainer-tf/requirements.txt -r images/serve-tf/requirements.txt \
		-r tests/workloads/trainer_tf/requirements-test.txt
	touch $@

# vLLM's CPU build pins its own torch, transformers and fastapi, so it gets its own venv (the tests' upstream).
VLLM_PINS := tests/support/vllm-requirements.txt
setup-vllm: $(VLLM_VENV)/.installed
$(VLLM_VENV)/.installed: $(VLLM_PINS)
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q --no-deps -r $(VLLM_PINS)
	touch $@

preview: setup
	$(BIN)/modelplane preview

test: test-infra test-workloads test-tf

test-infra: setup
	$(BIN)/python -m pytest -q tests/infra tests/stacks tests/policies tests/conformance $(PYTEST_ARGS)

test-workloads: setup-workloads setup-vllm
	$(BIN)/python -m pytest -q tests --ignore=tests/infra --ignore=tests/stacks --ignore=tests/policies --ignore=tests/conformance --ignore=tests/bench \
		--ignore=tests/soak --ignore=tests/workloads/trainer_tf $(PYTEST_ARGS)

test-tf: setup-tf
	$(TF_VENV)/bin/python -m pytest -q tests/workloads/trainer_tf $(PYTEST_ARGS)

lint: setup-workloads
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint images/*/Dockerfile

bench: setup-workloads setup-tf setup-vllm
	$(BIN)/python -m pytest -q -s tests/bench --ignore=tests/bench/test_bench_trainer_tf.py
	$(TF_VENV)/bin/python -m pytest -q -s tests/bench/test_bench_trainer_tf.py

# Wheels for the GPU figures on a lent GPU machine (tests/bench/gpu_trainer.sh; Python 3.12 there, no registry): the
# trainer image's pins but numpy (the machine has torch, numpy and their own needs) and moto's server from the lock.
GPU_WHEELS := .whl
MOTO_SERVER_PINS := moto flask flask-cors werkzeug responses xmltodict cryptography cffi pycparser jinja2 markupsafe \
	blinker itsdangerous requests charset-normalizer certifi
gpu-wheels: setup
	mkdir -p $(GPU_WHEELS)
	{ grep -E '^[A-Za-z0-9_.-]+==' images/trainer-torch/requirements.txt | grep -v '^numpy=='; \
	  grep -E '^($(subst $(eval) ,|,$(MOTO_SERVER_PINS)))==' $(INFRA_LOCK) | sed 's/ *\\$$//'; } | sort -u > $(GPU_WHEELS)/pins.txt
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(addprefix --platform ,manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_34_x86_64) \
		-d $(GPU_WHEELS) -r $(GPU_WHEELS)/pins.txt
	du -sh $(GPU_WHEELS)

# The server at ~80% of its measured capacity for 10 minutes against a real Redis restarted twice (SOAK_DURATION_S=60
# for a short run). A fixed --basetemp keeps the figures (build/soak/*/soak.md) from other pytest runs' temp rotation.
soak: setup-workloads
	mkdir -p build && SOAK_DURATION_S=$${SOAK_DURATION_S:-600} $(BIN)/python -m pytest -q -s tests/soak --basetemp=build/soak $(PYTEST_ARGS)

# The data path on one machine: S3 (moto) + Redis → torchrun training → serving → cache → metrics → vLLM behind the
# gateway → alert rules.
demo: setup-workloads setup-vllm
	$(BIN)/python -m workloads.demo

clean:
	rm -rf $(VENV) $(TF_VENV) $(VLLM_VENV) $(GPU_WHEELS) .mypy_cache .ruff_cache .pytest_cache
