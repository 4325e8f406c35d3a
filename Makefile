# DragKit developer commands. `make setup` is called by the others and is idempotent.
PY := .venv/bin/python

.PHONY: setup test test-fast test-browser lint ui demo clean

setup:
	@bash scripts/setup.sh

# The one test command (CI runs exactly this): lint, then every tier (unit, comfy, server).
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest tests

# Unit + in-process tiers without the slow tests (LoRA training, ToyBench slices): a quick loop while editing.
test-fast: setup
	$(PY) -m pytest tests/unit tests/comfy -q -m "not slow"

# The browser tier only: Chromium + playwright-core on the real frontend (screenshots in outputs/browser/).
test-browser: setup
	$(PY) -m pytest tests/browser -q

# ruff's lint rules (pyproject.toml). The code is not kept in ruff format's style, so no format check.
lint: setup
	$(PY) -m ruff check .

# A local ComfyUI with DragKit loaded (models go in .comfyui/base/models/).
ui: setup
	$(PY) scripts/comfy_server.py --port $${PORT:-8188}

demo: setup
	$(PY) scripts/demo.py

clean:
	rm -rf .venv .comfyui .cache outputs
