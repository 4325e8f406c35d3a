"""Build example_workflows/warp_{toy,sd15,sdxl}.json (+ .jpg) — the region warp + inpaint graphs — with the
browser tooling of build_examples.py, from `comfy_client.toy_warp_graph`.

    .venv/bin/python scripts/build_warp_examples.py

The toy workflow is exactly `make demo`'s warp graph. The SD1.5 one inpaints with any SD1.5 checkpoint through
Set Latent Noise Mask; the SDXL one with the SDXL inpainting checkpoint through InpaintModelConditioning. Their
pictures are the demo scene drawn at 512 and 1024 px with the same edit.
"""


import build_examples as be
import comfy_client

SDXL_CHECKPOINT = "sd_xl_base_1.0_inpainting_0.1.safetensors"  # diffusers' SDXL inpainting 0.1, single file
SDXL_IMAGE = "dragkit_sdxl_input.png"

# Node ids of comfy_client.toy_warp_graph (x, y, width, height; 0 = keep).
LAYOUT = {
    1: [20, 330, 320, 0], 2: [20, 480, 320, 360], 3: [380, 20, 330, 130], 4: [380, 190, 330, 110],
    5: [380, 340, 440, 560], 6: [860, 20, 330, 0], 7: [860, 250, 330, 0], 8: [860, 420, 330, 0],
    9: [1230, 20, 330, 0], 10: [1230, 330, 220, 0], 11: [1230, 430, 330, 0], 12: [1600, 20, 380, 420],
    13: [860, 560, 330, 340],
}

NOTE = """Region warp + inpaint (Inpaint4Drag){where}: a drag in seconds, no training.

{set}In DragPoints, "Region" paints the region to MOVE (roughly around the object; every handle must lie on
it), and the pairs say where it goes: one pair moves it, 2–3 pairs with different moves turn or stretch it
(set RegionWarp's motion to "similarity" for a clean turn or resize).

RegionWarp pastes the region at its targets in pixel space and outputs the mask of the pixels the move
revealed (preview: hatched). {inpaint} ImageCompositeMasked puts the inpainted pixels into the warped picture,
so everything outside the mask stays exactly as it was.{settings}

The prompt describes what should appear where the object was (the background)."""

TOY_SETTINGS = ("\n\nRegionWarp is set for the toy's 128 px pictures: inpaint_dilation 1 (the reference's 5 px "
                "seam is meant for ~512 px) and revealed = fill (DragKit's option: the old object's place is "
                "painted from the surrounding background before inpainting).")
TOY_SET = "The picture, points and region are already placed: press Run (a few seconds on a CPU).\n\n"
SD_SET = "Set your checkpoint, picture and prompt; place points and paint the region in DragPoints.\n\n"
SD15_INPAINT = ("The toy and SD1.5 graphs inpaint with Set Latent Noise Mask + KSampler (denoise 1.0), which works with "
                "any checkpoint; an SD1.5 inpainting checkpoint does better with InpaintModelConditioning (see the SDXL "
                "example).")
SDXL_INPAINT = "InpaintModelConditioning gives the SDXL inpainting checkpoint the picture and the mask."


def toy_case():
    import demo
    from dragkit.drag_core.toy import bench_cases
    from dragkit.drag_core.toy.world import background_caption

    case = bench_cases.make_cases(demo.CASE + 1)[demo.CASE]
    image, picture, _, _ = be.demo_case()
    return image, picture, background_caption(case.scene), bench_cases.case_points(case, region=True).to_json()


def sd_graph(image: str, prompt: str, points: str) -> dict:
    """The toy graph with RegionWarp's node defaults (the reference's settings, for 512–1024 px pictures)."""
    return comfy_client.toy_warp_graph(image, prompt, points, inpaint_dilation=5, revealed="keep")


def sd15_graph(image: str, prompt: str, points: str) -> dict:
    graph = sd_graph(image, prompt, points)
    graph["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": be.SD15_CHECKPOINT}}
    graph["9"]["inputs"].update(steps=25, cfg=7.0)
    graph["12"]["inputs"]["filename_prefix"] = "dragkit_warp_sd15"
    return graph


def sdxl_graph(image: str, prompt: str, points: str) -> dict:
    graph = sd_graph(image, prompt, points)
    graph["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SDXL_CHECKPOINT}}
    del graph["8"]
    graph["7"] = {
        "class_type": "InpaintModelConditioning",
        "inputs": {"positive": ["3", 0], "negative": ["4", 0], "vae": ["1", 2], "pixels": ["6", 0], "mask": ["6", 1],
                   "noise_mask": True},
    }
    graph["9"]["inputs"].update(steps=25, cfg=7.0, positive=["7", 0], negative=["7", 1], latent_image=["7", 2])
    graph["12"]["inputs"]["filename_prefix"] = "dragkit_warp_sdxl"
    return graph


def main() -> None:
    import comfyenv

    comfyenv.setup()
    jobs = []
    image, picture, prompt, points = toy_case()
    jobs.append(("warp_toy", image, picture, comfy_client.toy_warp_graph(image, prompt, points),
                 NOTE.format(where=" on the bundled toy model", set=TOY_SET, inpaint=SD15_INPAINT, settings=TOY_SETTINGS)))
    image, picture, prompt, points = be.scaled_case(4, be.SD15_IMAGE, region=True)
    jobs.append(("warp_sd15", image, picture, sd15_graph(image, prompt, points),
                 NOTE.format(where=" on Stable Diffusion 1.5", set=SD_SET, inpaint=SD15_INPAINT, settings="")))
    image, picture, prompt, points = be.scaled_case(8, SDXL_IMAGE, region=True)
    picture.save(be.OUT / image)  # served from example_workflows/; the editor uploads it when missing
    jobs.append(("warp_sdxl", image, picture, sdxl_graph(image, prompt, points),
                 NOTE.format(where=" on SDXL (inpainting checkpoint)", set=SD_SET, inpaint=SDXL_INPAINT, settings="")))
    be.render_workflows(jobs, layout=LAYOUT)
    for name, *_ in jobs:
        print(be.OUT / f"{name}.json")


if __name__ == "__main__":
    main()
