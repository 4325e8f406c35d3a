"""CPU levers for issue 18's speed targets: do they make DragKit's UNet gradient passes faster on this CPU?

    .venv/bin/python bench/cpu_levers.py [--size 256] [--repeats 4] [--bf16-repeats 1] [--json out.json]
    .venv/bin/python bench/cpu_levers.py --profile     # where a default drag iteration's time goes, then exit

On the full-size random SD1.5 (the checkpoint ``bench/speed.py`` makes), through DragKit's own ``ComfyBackbone``
(weights frozen, gradient w.r.t. the input only), two passes are timed:
  drag       one drag iteration's UNet work: batch 1, decoder block 2's features plus ε (the mask term needs ε),
             backward from both to z_t;
  lora-like  a LoRA step's UNet work without the adapters: batch 4 at four timesteps, loss on ε, backward to the
             input (every conv and attention of a LoRA step's backward; the adapters' own cost is left out).
Variants, interleaved, ``--repeats`` rounds after one untimed warm-up pass:
  default         as DragKit runs today;
  channels_last   the latent handed to the UNet in channels-last layout (oneDNN convolutions in NHWC);
  flush_denormal  ``torch.set_flush_denormal(True)`` during the pass;
  bf16            (drag only, ``--bf16-repeats`` rounds) under CPU bf16 autocast, DragKit's ``precision`` "bf16".
Each variant's result is compared with the default's gradient (relative L2). Medians in seconds; the machine may
be shared, so compare variants of one run only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import comfy_client  # noqa: E402
import comfyenv  # noqa: E402

log = logging.getLogger("dragkit.bench.levers")

VARIANTS = ("default", "channels_last", "flush_denormal")


@contextlib.contextmanager
def variant_context(name: str):
    """The process-wide setting a variant needs, restored afterwards; bf16 is the drag's own autocast."""
    from dragkit.drag_core.precision import autocast_for

    if name == "flush_denormal":
        torch.set_flush_denormal(True)
    try:
        with autocast_for(torch.device("cpu"), "bf16" if name == "bf16" else "fp32")():
            yield
    finally:
        torch.set_flush_denormal(False)


def timed(fn: Callable[[str], torch.Tensor], name: str) -> tuple[float, torch.Tensor]:
    with variant_context(name):
        started = time.perf_counter()
        grad = fn(name)
        return time.perf_counter() - started, grad.float()


def profile_table(drag: Callable[[str], torch.Tensor]) -> str:
    """Self CPU time per operator over two default drag passes, after one untimed pass."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(False), torch.enable_grad():
        drag("default")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            drag("default")
            drag("default")
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="picture side in pixels (multiple of 8)")
    parser.add_argument("--repeats", type=int, default=4, help="timed rounds of each variant")
    parser.add_argument("--bf16-repeats", type=int, default=1, help="timed bf16 drag passes (0 = skip)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", action="store_true",
                        help="profile two default drag passes (torch.profiler, CPU time per operator) and exit")
    args = parser.parse_args()
    comfyenv.setup()
    import comfy.sd

    import make_test_checkpoint
    from dragkit.drag_core.backbone import UNetRequest
    from dragkit.nodes.comfy_unet import ComfyBackbone

    checkpoint = make_test_checkpoint.make_checkpoint(comfy_client.CACHE / "dragkit-full-sd15-random.safetensors", "full")
    with torch.inference_mode():
        model = comfy.sd.load_checkpoint_guess_config(str(checkpoint), output_vae=False, output_clip=False)[0]
    backbone = ComfyBackbone(model, "bench", feature_blocks=(2,))
    with torch.inference_mode():
        backbone.load()
    side = args.size // 8
    gen = torch.Generator().manual_seed(0)
    z1, z4 = torch.randn(1, 4, side, side, generator=gen), torch.randn(4, 4, side, side, generator=gen)
    context = torch.randn(1, 77, 768, generator=gen)

    def prepared(z: torch.Tensor, name: str) -> torch.Tensor:
        z = z.clone()
        if name == "channels_last":
            z = z.contiguous(memory_format=torch.channels_last)
        return z.requires_grad_(True)

    def drag(name: str) -> torch.Tensor:
        z = prepared(z1, name)
        out = backbone(z, 500, context, UNetRequest(feature_blocks=(2,)))
        loss = out.features[0].abs().mean() + 1e-3 * out.eps.abs().sum()
        return torch.autograd.grad(loss, z)[0]

    def lora_like(name: str) -> torch.Tensor:
        z = prepared(z4, name)
        out = backbone(z, torch.tensor([100, 300, 500, 700]), context)
        return torch.autograd.grad((out.eps**2).mean(), z)[0]

    if args.profile:
        print(profile_table(drag))
        return
    results: dict = {"command": " ".join(sys.argv), "size": args.size, "threads": torch.get_num_threads(),
                     "torch": torch.__version__, "passes": {}}
    with torch.inference_mode(False), torch.enable_grad():
        for pass_name, fn in (("drag", drag), ("lora-like", lora_like)):
            _, reference = timed(fn, "default")  # warm-up, and the gradient every variant is compared with
            variants = VARIANTS + (("bf16",) if pass_name == "drag" and args.bf16_repeats else ())
            seconds: dict[str, list[float]] = {v: [] for v in variants}
            difference: dict[str, float] = {}
            for round_ in range(args.repeats):
                for name in variants:
                    if name == "bf16" and round_ >= args.bf16_repeats:
                        continue
                    s, grad = timed(fn, name)
                    seconds[name].append(s)
                    difference[name] = float((grad - reference).norm() / reference.norm())
                    log.info("%s %s round %d: %.2f s (gradient off by %.2g)", pass_name, name, round_ + 1, s,
                             difference[name])
            results["passes"][pass_name] = {
                name: {"median_s": statistics.median(s), "seconds": s, "gradient_rel_l2": difference[name]}
                for name, s in seconds.items()
            }
    lines = ["| pass | variant | median s | rounds | vs default | gradient vs default (rel. L2) |",
             "|---|---|---:|---:|---:|---:|"]
    for pass_name, variants in results["passes"].items():
        base = variants["default"]["median_s"]
        for name, v in variants.items():
            lines.append(f"| {pass_name} | {name} | {v['median_s']:.2f} | {len(v['seconds'])} | "
                         f"{v['median_s'] / base:.2f}× | {v['gradient_rel_l2']:.1e} |")
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
