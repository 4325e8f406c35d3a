"""Every node's help page (web/docs/<node id>.md, shown by the frontend's node documentation panel) is generated from
its schema and kept up to date: scripts/build_node_docs.py."""

from __future__ import annotations

import re


def test_every_node_has_an_up_to_date_help_page(comfy):
    import build_node_docs

    wanted = build_node_docs.pages()
    assert len(wanted) >= 12
    assert sorted(build_node_docs.DOCS.glob("*.md")) == sorted(wanted), "run python scripts/build_node_docs.py"
    for path, text in wanted.items():
        assert path.read_text() == text, f"{path.name} is out of date: run python scripts/build_node_docs.py"


def test_a_page_shows_the_method_every_input_and_the_readme_section(comfy):
    import build_node_docs
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize

    page = (build_node_docs.DOCS / "DragKitMotionSupervisionOptimize.md").read_text()
    schema = MotionSupervisionOptimize.define_schema()
    assert page.startswith("# MotionSupervisionOptimize\n") and schema.description in page
    for spec in schema.inputs:
        assert re.search(rf"^\| {spec.id}( \(optional\))? \|", page, re.M), spec.id
    assert "| precision | one of `auto`, `fp32`, `fp16`, `bf16` | `auto` |" in page
    (link,) = re.findall(r"\[README: MotionSupervisionOptimize\]\((\S+)\)", page)
    assert link.endswith("#motionsupervisionoptimize")
    assert build_node_docs.readme_anchor("DDIMSample — dragging a generated image") == "ddimsample--dragging-a-generated-image"
    assert build_node_docs.readme_anchor("RegionWarp (Inpaint4Drag)") == "regionwarp-inpaint4drag"
