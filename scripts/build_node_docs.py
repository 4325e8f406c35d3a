"""Writes each node's help page, web/docs/<node id>.md, from its schema (description, inputs, outputs, tooltips) and
the README section that explains it. The ComfyUI frontend shows these pages in its node documentation panel
(it fetches /extensions/<pack>/docs/<node id>.md for a custom node); tests/comfy/test_node_docs.py keeps them in
step with the nodes.

    python scripts/build_node_docs.py          # rewrite the pages
    python scripts/build_node_docs.py --check  # exit 1 if a page is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "web" / "docs"
# Nodes documented under a README heading that does not start with their name.
SECTIONS = {"DragKitToyModelLoader": "The toy world and the bundled toy model"}


def readme_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def readme_section(node_cls, readme: str) -> str:
    """The README heading that documents the node (### <NAME>…, or SECTIONS)."""
    wanted = SECTIONS.get(node_cls.NODE_ID)
    for line in readme.splitlines():
        heading = line.lstrip("#").strip()
        if not line.startswith("#"):
            continue
        if heading == wanted or (wanted is None and line.startswith("### ")
                                 and re.match(rf"{node_cls.NAME}\b", heading)):
            return heading
    raise LookupError(f"README.md has no section for {node_cls.NODE_ID}")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _kind(spec) -> str:
    from comfy_api.latest import io

    if isinstance(spec, io.Combo.Input):
        return "one of " + ", ".join(f"`{option}`" for option in spec.options)
    return str(spec.get_io_type())


def _default(spec) -> str:
    default = getattr(spec, "default", None)
    if default is None:
        return ""
    if isinstance(default, bool):
        return "on" if default else "off"
    return f"`{default}`" if default != "" else "(empty)"


def node_page(node_cls, readme: str, repository: str) -> str:
    schema = node_cls.define_schema()
    heading = readme_section(node_cls, readme)
    lines = [f"# {schema.display_name}", "", schema.description, "", "## Inputs", "",
             "| input | type | default | what it does |", "|---|---|---|---|"]
    for spec in schema.inputs:
        name = f"{spec.id} (optional)" if spec.optional else spec.id
        lines.append(f"| {name} | {_cell(_kind(spec))} | {_cell(_default(spec))} | {_cell(spec.tooltip or '')} |")
    lines += ["", "## Outputs", "", "| output | type | what it is |", "|---|---|---|"]
    for spec in schema.outputs:
        lines.append(f"| {spec.display_name or spec.io_type} | {spec.io_type} | {_cell(spec.tooltip or '')} |")
    lines += ["", f"More — the method, its settings, example workflows and known limits: "
              f"[README: {heading}]({repository}#{readme_anchor(heading)})", ""]
    return "\n".join(lines)


def pages() -> dict[Path, str]:
    """Every node's page (the toy loader's too, whether or not the toy weights are in this checkout)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import comfyenv

    comfyenv.setup()
    from dragkit.nodes import NODES
    from dragkit.nodes.toy_model import ToyModelLoader

    readme = (REPO / "README.md").read_text()
    with open(REPO / "pyproject.toml", "rb") as f:
        repository = tomllib.load(f)["project"]["urls"]["Repository"]
    nodes = NODES + [ToyModelLoader] * (ToyModelLoader not in NODES)
    return {DOCS / f"{node.NODE_ID}.md": node_page(node, readme, repository) for node in nodes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report pages that are out of date")
    args = parser.parse_args()
    wanted = pages()
    stale = sorted(str(p.relative_to(REPO)) for p, text in wanted.items() if not p.exists() or p.read_text() != text)
    extra = sorted(str(p.relative_to(REPO)) for p in DOCS.glob("*.md") if p not in wanted)
    if args.check:
        for path in stale + extra:
            print(f"out of date: {path}")
        return 1 if stale or extra else 0
    DOCS.mkdir(parents=True, exist_ok=True)
    for path, text in wanted.items():
        path.write_text(text)
    for path in extra:
        (REPO / path).unlink()
    print(f"wrote {len(wanted)} pages into {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
