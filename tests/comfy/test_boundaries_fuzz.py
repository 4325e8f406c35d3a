"""The nodes' tensor and structure boundaries, fuzzed (issue 19): whatever another node, a custom node or a Python
caller hands DragKit as an IMAGE, MASK, LATENT, CONDITIONING, DRAG_STATE or DRAG_POINTS, the shared checks in
nodes/common.py either return a valid value or raise DragKitInputError naming the node and input — never another
exception later, deep in torch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8,
                          torch.bool])
SPECIAL = st.sampled_from([0.0, 0.5, 1.0, -1.0, 2.0, float("nan"), float("inf"), -float("inf"), 1e30])


@st.composite
def tensors(draw, max_dims: int = 5, max_side: int = 6):
    shape = draw(st.lists(st.integers(0, max_side), min_size=0, max_size=max_dims))
    if draw(st.booleans()) and len(shape) >= 1:  # often an IMAGE/LATENT-like last dimension
        shape[-1] = draw(st.sampled_from([1, 3, 4, 8]))
    t = torch.full(shape, draw(SPECIAL)) if draw(st.booleans()) else torch.rand(shape)
    if t.numel() and draw(st.booleans()):
        t.view(-1)[0] = draw(SPECIAL)
    return t.to(draw(DTYPES))


ANYTHING = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=8), st.integers(), max_size=2), tensors())


@pytest.fixture(scope="module")
def model(comfy):
    return comfy.tiny_sd15_model()


def _named(call):
    from dragkit.nodes.errors import DragKitInputError

    try:
        return call()
    except DragKitInputError as e:
        assert str(e).startswith("DragKit Fuzz: input '"), e
        return None


@FUZZ
@given(value=ANYTHING)
@example(value=torch.full((1, 2, 2, 3), float("nan")))  # what random draws rarely hit: NaN, empty, integer pictures
@example(value=torch.zeros(1, 0, 4, 3))
@example(value=torch.zeros(1, 4, 4, 3, dtype=torch.uint8))
def test_an_image_input_is_a_nonempty_finite_rgb_picture_or_a_named_error(comfy, value):
    from dragkit.nodes.common import single_image

    image = _named(lambda: single_image(value, "Fuzz"))
    if image is not None:
        assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3 and image.numel() > 0
        assert torch.isfinite(image.float()).all()


@FUZZ
@given(value=ANYTHING, height=st.integers(1, 9), width=st.integers(1, 9))
def test_a_mask_input_is_a_binary_mask_of_the_image_size_or_a_named_error(comfy, value, height, width):
    from dragkit.nodes.common import mask_2d

    mask = _named(lambda: mask_2d(value, height, width, "Fuzz"))
    if mask is not None:
        assert mask.shape == (height, width) and set(mask.unique().tolist()) <= {0.0, 1.0}


@FUZZ
@given(samples=ANYTHING, wrap=st.booleans())
@example(samples=torch.zeros(1, 4, 0, 3), wrap=True)
def test_a_latent_input_is_one_finite_sd_latent_or_a_named_error(comfy, model, samples, wrap):
    from dragkit.nodes.common import model_latent_in

    latent = {"samples": samples} if wrap else samples
    z = _named(lambda: model_latent_in(model, latent, "Fuzz"))
    if z is not None:
        assert z.ndim == 4 and z.shape[:2] == (1, 4) and z.numel() > 0 and z.dtype == torch.float32
        assert torch.isfinite(z).all()


@FUZZ
@given(context=ANYTHING, shape=st.sampled_from(["list", "pair", "bare"]))
def test_a_conditioning_input_is_one_finite_text_embedding_or_a_named_error(comfy, model, context, shape):
    from dragkit.nodes.common import text_context

    conditioning = {"list": [[context, {}]], "pair": [context], "bare": context}[shape]
    c = _named(lambda: text_context(conditioning, model, "Fuzz"))
    if c is not None:
        assert c.ndim == 3 and c.shape[0] == 1 and c.shape[-1] == 768 and c.numel() > 0
        assert torch.isfinite(c).all()


@FUZZ
@given(value=ANYTHING)
def test_state_and_points_inputs_of_another_type_are_named_errors(comfy, value):
    from dragkit.nodes.common import check_points, check_state

    assert _named(lambda: check_state("Fuzz", value)) is None
    assert _named(lambda: check_points("Fuzz", value)) is None
