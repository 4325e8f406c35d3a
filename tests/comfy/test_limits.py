"""Limits enforced at the nodes before anything large is allocated (issue 19): a workflow file or an API graph
is untrusted input, and a few bytes in it must not make the server allocate gigabytes."""

from __future__ import annotations

import json
import time

import pytest
import torch


def test_a_huge_declared_mask_is_refused_at_once_and_names_the_input(comfy, monkeypatch):
    from dragkit.drag_core import points as points_module
    from dragkit.nodes.errors import DragKitInputError
    from dragkit.nodes.points_nodes import DragPoints

    # The value from the issue: ~160 bytes declaring a 100000 × 100000 editable mask (40 GB as floats).
    value = json.dumps({"version": 1, "width": 64, "height": 64,
                        "points": [{"handle": [10, 10], "target": [20, 20]}],
                        "mask": {"width": 100000, "height": 100000, "rle": [10**10]}})
    monkeypatch.setattr(points_module.RLEMask, "to_tensor", lambda self: pytest.fail("a mask was decoded"))
    started = time.monotonic()
    with pytest.raises(DragKitInputError, match=r"DragPoints: input 'points': .*8192"):
        DragPoints.execute(torch.rand(1, 64, 64, 3), value)
    assert time.monotonic() - started < 1.0


def test_a_picture_beyond_the_side_limit_is_refused_saying_what_to_do(comfy):
    from dragkit.nodes.errors import DragKitInputError
    from dragkit.nodes.points_nodes import DragPoints

    points = '{"version": 1, "width": 8, "height": 8193, "points": [{"handle": [1, 1], "target": [5, 5]}]}'
    with pytest.raises(DragKitInputError, match=r"DragPoints: input 'image': the image is 8×8193 px.*8192"):
        DragPoints.execute(torch.zeros(1, 8193, 8, 3), points)


def test_lora_settings_whose_latents_would_not_fit_are_refused_before_training(comfy, tiny_model):
    from dragkit.nodes.errors import DragKitInputError
    from dragkit.nodes.lora_nodes import IdentityLoRATrain

    cond = comfy.conditioning(comfy.random_context())
    with pytest.raises(DragKitInputError, match=r"IdentityLoRATrain: input 'steps': .* GiB of encoded latents"):
        with torch.inference_mode():
            IdentityLoRATrain.execute(tiny_model, None, torch.rand(1, 64, 64, 3), cond, 10000, 4, 5e-4, 64, 2048, 0,
                                      "fp32", "off", "")
