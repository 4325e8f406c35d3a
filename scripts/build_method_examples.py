"""Build example_workflows/{dragnoise,sacdrag,gooddrag}_{toy,sd15}.json(+.jpg) with the widget helper's browser
tooling (scripts/browser/build_examples.mjs), from the API graphs in scripts/comfy_client.py.

    .venv/bin/python scripts/build_method_examples.py [NAME ...]   (e.g. gooddrag_toy; default: all six)
"""
import json
import sys
from pathlib import Path

import build_examples as be
import comfy_client

DRAGNOISE_NOTE = """DragNoise{where}.

{set}The same graph as the DragDiffusion example with two nodes swapped:
- BottleneckOptimize optimizes the UNet's bottleneck (the middle-block output at t = 681) instead of
  the latent: the backward pass runs through the decoder only, about half the time per iteration.
- SemanticPropagationDenoise puts the optimized bottleneck into the denoising steps. end_step 0 (the
  default) = the released code; 10 = the paper's choice, which leaves the last 10 steps free to
  restore detail.

mask_term_without_mask off = DragDiffusion's rule (no painted mask, no regularizer); on = the released
DragNoise code, which then holds the whole image."""

SACDRAG_NOTE = """The training-free self-attention drag{where}: no LoRA.

{set}- DDIMInvert inverts all the way (strength 1.0, first-step correction on).
- DenoiseToStep denoises the source and the edited branch to step 10 of 50 (drag_step); from
  sac_step on, the edited branch's self-attention uses the source's keys and values (layers from
  sac_layer on), keeping identity and style.
- MotionSupervisionOptimize drags the edited branch there; ReferenceLatentDenoise finishes with the
  same control (start_step 0, start_layer = sac_layer).

The edit prompt (the second CLIP Text Encode) starts equal to the picture's prompt: change it to edit
content as well as position."""

GOODDRAG_NOTE = """GoodDrag (alternating drag and denoising){where}.

{set}- IdentityLoRATrain: GoodDrag's 70 steps; DDIMInvert at strength 0.75 (38 of 50 steps).
- AlternatingDragDenoise does the rest and ends in a LATENT for VAE Decode: at each of the first
  drag_end_step (7) denoising steps, track_per_step (10) rounds of drag_per_track (3) motion-supervision
  steps, each round followed by point tracking; then one denoising step repairs what that drag disturbed.
  Supervision pulls the original features of the starting handle, so appearance does not drift.
- After the drag phase the edited branch is denoised with reference control (from start_layer 10).
The drag stops early once every handle has arrived or max_track_no_change trackings moved nothing."""

TOY_SET = "The input picture, its points and mask are already placed: press Run (a few minutes on a CPU).\n\n"
SD15_SET = ("Set your SD1.5 checkpoint, picture and prompt, then place points and paint the editable region in "
            "DragPoints.\n\n")


def sd15(graph: dict, lora: bool, prefix: str) -> dict:
    graph["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": be.SD15_CHECKPOINT}}
    if lora:
        graph["4"]["inputs"]["resolution"] = 512
    graph["11"]["inputs"]["filename_prefix"] = prefix
    graph["12"]["inputs"]["filename_prefix"] = prefix + "_trajectory"
    return graph


def main() -> None:
    import comfyenv

    comfyenv.setup()
    toy_image, toy_picture, toy_prompt, toy_points = be.demo_case()
    sd_image, sd_picture, sd_prompt, sd_points = be.sd15_case()
    jobs = [
        ("dragnoise_toy", toy_image, toy_picture,
         comfy_client.toy_dragnoise_graph(toy_image, toy_prompt, toy_points),
         DRAGNOISE_NOTE.format(where=" on the bundled toy model", set=TOY_SET)),
        ("sacdrag_toy", toy_image, toy_picture,
         comfy_client.toy_sacdrag_graph(toy_image, toy_prompt, toy_points, edit_prompt=toy_prompt),
         SACDRAG_NOTE.format(where=" on the bundled toy model", set=TOY_SET)),
        ("dragnoise_sd15", sd_image, sd_picture,
         sd15(comfy_client.toy_dragnoise_graph(sd_image, sd_prompt, sd_points), True, "dragkit_dragnoise_sd15"),
         DRAGNOISE_NOTE.format(where=" on Stable Diffusion 1.5", set=SD15_SET)),
        ("sacdrag_sd15", sd_image, sd_picture,
         sd15(comfy_client.toy_sacdrag_graph(sd_image, sd_prompt, sd_points, edit_prompt=sd_prompt), False,
              "dragkit_sacdrag_sd15"),
         SACDRAG_NOTE.format(where=" on Stable Diffusion 1.5", set=SD15_SET)),
        ("gooddrag_toy", toy_image, toy_picture,
         comfy_client.toy_gooddrag_graph(toy_image, toy_prompt, toy_points),
         GOODDRAG_NOTE.format(where=" on the bundled toy model", set=TOY_SET)),
        ("gooddrag_sd15", sd_image, sd_picture,
         sd15(comfy_client.toy_gooddrag_graph(sd_image, sd_prompt, sd_points), True, "dragkit_gooddrag_sd15"),
         GOODDRAG_NOTE.format(where=" on Stable Diffusion 1.5", set=SD15_SET)),
    ]
    if sys.argv[1:]:
        jobs = [job for job in jobs if job[0] in sys.argv[1:]]
    be.render_workflows(jobs)
    for name, *_ in jobs:
        relayout(be.OUT / f"{name}.json")
        print(be.OUT / f"{name}.json")


def relayout(path: Path) -> None:
    """Where the shared layout (the DragDiffusion graph's) does not fit: DenoiseToStep (node 13) has no slot, so it
    goes between DDIMInvert and the drag; AlternatingDragDenoise (node 8) is taller than the node whose slot it
    takes, so the drag preview below it moves down."""
    workflow = json.loads(path.read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    moves = ()
    if nodes.get(13, {}).get("type") == "DragKitDenoiseToStep":
        nodes[13]["pos"] = [860, 330]
        moves = ((8, 260), (12, 260))
    elif nodes.get(8, {}).get("type") == "DragKitAlternatingDragDenoise":
        moves = ((12, nodes[8]["pos"][1] + nodes[8]["size"][1] + 60 - nodes[12]["pos"][1]),)
    if not moves:
        return
    for node_id, dy in moves:
        nodes[node_id]["pos"] = [nodes[node_id]["pos"][0], nodes[node_id]["pos"][1] + dy]
    path.write_text(json.dumps(workflow, indent=2) + "\n")


if __name__ == "__main__":
    main()
