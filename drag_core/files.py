"""Files DragKit writes: atomically (a temporary file in the same folder, flushed to disk, then renamed over the
target), so a reader or a killed process sees the old file or the whole new one, never a part."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(temporary path)`` writes the content; then it becomes ``path``. Nothing is left on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata))


def write_json(path: Path, data: object) -> None:
    """``data`` as indented JSON at ``path`` (folders made as needed)."""
    import json

    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2)))
