# DragKit developer commands. `make setup` (what the demo and `make ui` need: venv, torch, the ComfyUI runtime) and
# `make setup-dev` (that plus the test tools, Chromium and the newest frontend) are called by the others and are
# idempotent.
PY := .venv/bin/python

.PHONY: setup setup-dev test test-fast test-browser lint ui demo soak gpu gpu-smoke gpu-bundle clean

setup:
	@bash scripts/setup.sh

setup-dev:
	@bash scripts/setup.sh --dev

# The one test command (CI runs exactly this): lint, then every tier (unit, comfy, server).
test: setup-dev
	$(PY) -m ruff check .
	$(PY) -m pytest tests

# Unit + in-process tiers without the slow tests (LoRA training, ToyBench slices): a quick loop while editing.
test-fast: setup-dev
	$(PY) -m pytest tests/unit tests/comfy -q -m "not slow"

# The browser tier only: Chromium + playwright-core on the real frontend (screenshots in outputs/browser/).
test-browser: setup-dev
	$(PY) -m pytest tests/browser -q

# ruff's lint rules (pyproject.toml). The code is not kept in ruff format's style, so no format check.
lint: setup-dev
	$(PY) -m ruff check .

# A local ComfyUI with DragKit loaded (models go in .comfyui/base/models/).
ui: setup
	$(PY) scripts/comfy_server.py --port $${PORT:-8188}

demo: setup
	$(PY) scripts/demo.py

# The release soak (docs/RELIABILITY.md): 100 consecutive edits through one server with its memory sampled, and an
# interrupt in every long node; make test runs the same tests with 20 edits.
soak: setup-dev
	DRAGKIT_SOAK_EDITS=$${EDITS:-100} $(PY) -m pytest tests/server/test_soak.py -q -s

# The GPU check (bench/gpu.py): every graph on a full-size random SD1.5 at 512 px, timed, then the GPU tests.
gpu: setup-dev
	$(PY) bench/gpu.py --tests

# The same script at toy sizes on the CPU (a rehearsal; make test runs it too).
gpu-smoke: setup-dev
	$(PY) bench/gpu.py --cpu-smoke

# .gpu/: what a bare GPU machine lacks (a trimmed ComfyUI tree, wheels if any); bench/gpu_run.sh runs it there.
gpu-bundle: setup-dev
	$(PY) bench/gpu_bundle.py

clean:
	rm -rf .venv .comfyui .cache outputs
