"""Train DragKit's bundled toy model on the procedural toy world (deterministic, CPU, < 60 min).

    .venv/bin/python scripts/train_toy.py [--out models/toy/dragkit_toy.safetensors]

Stage 1 trains the tiny VAE (a deterministic autoencoder, MSE) on rendered 128 px scenes and rescales its latents so
SD1.5's latent factor 0.18215 gives them unit variance. Stage 2 trains the UNet with SD1.5's ε-prediction
objective (scaled_linear schedule, 1000 steps) on a fixed set of encoded scenes, dropping 10 % of the
captions for classifier-free guidance. The text encoder (ComfyUI's SD1 CLIP classes, small) stays at
its seeded random initialisation: a fixed, deterministic embedding of the caption that the UNet
learns to read (ComfyUI's CLIP forward uses in-place ops and cannot be trained through). Writes the weights
(fp16, token embedding stored sparsely) and a JSON report next to them.

Optional stage 3, ``--finetune-from FILE --out OTHER``: fine-tune FILE's UNet (VAE and text encoder kept), e.g.
with ``--skip-dropout`` (docs/TOY_MODEL.md: an attempt to make the decoder read its bottleneck, for DragNoise).
``--vae-from FILE`` skips stage 1 and trains a new UNet on FILE's VAE.

``--device cuda`` trains on a GPU (the data are still rendered and drawn on the CPU with the same seeds, so a run
is the same recipe on either device); ``--seconds S`` sizes stage 2 to a time budget: after 30 timed steps it
sets the number of steps (at most ``--unet-steps``) that fit, and the learning-rate schedule follows it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("dragkit.train_toy")
SD_LATENT_SCALE = 0.18215


def reset_parameters(module: torch.nn.Module, seed: int) -> None:
    """comfy.ops layers skip torch's initialisation: run the base classes' own reset_parameters."""
    torch.manual_seed(seed)
    for m in module.modules():
        for base in (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.Embedding):
            if isinstance(m, base):
                base.reset_parameters(m)
                break


def zero_residual_branches(vae_model: torch.nn.Module) -> None:
    """Start every residual branch of the VAE at zero, so that each res block and attention block begins as
    the identity and the skip paths carry the picture from the first step (SkipInit/Fixup-style)."""
    with torch.no_grad():
        for name, m in vae_model.named_modules():
            if name.endswith(".conv2") or name.endswith(".proj_out"):
                m.weight.zero_()
                m.bias.zero_()


def scene_batch(rng: np.random.Generator, count: int) -> tuple[torch.Tensor, list[str]]:
    from dragkit.drag_core.toy.world import caption, render, sample_scene

    scenes = [sample_scene(rng, 128) for _ in range(count)]
    images = torch.from_numpy(np.stack([render(s) for s in scenes])).permute(0, 3, 1, 2)
    return images.float() * 2 - 1, [caption(s) for s in scenes]


def vae_moments(vae_model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    moments = vae_model.quant_conv(vae_model.encoder(x)) if vae_model.quant_conv is not None else vae_model.encoder(x)
    mean, logvar = moments.chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


def vae_decode(vae_model, z: torch.Tensor) -> torch.Tensor:
    if vae_model.post_quant_conv is not None:
        z = vae_model.post_quant_conv(z)
    return vae_model.decoder(z)


def train_vae(steps: int, batch: int, seed: int, lr: float = 1e-3, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    from comfy.ldm.models.autoencoder import AutoencoderKL

    from dragkit.nodes.toy_model import TOY_VAE_GROUP_CHANNELS, regroup_vae_norms, vae_config

    vae_model = AutoencoderKL(**vae_config()["params"])
    reset_parameters(vae_model, seed)
    zero_residual_branches(vae_model)
    regroup_vae_norms(vae_model)
    vae_model.to(device)
    optimizer = torch.optim.AdamW(vae_model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    losses, started = [], time.monotonic()
    for step in range(steps):
        x = scene_batch(rng, batch)[0].to(device)
        # A deterministic autoencoder on the posterior mean (ComfyUI's VAEEncode takes the mode), MSE loss,
        # a small penalty on the latents' magnitude in place of the KL: measured faster than L1 + sampled KL
        # (scripts/toy_vae_probe.py, docs/TOY_MODEL.md).
        mean, _ = vae_moments(vae_model, x)
        recon = vae_decode(vae_model, mean)
        loss = F.mse_loss(recon, x) + 1e-4 * mean.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        warm = min(1.0, (step + 1) / 100)
        for group in optimizer.param_groups:  # warm-up, then cosine decay to 10 %
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps)))
        losses.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            log.info("vae step %d/%d loss %.4f (%.0f s)", step, steps, losses[-1], time.monotonic() - started)
    # Rescale the latent space so that × 0.18215 (SD1.5's latent_format) gives unit variance.
    with torch.no_grad():
        x = scene_batch(np.random.default_rng(seed + 1), 256)[0].to(device)
        mean, _ = vae_moments(vae_model, x)
        k = 1.0 / (SD_LATENT_SCALE * float(mean.std()))
        vae_model.quant_conv.weight[:4] *= k
        vae_model.quant_conv.bias[:4] *= k
        vae_model.quant_conv.bias[4:] += 2 * math.log(k)  # logvar of k·z
        vae_model.post_quant_conv.weight /= k
        x = scene_batch(np.random.default_rng(seed + 2), 64)[0].to(device)
        mean, _ = vae_moments(vae_model, x)
        recon = vae_decode(vae_model, mean).clamp(-1, 1)
        mse = F.mse_loss((recon + 1) / 2, (x + 1) / 2).item()
    report = {"steps": steps, "batch": batch, "lr": lr, "group_channels": TOY_VAE_GROUP_CHANNELS,
              "zero_init_residuals": True, "loss": "mse + 1e-4 mean^2", "seconds": round(time.monotonic() - started, 1),
              "final_loss": round(float(np.mean(losses[-50:])), 5), "latent_rescale": round(k, 4),
              "reconstruction_psnr_db": round(10 * math.log10(1 / mse), 2)}
    log.info("vae done: %s", report)
    return vae_model, report


def encode_dataset(vae_model, count: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """``count`` rendered scenes' latents (on the VAE's device) and captions."""
    device = next(vae_model.parameters()).device
    rng = np.random.default_rng(seed)
    latents, captions = [], []
    with torch.no_grad():
        for start in range(0, count, 256):
            x, caps = scene_batch(rng, min(256, count - start))
            mean, _ = vae_moments(vae_model, x.to(device))
            latents.append(mean * SD_LATENT_SCALE)
            captions += caps
    return torch.cat(latents), captions


class SkipDropout:
    """An output-block patch that zeroes, for a random ``p`` of the training samples (drawn once a step), the
    skip connections entering output blocks ``0 … below − 1``: the decoder must then carry the layout up from
    the bottleneck, while the last blocks' full-resolution skips still bring the noise it predicts.

    Trained without it, the toy UNet's decoder ignores its 2 × 2 bottleneck (zeroing the middle-block
    output changes the third decoder block's features by 0.05 %). SD1.5's decoder reads its bottleneck,
    and DragNoise, which optimizes exactly that bottleneck, needs a decoder that does."""

    def __init__(self, p: float, gen: torch.Generator, below: int) -> None:
        self.p, self.gen, self.below = p, gen, below
        self.keep: torch.Tensor | None = None

    def new_step(self, batch: int) -> None:
        self.keep = (torch.rand(batch, generator=self.gen) >= self.p).float().reshape(-1, 1, 1, 1)

    def __call__(self, h, hsp, transformer_options):
        if transformer_options["block"][1] >= self.below:
            return h, hsp
        return h, hsp * self.keep.to(hsp)


def train_diffusion(vae_model, steps: int, batch: int, dataset_size: int, seed: int, lr: float = 4e-4,
                    skip_dropout: float = 0.0, start=None, skip_dropout_below: int = 9, seconds: float | None = None,
                    precompute_contexts: bool | None = None):
    """Stage 2 on the VAE's device. ``start`` = (MODEL, CLIP) of an earlier run to fine-tune instead of a fresh
    UNet; ``seconds``: fit the number of steps (at most ``steps``) to this budget, timed over steps 10–40;
    ``precompute_contexts``: encode every caption once up front (default: on any device but the CPU)."""
    from dragkit.drag_core.schedule import scaled_linear_alphas_cumprod
    from dragkit.nodes.toy_model import build_clip, build_unet

    started = time.monotonic()
    latents, captions = encode_dataset(vae_model, dataset_size, seed + 10)
    log.info("encoded %d scenes in %.0f s (latent std %.3f)", len(captions), time.monotonic() - started, latents.std())
    if start is None:
        model = build_unet()
        reset_parameters(model.model.diffusion_model, seed)
        clip = build_clip()
        text = clip.cond_stage_model.clip_l
        reset_parameters(text, seed + 1)
        with torch.no_grad():
            text.transformer.text_model.embeddings.position_embedding.weight.normal_(0, 0.1)
    else:
        model, clip = start
        text = clip.cond_stage_model.clip_l
    device = next(vae_model.parameters()).device
    unet = model.model.diffusion_model.float().to(device)
    text.to(device)
    text.requires_grad_(False)
    tokenizer = clip.tokenizer.clip_l
    tokens = [[t for t, _ in tokenizer.tokenize_with_weights(c)[0]] for c in captions]
    empty = [t for t, _ in tokenizer.tokenize_with_weights("")[0]]
    used = sorted({t for row in tokens + [empty] for t in row})
    params = list(unet.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    alphas = scaled_linear_alphas_cumprod().float().to(device)
    gen = torch.Generator().manual_seed(seed + 2)
    dropout = SkipDropout(skip_dropout, gen, skip_dropout_below)
    options = {"patches": {"output_block_patch": [dropout]}} if skip_dropout else {}
    contexts = None
    if precompute_contexts if precompute_contexts is not None else device.type != "cpu":
        # Every scene's caption (and, last, the empty one) encoded once: per step, ComfyUI's per-token Python path
        # through the text encoder kept the GPU waiting. The CPU keeps the per-step path its bundled model was
        # trained with (same values up to float rounding; precomputing would cost it ~8000 × 77 × 128 floats).
        with torch.no_grad():
            rows = tokens + [empty]
            contexts = torch.cat([text(rows[i:i + 256])[0] for i in range(0, len(rows), 256)])
    losses, timer = [], None
    unet.train()
    step = 0
    while step < steps:
        if seconds is not None and step in (10, 40):  # fit the schedule to the budget once the rate is known
            sync(device)
            if step == 10:
                timer = time.monotonic()
            else:
                per_step = (time.monotonic() - timer) / 30
                # 10 % spare: on an H200 the later steps ran slower than steps 10-40 and a run overshot its slot
                steps = max(41, min(steps, int((seconds - (time.monotonic() - started)) / (1.1 * per_step)) + 40))
                log.info("%.1f ms a step: %d steps fit in %.0f s", per_step * 1e3, steps, seconds)
        idx = torch.randint(0, len(captions), (batch,), generator=gen)
        z0 = latents[idx.to(device)]
        drop = torch.rand(batch, generator=gen) < 0.1
        if contexts is not None:
            context = torch.where(drop.to(device).reshape(-1, 1, 1), contexts[-1:], contexts[idx.to(device)])
        else:
            rows = [empty if drop[i] else tokens[int(j)] for i, j in enumerate(idx)]
            with torch.no_grad():
                context, _ = text(rows)
        if skip_dropout:  # draws from gen only when on, so a run without it repeats run 2 exactly
            dropout.new_step(batch)
        t = torch.randint(0, 1000, (batch,), generator=gen).to(device)
        noise = torch.randn(z0.shape, generator=gen).to(device)
        a = alphas[t].reshape(-1, 1, 1, 1)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        eps = unet(z_t, t.float(), context=context.to(device), transformer_options=options)
        loss = F.mse_loss(eps, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        warm = min(1.0, (step + 1) / 200)
        for group in optimizer.param_groups:
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps)))
        losses.append(loss.detach())
        if step % 200 == 0 or step == steps - 1:
            losses = [float(v) for v in losses]  # one device sync per 200 steps, not per step
            log.info("diffusion step %d/%d loss %.4f (%.0f s)", step, steps, np.mean(losses[-200:]),
                     time.monotonic() - started)
        step += 1
    losses = [float(v) for v in losses]
    report = {"steps": steps, "batch": batch, "dataset_scenes": dataset_size, "seconds": round(time.monotonic() - started, 1),
              "final_loss": round(float(np.mean(losses[-200:])), 5), "caption_dropout": 0.1, "lr": lr,
              "skip_dropout": skip_dropout, "skip_dropout_below": skip_dropout_below, "fine_tuned": start is not None,
              "device": str(device)}
    unet.cpu()
    text.cpu()
    return model, clip, used, report


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def save(out: Path, vae_model, model, clip, used_tokens: list[int], info: dict) -> None:
    from safetensors.torch import save_file

    from dragkit.nodes.toy_model import TOKEN_EMBEDDING, sparse_token_embedding

    tensors = {f"unet.{k}": v for k, v in model.model.diffusion_model.state_dict().items()}
    tensors.update({f"vae.{k}": v for k, v in vae_model.state_dict().items()})
    clip_sd = clip.cond_stage_model.state_dict()
    embedding = clip_sd.pop(TOKEN_EMBEDDING)
    tensors.update({f"clip.{k}": v for k, v in clip_sd.items()})
    tensors.update(sparse_token_embedding(embedding, torch.tensor(used_tokens)))
    tensors = {k: (v.half() if v.is_floating_point() else v).cpu().contiguous() for k, v in tensors.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"dragkit_toy": json.dumps(info)})
    os.replace(tmp, out)
    (out.with_suffix(".json")).write_text(json.dumps(info, indent=2))
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)


def finetune(args) -> None:
    """Stage 3 (optional): fine-tune an earlier run's UNet, e.g. with skip dropout; VAE and text encoder kept."""
    from dragkit.nodes.toy_model import load_toy_model

    model, clip, vae = load_toy_model(args.finetune_from)
    earlier = json.loads(args.finetune_from.with_suffix(".json").read_text())
    model, clip, used, report = train_diffusion(vae.first_stage_model.float().to(args.device), args.unet_steps,
                                                args.unet_batch, args.dataset, args.seed, args.unet_lr,
                                                args.skip_dropout, start=(model, clip),
                                                skip_dropout_below=args.skip_dropout_below, seconds=args.seconds)
    info = dict(earlier, finetune=dict(report, source=args.finetune_from.name))  # its own "seconds"; total unchanged
    save(args.out, vae.first_stage_model, model, clip, used, info)
    print(args.out)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "models" / "toy" / "dragkit_toy.safetensors")
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--vae-batch", type=int, default=8)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--unet-steps", type=int, default=2200)
    parser.add_argument("--unet-batch", type=int, default=32)
    parser.add_argument("--dataset", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse-vae", action="store_true", help="reuse the stage-1 VAE written by an earlier run")
    parser.add_argument("--unet-lr", type=float, default=4e-4)
    parser.add_argument("--skip-dropout", type=float, default=0.0,
                        help="for this fraction of the training samples, zero the UNet skips entering the decoder's first blocks")
    parser.add_argument("--skip-dropout-below", type=int, default=9,
                        help="--skip-dropout acts on the skips entering output blocks below this index (9: all but full resolution)")
    parser.add_argument("--vae-from", type=Path,
                        help="skip stage 1: train a new UNet on this toy model's VAE (and the same seeded text encoder)")
    parser.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    parser.add_argument("--seconds", type=float, help="fit stage 2's number of steps to this many seconds")
    parser.add_argument("--finetune-from", type=Path,
                        help="fine-tune this toy model's UNet (its VAE and text encoder are kept) instead of training anew")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    import comfyenv

    comfyenv.setup(cpu=args.device == "cpu")
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    started = time.monotonic()
    if args.finetune_from:
        if args.finetune_from.resolve() == args.out.resolve():
            parser.error("--finetune-from and --out are the same file: give the fine-tuned model its own --out")
        finetune(args)
        return
    stage1 = args.out.with_name(args.out.stem + ".vae-stage.safetensors")
    if args.vae_from:
        from dragkit.nodes.toy_model import load_toy_model

        vae_model = load_toy_model(args.vae_from)[2].first_stage_model.float()
        vae_report = dict(json.loads(args.vae_from.with_suffix(".json").read_text())["vae"], source=args.vae_from.name)
    elif args.reuse_vae and stage1.exists():  # stage 1 is deterministic: reuse it after an interrupted run
        from comfy.ldm.models.autoencoder import AutoencoderKL
        from safetensors.torch import load_file

        from dragkit.nodes.toy_model import regroup_vae_norms, vae_config

        vae_model = AutoencoderKL(**vae_config()["params"])
        regroup_vae_norms(vae_model)
        vae_model.load_state_dict(load_file(str(stage1)))
        vae_report = json.loads(stage1.with_suffix(".json").read_text())
        log.info("reusing the stage-1 VAE from %s", stage1)
    else:
        from safetensors.torch import save_file

        vae_model, vae_report = train_vae(args.vae_steps, args.vae_batch, args.seed, args.vae_lr, args.device)
        stage1.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.cpu().contiguous() for k, v in vae_model.state_dict().items()}, str(stage1))
        stage1.with_suffix(".json").write_text(json.dumps(vae_report))
    model, clip, used, diffusion_report = train_diffusion(vae_model.to(args.device), args.unet_steps, args.unet_batch,
                                                          args.dataset, args.seed, args.unet_lr, args.skip_dropout,
                                                          skip_dropout_below=args.skip_dropout_below, seconds=args.seconds)
    info = {"vae": vae_report, "diffusion": diffusion_report, "seed": args.seed, "threads": torch.get_num_threads(),
            "total_seconds": round(time.monotonic() - started, 1), "torch": torch.__version__}
    save(args.out, vae_model, model, clip, used, info)
    print(args.out)


if __name__ == "__main__":
    main()
