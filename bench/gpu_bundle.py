"""Pack what a bare GPU machine lacks for ``bench/gpu.py`` into ``.gpu/`` (git-ignored; the device tool carries it).

    .venv/bin/python bench/gpu_bundle.py            # writes .gpu/ComfyUI (trimmed) and .gpu/wheels/
    .venv/bin/python bench/gpu_bundle.py --check    # only list what the smoke run imports that the GPU image lacks

The GPU machine has torch, numpy, transformers, safetensors, einops and more (its package list is in
``DEVICE_PACKAGES``, from the device tool's KINDS.md), no ComfyUI and no network. The bundle is ComfyUI's source
tree without its tests and temp folders, and pure-Python wheels of the packages ComfyUI imports in-process that the
image does not have (found by running ``bench/gpu.py --cpu-smoke`` here and comparing what it imported). It must stay
well under the 64 MiB a device call can carry together with the working tree; the script says its size.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / ".gpu"
SKIP = {"temp", "tests", "tests-unit", "output", "input", "user", "__pycache__", ".git", ".github"}
# Top-level import names the GPU image provides (KINDS.md, read 2026-11-17), besides the standard library.
DEVICE_PACKAGES = set("""
absl accelerate aiofiles aiohttp aiosignal anyio attr attrs certifi charset_normalizer click cloudpickle cupy
einops filelock fsspec h11 h5py httpcore httpx huggingface_hub idna iniconfig jinja2 jax markupsafe mpmath
multidict networkx numpy packaging pandas peft PIL pluggy psutil pydantic pydantic_core pygments pytest
pytest_timeout yaml regex requests rich safetensors scipy sentencepiece setuptools six sympy tokenizers torch
torchaudio torchvision tqdm transformers triton typing_extensions urllib3 yarl zipp _pytest google cuda torchgen
""".split())
# Imported here only as dependencies of packages the image has in other versions (this venv's huggingface_hub 2.x
# pulls httpx2/httpcore2/truststore; the image's 1.x does not), or not packages at all (Cython's runtime module).
INDIRECT = {"httpx2", "httpcore2", "truststore", "cython_runtime"}
LOG = logging.getLogger("dragkit.gpu_bundle")


def imported_third_party() -> set[str]:
    """Top-level modules the smoke run imports that are neither the standard library nor DragKit/ComfyUI."""
    probe = (
        "import sys, runpy; sys.argv = ['gpu.py', '--cpu-smoke', '--out', sys.argv[1]];\n"
        "try:\n    runpy.run_path('bench/gpu.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "import json; print('MODULES=' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(REPO / "outputs" / "gpu-smoke")], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    names = set(json.loads(out.split("MODULES=")[-1]))
    comfy = {p.name.removesuffix(".py") for p in (REPO / ".comfyui" / "ComfyUI").iterdir()}
    local = {p.stem for folder in ("scripts", "bench") for p in (REPO / folder).glob("*.py")} | {"dragkit"}
    return {n for n in names if n not in sys.stdlib_module_names and n not in comfy and n not in local
            and not n.startswith("_")}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    missing = sorted(imported_third_party() - DEVICE_PACKAGES - INDIRECT)
    LOG.info("imported by the smoke run and missing on the GPU image: %s", ", ".join(missing) or "nothing")
    if args.check:
        return 0
    source = REPO / ".comfyui" / "ComfyUI"
    shutil.rmtree(BUNDLE, ignore_errors=True)
    shutil.copytree(source, BUNDLE / "ComfyUI", ignore=lambda folder, names: [n for n in names if n in SKIP])
    wheels = BUNDLE / "wheels"
    wheels.mkdir(parents=True)
    # Import names → distributions (and their own pure-Python needs).
    distributions = {"torchsde": ["torchsde", "trampoline"], "kornia": ["kornia", "kornia_rs"],
                     "spandrel": ["spandrel"], "av": ["av"], "comfyui_frontend_package": []}
    wanted = sorted({d for name in missing for d in distributions.get(name, [name])})
    if wanted:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                        "--platform", "manylinux2014_x86_64", "-c", str(REPO / "scripts" / "constraints.txt"),
                        "-d", str(wheels), *wanted], check=True)
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    LOG.info("wrote %s: ComfyUI + %d wheels (%s), %.1f MiB", BUNDLE, len(list(wheels.iterdir())),
             ", ".join(wanted) or "none", size / 2**20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
