"""The editable mask at latent resolution: binarize, grid, then latent (two-stage nearest)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.nn import functional as nnf

from dragkit.drag_core.mask import editable_mask_for_latent


def test_two_stage_nearest_differs_from_one_stage():
    # 10 px → grid 5 samples pixel rows 0,2,4,6,8; grid 5 → latent 3 samples grid rows 0,1,3 → pixels 0,2,6.
    # One resize 10 → 3 would sample pixels 0,3,6 instead.
    mask = torch.zeros(10, 10)
    mask[2, :] = 0.3  # any positive value is editable
    mask[3, :4] = 1.0
    out = editable_mask_for_latent(mask, 10, 10, 3, 3)
    expected = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert out.shape == (1, 1, 3, 3)
    assert torch.equal(out[0, 0], expected)
    one_stage = nnf.interpolate((mask > 0).float()[None, None], size=(3, 3), mode="nearest")[0, 0]
    assert not torch.equal(one_stage, expected)


@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (1, 1, 8, 8)])
def test_accepted_shapes(shape):
    mask = torch.zeros(shape)
    mask[..., :4, :] = 1
    out = editable_mask_for_latent(mask, 8, 8, 2, 2)
    assert torch.equal(out, torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]]))


def test_none_and_empty_mean_no_mask():
    assert editable_mask_for_latent(None, 8, 8, 2, 2) is None
    assert editable_mask_for_latent(torch.zeros(8, 8), 8, 8, 2, 2) is None
    # Non-empty at image size but empty after sampling: the reference tests the resized mask.
    sparse = torch.zeros(8, 8)
    sparse[1, 1] = 1
    assert editable_mask_for_latent(sparse, 8, 8, 2, 2) is None


def test_mask_of_other_size_is_resized_to_image_first(caplog):
    small = torch.zeros(4, 4)
    small[:, 2:] = 1  # right half editable
    with caplog.at_level(logging.INFO, logger="drag_core.mask"):
        out = editable_mask_for_latent(small, 16, 16, 2, 2)
    assert torch.equal(out, torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))
    assert "resizing the mask" in caplog.text


def test_rejects_batched_mask():
    with pytest.raises(ValueError, match=r"expected shape \(H, W\)"):
        editable_mask_for_latent(torch.ones(2, 8, 8), 8, 8, 2, 2)
