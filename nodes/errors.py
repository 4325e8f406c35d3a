"""Clear, user-facing errors: every message names the node, the input and what to do."""

from __future__ import annotations


class DragKitInputError(ValueError):
    """Bad input to a DragKit node. ComfyUI shows the message in the UI and in /history."""

    def __init__(self, node: str, input_name: str, message: str) -> None:
        super().__init__(f"DragKit {node}: input '{input_name}': {message}")
        self.node = node
        self.input_name = input_name


class DragKitNodeError(RuntimeError):
    """A DragKit node could not do its work for a reason outside its inputs (a missing file, a full disk);
    the message names the node, what happened and what to do."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"DragKit {node}: {message}")
        self.node = node
