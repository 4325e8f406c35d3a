"""Start and stop a real ComfyUI server with only DragKit loaded (tests, `make ui`, `make demo`).

    python scripts/comfy_server.py [--port N] [--base DIR] [--newest-frontend]   # serves until Ctrl-C
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACK_NAME = "dragkit"
log = logging.getLogger("dragkit.server")


def comfyui_dir() -> Path:
    """The ComfyUI source tree: $COMFYUI_DIR, else the runtime `make setup` unpacked."""
    path = Path(os.environ.get("COMFYUI_DIR") or REPO / ".comfyui" / "ComfyUI")
    if not (path / "main.py").is_file():
        raise FileNotFoundError(f"no ComfyUI at {path}: run `make setup` (or set COMFYUI_DIR)")
    return path


def newest_frontend() -> tuple[str, Path]:
    """The newest frontend the browser tier tests (scripts/frontend-newest.txt): its version and the folder
    `scripts/setup.sh --dev` unpacked it into (served with --front-end-root)."""
    spec = next(line for line in (REPO / "scripts" / "frontend-newest.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    version = spec.split("==", 1)[1].split()[0]
    path = REPO / ".comfyui" / f"frontend-{version}"
    if not (path / "index.html").is_file():
        raise FileNotFoundError(f"no frontend {version} at {path}: run `make setup-dev`")
    return version, path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_base(base: Path) -> Path:
    """A ComfyUI base directory whose custom_nodes/ holds a link to this repo, and nothing else."""
    for sub in ("models/checkpoints", "models/loras", "custom_nodes", "input", "output", "temp", "user/default"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / PACK_NAME
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    settings = base / "user" / "default" / "comfy.settings.json"
    if not settings.exists():  # otherwise a templates dialog covers the canvas on first load
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    return base


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    base: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(base: Path, port: int | None = None, timeout: float = 120.0, extra_args: tuple[str, ...] = (),
          env: dict[str, str] | None = None, front_end_root: Path | None = None) -> Server:
    """Start ComfyUI on a free loopback port; return once /system_stats answers. ``env``: extra environment
    variables for the server process; ``front_end_root``: serve that frontend instead of the pinned package's."""
    prepare_base(base)
    port = port or free_port()
    log_path = base / "server.log"
    cmd = [
        sys.executable, str(comfyui_dir() / "main.py"), "--cpu", "--use-pytorch-cross-attention",
        "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base),
        "--disable-auto-launch", "--disable-api-nodes", "--database-url", "sqlite:///:memory:",
        "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME, *extra_args,
    ]
    if front_end_root is not None:
        cmd += ["--front-end-root", str(front_end_root)]
    out = open(log_path, "w")
    process = subprocess.Popen(cmd, cwd=comfyui_dir(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, **(env or {})})
    server = Server(process, port, base, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {process.returncode}:\n{server.log_text()[-4000:]}")
        try:
            with urllib.request.urlopen(server.url + "/system_stats", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s:\n{server.log_text()[-4000:]}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--base", type=Path, default=REPO / ".comfyui" / "base")
    parser.add_argument("--newest-frontend", action="store_true",
                        help="serve the newest frontend the tests use (scripts/frontend-newest.txt; make setup-dev)")
    args = parser.parse_args()
    server = start(args.base, args.port, front_end_root=newest_frontend()[1] if args.newest_frontend else None)
    # The server runs in its own session; stop it when we are told to stop, not only on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("ComfyUI with DragKit: %s  (log: %s; Ctrl-C stops it)", server.url, server.log_path)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
