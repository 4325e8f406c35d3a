"""The browser tier: real Chromium (playwright-core) on the real ComfyUI frontend and server.

For each frontend (the one ComfyUI 0.3.75 pins, and the newest, scripts/frontend-newest.txt, served with
--front-end-root) one Node run (run.mjs) drives the page through every example workflow in the classic and the Vue
("Nodes 2.0") renderer, loads the workflows release 0.1.0 saved, and queues workflows from the Run button; the tests
below assert on what it recorded, once per frontend. Screenshots land in outputs/browser/<frontend>/. Needs
`make setup-dev` (Chromium, `npm ci` here, the newest frontend).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import comfy_client
import comfy_server
from dragkit.drag_core.points import parse_points

# The frontend ComfyUI 0.3.75 pins, as scripts/requirements-runtime.txt installs it.
PINNED_FRONTEND = next(line.split("==")[1].strip() for line in
                       (Path(__file__).resolve().parents[2] / "scripts" / "requirements-runtime.txt").read_text().splitlines()
                       if line.startswith("comfyui-frontend-package=="))

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
TOY_WORKFLOW = REPO / "example_workflows" / "dragdiffusion_toy.json"
DRAGNOISE_TOY_WORKFLOW = REPO / "example_workflows" / "dragnoise_toy.json"
GOODDRAG_TOY_WORKFLOW = REPO / "example_workflows" / "gooddrag_toy.json"
WARP_TOY_WORKFLOW = REPO / "example_workflows" / "warp_toy.json"
TOY_WEIGHTS = REPO / "models" / "toy" / "dragkit_toy.safetensors"
OUT = REPO / "outputs" / "browser"
RENDERERS = ("classic", "vue")
FRONTENDS = ("pinned", "newest")
LEGACY = REPO / "tests" / "fixtures" / "v0.1.0"
# The module fixture (server, both renderers, the toy run as shipped) runs inside the first test's timeout.
pytestmark = pytest.mark.timeout(1500)
# The clicks of run.mjs, as fractions of the image size.
PAIRS = [((0.25, 0.3), (0.5, 0.35)), ((0.3, 0.7), (0.3, 0.5))]
STROKE = ((0.2, 0.15), (0.6, 0.15))


def _queue_plan() -> dict:
    """The toy workflow runs exactly as shipped; without the toy weights the SD1.5 one runs on the random
    mini checkpoint with small settings (proves the UI → server path, not an edit)."""
    if TOY_WORKFLOW.exists() and TOY_WEIGHTS.exists():
        return {"workflow": str(TOY_WORKFLOW), "overrides": {}, "timeoutSeconds": 600}
    return {
        "workflow": str(REPO / "example_workflows" / "dragdiffusion_sd15.json"),
        "overrides": {
            "1": {"ckpt_name": comfy_client.MINI_CHECKPOINT},
            "2": {"image": comfy_client.TEST_IMAGE},
            "4": {"steps": 2, "batch_size": 2, "resolution": 64},
            "7": {"steps": 10},
            "8": {"max_iterations": 3},
        },
        "timeoutSeconds": 420,
    }


def _warp_queue_plans() -> list[dict]:
    """The warp workflows: the toy one exactly as shipped; the SD1.5 and SDXL ones on the random mini SD1.5
    checkpoint, the test picture and 2 steps (their graphs queue and run; no edit is judged)."""
    small = {"1": {"ckpt_name": comfy_client.MINI_CHECKPOINT}, "2": {"image": comfy_client.TEST_IMAGE}, "9": {"steps": 2}}
    plans = [{"workflow": str(REPO / "example_workflows" / f"warp_{name}.json"), "overrides": small, "timeoutSeconds": 300}
             for name in ("sd15", "sdxl")]
    if TOY_WEIGHTS.exists():
        plans.insert(0, {"workflow": str(WARP_TOY_WORKFLOW), "overrides": {}, "timeoutSeconds": 300})
    return plans


def _more_queue_plans() -> list[dict]:
    """After the DragDiffusion toy run: the warp workflows, then DragNoise's and GoodDrag's toy workflows as shipped
    (DragNoise's LoRA comes from the cache the first run filled): the editor must show tracked handles after every
    optimizer."""
    plans = _warp_queue_plans()
    if TOY_WEIGHTS.exists():
        plans += [{"workflow": str(workflow), "overrides": {}, "timeoutSeconds": 420}
                  for workflow in (DRAGNOISE_TOY_WORKFLOW, GOODDRAG_TOY_WORKFLOW)]
    return plans


@pytest.fixture(scope="module")
def base(tmp_path_factory, mini_checkpoint) -> Path:
    """One server folder for both frontends' runs (one after the other): the second finds the LoRAs the first
    trained in the cache. No input pictures at first (the editor must upload the examples' own)."""
    folder = comfy_server.prepare_base(tmp_path_factory.mktemp("browser-base"))
    (folder / "models" / "checkpoints" / comfy_client.MINI_CHECKPOINT).symlink_to(mini_checkpoint)
    comfy_client.sample_image().save(folder / "input" / comfy_client.TEST_IMAGE)
    return folder


@pytest.fixture(scope="module", params=FRONTENDS)
def run(request, base) -> dict:
    node = shutil.which("node")
    assert node, "node is missing: run `make setup-dev`"
    assert (REPO / "scripts" / "browser" / "node_modules" / "playwright-core").is_dir(), \
        "playwright-core is missing: run `make setup-dev` (npm ci in scripts/browser)"
    assert Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists(), "Chromium is missing: run `make setup-dev`"
    assert WORKFLOWS, "no example workflows"
    version, root = (PINNED_FRONTEND, None) if request.param == "pinned" else comfy_server.newest_frontend()
    for uploaded in (base / "input").glob("dragkit_*_input*.png"):  # each run uploads the examples' pictures again
        uploaded.unlink()
    out = OUT / request.param
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    results_path = out / "results.json"
    config = {
        "url": None, "workflows": [str(w) for w in WORKFLOWS], "outDir": str(out), "resultsPath": str(results_path),
        "renderers": list(RENDERERS), "queue": _queue_plan(), "moreQueues": _more_queue_plans(),
        "legacy": [str(w) for w in sorted((LEGACY / "workflows").glob("*.json"))],
    }
    server = comfy_server.start(base, front_end_root=root)
    try:
        config["url"] = server.url
        config_path = base / "browser-config.json"
        config_path.write_text(json.dumps(config))
        done = subprocess.run([node, str(HERE / "run.mjs"), str(config_path)], cwd=HERE, capture_output=True,
                              text=True, timeout=840)
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        results["stderr"] = done.stderr[-4000:]
        results["server_log"] = server.log_text()
        results["base"] = str(base)
        results["expected_frontend"] = version
    finally:
        server.stop()
    assert done.returncode == 0 and not results.get("error"), f"run.mjs failed: {results.get('error')}\n{done.stderr[-4000:]}"
    return results


def test_the_frontend_under_test_is_the_one_served(run):
    assert run["frontend"] == run["expected_frontend"]


def test_every_node_has_its_help_page_where_the_frontend_looks(run):
    from dragkit.nodes import NODE_CLASS_MAPPINGS

    assert sorted(run["help"]) == sorted(NODE_CLASS_MAPPINGS)
    for node_id, page in run["help"].items():
        assert page["status"] == 200, (node_id, page["status"])
        assert page["text"] == (REPO / "web" / "docs" / f"{node_id}.md").read_text(), node_id


def test_workflows_saved_by_0_1_0_load_and_give_the_same_prompts(run):
    """Release 0.1.0's example workflows (widget values by position), loaded in this frontend with today's nodes,
    give exactly the API graphs 0.1.0's nodes gave in frontend 1.32.9 (tests/fixtures/v0.1.0)."""
    expected = json.loads((LEGACY / "prompts.json").read_text())
    for renderer in RENDERERS:
        got = run["legacy"][renderer]
        assert sorted(got) == sorted(expected), renderer
        for name, prompt in expected.items():
            assert got[name]["prompt"] == prompt, (renderer, name)


def test_the_uploaded_example_pictures_are_offered_by_load_image(run):
    """Opening an example workflow uploads its picture; LoadImage must then list it. Frontend 1.58 otherwise reports
    "Media input missing" (its check: the value is not in the file list it loaded at start)."""
    opened = [(renderer, name, r["loadImages"]) for renderer, name, r in _each(run)]
    opened += [(renderer, name, legacy["loadImages"]) for renderer in RENDERERS
               for name, legacy in run["legacy"][renderer].items()]
    for renderer, name, images in opened:
        assert images and all(image["listed"] for image in images), (renderer, name, images)


def _close(a, b, tol):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def _each(run):
    for renderer in RENDERERS:
        for workflow in WORKFLOWS:
            yield renderer, workflow.stem, run["renderers"][renderer][workflow.stem]


def test_every_example_workflow_loads_with_its_picture_in_both_renderers(run):
    for renderer, name, r in _each(run):
        shipped = r["edit"]["shipped"]
        assert shipped["state"]["hasImage"], (renderer, name)
        # The shipped points are the ones the editor shows, on the picture's pixel grid.
        value = parse_points(shipped["value"])
        assert (value.width, value.height) == (shipped["state"]["width"], shipped["state"]["height"])
        assert len(shipped["state"]["pairs"]) == len(value.pairs) >= 1, (renderer, name)
        assert len(r["prompt"]) >= 10, (renderer, name)  # the graph converts to an API prompt
        if renderer == "vue":
            assert r["vueNodes"] >= len(r["prompt"]), "the Vue renderer did not draw the nodes"
        else:
            assert r["vueNodes"] == 0


def test_mouse_places_moves_and_deletes_pairs(run):
    for renderer, name, r in _each(run):
        edit = r["edit"]
        w, h = edit["size"]
        tol = max(1.5, max(w, h) / 256)  # a screen pixel in image pixels, and rounding to 0.1 px
        assert edit["cleared"] == "", (renderer, name)  # Clear in both modes empties the value
        assert len(edit["threePairs"]["points"]) == 3
        # Delete removes the selected pair (and not the node), the editor's Undo restores it.
        assert (edit["fourPairs"], edit["afterDelete"], edit["afterUndo"], edit["afterSecondDelete"]) == (4, 3, 4, 3)
        assert edit["nodeStillThere"]
        points = parse_points(edit["pointsOnly"])
        assert len(points.pairs) == 2, "right-click should remove the third pair"
        for (handle, target), (fh, ft) in zip(points.pairs, PAIRS):
            assert _close(handle, (fh[0] * w, fh[1] * h), tol), (renderer, name, handle)
            assert _close(target, (ft[0] * w, ft[1] * h), tol), (renderer, name, target)  # pair 1's target was dragged
        assert points.mask is None


def test_painted_mask_round_trips_through_the_python_parser(run):
    for renderer, name, r in _each(run):
        edit = r["edit"]
        w, h = edit["size"]
        value = parse_points(edit["edited"])
        assert len(value.pairs) == 2
        assert value.mask is not None and (value.mask.width, value.mask.height) == (w, h)
        mask = value.mask_tensor().numpy()
        # The stroke is a capsule of the brush radius around the segment (pixel centres at +0.5).
        (x0, y0), (x1, y1) = [(fx * w, fy * h) for fx, fy in STROKE]
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        t = np.clip(((xx - x0) * (x1 - x0) + (yy - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2), 0, 1)
        distance = np.hypot(xx - (x0 + t * (x1 - x0)), yy - (y0 + t * (y1 - y0)))
        brush, slack = edit["brush"], max(1.5, max(w, h) / 256) + 0.5
        assert mask[distance <= brush - slack].all(), (renderer, name)
        assert not mask[distance > brush + slack].any(), (renderer, name)
        # Compact: a few numbers per painted row, never W·H values.
        assert len(json.loads(edit["edited"])["mask"]["rle"]) < 4 * h


def test_graph_undo_redo_and_copy_paste_keep_the_points(run):
    for renderer, name, r in _each(run):
        edit = r["edit"]
        assert edit["afterGraphUndo"] == edit["pointsOnly"], (renderer, name, "Ctrl+Z should take back the stroke")
        assert edit["afterGraphRedo"] == edit["edited"], (renderer, name)
        copy = r["copyPaste"]
        assert copy["count"] == 2 and copy["values"][0] == copy["values"][1] == edit["edited"], (renderer, name)
        assert copy["editorPairs"] == 2


def test_reload_restores_points_and_mask(run):
    for renderer, name, r in _each(run):
        assert r["beforeReload"] == r["edit"]["edited"]
        after = r["afterReload"]
        assert after["value"] == r["beforeReload"], (renderer, name)
        assert len(after["state"]["pairs"]) == 2 and after["state"]["maskSum"] > 0, (renderer, name)


def test_toy_workflow_is_the_demo_graph(run):
    """The shipped toy workflow's prompt equals `make demo`'s graph, so the two cannot drift apart."""
    if not TOY_WORKFLOW.exists():
        pytest.fail("example_workflows/dragdiffusion_toy.json is missing (scripts/build_examples.py)")
    import build_examples

    image, _, prompt, points = build_examples.demo_case()
    _assert_prompt_is(run, "dragdiffusion_toy", comfy_client.toy_drag_graph(image, prompt, points))


def test_gooddrag_toy_workflow_is_the_demo_gooddrag_graph(run):
    if not GOODDRAG_TOY_WORKFLOW.exists():
        pytest.fail("example_workflows/gooddrag_toy.json is missing (scripts/build_method_examples.py)")
    import build_examples

    image, _, prompt, points = build_examples.demo_case()
    _assert_prompt_is(run, "gooddrag_toy", comfy_client.toy_gooddrag_graph(image, prompt, points))


def _assert_prompt_is(run, workflow: str, expected: dict) -> None:
    """The workflow's app.graphToPrompt() in both renderers is exactly the API graph ``expected``."""
    for renderer in RENDERERS:
        got = run["renderers"][renderer][workflow]["prompt"]
        assert {k: v["class_type"] for k, v in got.items()} == {k: v["class_type"] for k, v in expected.items()}
        for node_id, spec in expected.items():
            assert got[node_id]["inputs"] == spec["inputs"], (renderer, node_id, spec["class_type"])


def test_queue_from_the_run_button_succeeds_and_the_editor_shows_tracked_handles(run):
    q = run["queue"]
    assert q, "nothing was queued"
    assert not q.get("error"), f"the run from the UI did not finish: {q['error']}\n{run['server_log'][-3000:]}"
    kinds = [e["type"] for e in q["events"]]
    errors = [e["detail"] for e in q["events"] if e["type"] != "execution_success" and e["type"] != "execution_start"]
    assert "execution_success" in kinds, f"the run failed: {json.dumps(errors)[:3000]}"
    _assert_shows_tracked_handles(q["editor"])
    assert q["runImage"] and q["runImage"]["status"] == 200, "DragPoints should send its plain picture back"
    print(f"queued {q['workflow']} from the UI: {q['seconds']:.0f} s; timings {run['timings']}")


def test_warp_workflows_queue_and_run_from_the_run_button(run):
    plans = _warp_queue_plans()
    assert len(run["moreQueues"]) >= len(plans) >= 2
    for plan, q in zip(plans, run["moreQueues"]):
        name = Path(plan["workflow"]).name
        assert q["workflow"] == name and not q.get("error"), f"{name}: {q.get('error')}\n{run['server_log'][-3000:]}"
        kinds = [e["type"] for e in q["events"]]
        assert "execution_success" in kinds, (name, [e["detail"] for e in q["events"] if e["type"] != "execution_start"])
    if WARP_TOY_WORKFLOW.exists() and TOY_WEIGHTS.exists():
        toy = run["moreQueues"][0]
        editor = toy["editor"]
        # The editor shows the edited picture with each handle moved onto its target.
        assert editor["view"] == "result" and editor["result"]["hasImage"], editor
        targets = [pair["target"] for pair in editor["result"]["pairs"]]
        assert editor["result"]["finalHandles"] == targets and targets
        assert "warp" in editor["result"]["text"]
        print(f"queued warp_toy.json from the UI: {toy['seconds']:.1f} s")


@pytest.mark.parametrize("workflow", [DRAGNOISE_TOY_WORKFLOW, GOODDRAG_TOY_WORKFLOW], ids=["dragnoise", "gooddrag"])
def test_the_editor_shows_tracked_handles_after_the_other_optimizers(run, workflow):
    """The same view as after MotionSupervisionOptimize (test above), after BottleneckOptimize (DragNoise) and
    AlternatingDragDenoise (GoodDrag, whose LATENT goes straight to VAE Decode)."""
    if not TOY_WEIGHTS.exists():
        pytest.fail("the toy runs need the toy weights")
    (q,) = [q for q in run["moreQueues"] if q["workflow"] == workflow.name]
    assert not q.get("error"), q.get("error")
    assert "execution_success" in [e["type"] for e in q["events"]], [e for e in q["events"] if e["type"] != "execution_start"]
    _assert_shows_tracked_handles(q["editor"])
    assert "iterations" in q["editor"]["result"]["text"] and q["editor"]["result"]["text"].startswith("result")


def _assert_shows_tracked_handles(editor: dict) -> None:
    """The editor switched to the result picture with one finite final handle per pair."""
    assert editor["view"] == "result" and editor["result"]["hasImage"], editor
    result = editor["result"]
    assert len(result["finalHandles"]) == len(result["pairs"]) >= 1
    for handle in result["finalHandles"]:
        assert handle is not None and all(math.isfinite(v) for v in handle)


def test_the_painted_mask_is_labelled_by_the_node_that_reads_it(run):
    for renderer in RENDERERS:
        for name in (w.stem for w in WORKFLOWS):
            meaning = run["renderers"][renderer][name]["maskButton"]
            expected = "Region" if name.startswith("warp_") else "Mask"
            assert meaning == expected, (renderer, name, meaning)


def test_warp_toy_workflow_is_the_demo_warp_graph(run):
    """The shipped warp workflow's prompt equals `make demo`'s warp graph."""
    if not WARP_TOY_WORKFLOW.exists():
        pytest.fail("example_workflows/warp_toy.json is missing (scripts/build_warp_examples.py)")
    import build_warp_examples

    image, _, prompt, points = build_warp_examples.toy_case()
    _assert_prompt_is(run, "warp_toy", comfy_client.toy_warp_graph(image, prompt, points))


def test_no_console_errors_beyond_the_known_noise(run):
    assert run["problems"] == [], "\n".join(run["problems"])
    # ComfyUI's own audio nodes fail to import without torchaudio (known, harmless): judge only our pack's lines.
    ours = [line for line in run["server_log"].splitlines() if "custom_nodes/dragkit" in line]
    assert ours, "ComfyUI never mentioned the pack"
    assert not [line for line in ours if "IMPORT FAILED" in line], ours
