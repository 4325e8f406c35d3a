"""The training-free drag with self-attention control (SPEC §3; Lim, Jo, Lee): point and prompt
editing together, no LoRA.

The method is a graph of DragKit's stages:

1. z_T: DDIM-invert the image all the way (``inversion_strength`` 1.0, with the sampling-step
   correction, SPEC §0.2), or, for a generated image, seed noise with classifier-free guidance.
2. :func:`~drag_core.reference.denoise_branches` to the drag step: the batch [source, edited] from z_T (z_T' = z_T), the
   source branch on the source prompt, the edited branch on the edit prompt, and from ``sac_step``
   on, in the self-attention layers from ``sac_layer`` on, the edited branch's queries attend to the
   source branch's keys and values (MasaCtrl's mutual self-attention, as SPEC §1.4).
3. The drag at that step: DragDiffusion's latent optimization of the edited branch
   (:func:`~drag_core.dragdiffusion.optimize_latent`, same loss and stop rule) on its prompt.
4. Denoise both branches to the end with the same control (:mod:`drag_core.reference`, SPEC §1.4) and
   decode the edited branch.

So this module holds only the method's defaults; its stages live where every method shares them.

Defaults (the paper's comparison setup): 50 steps, ``sac_step`` 10, ``drag_step`` 10, ``sac_layer``
10 (MasaCtrl's and SPEC §1.4's layer; §3 names no other).
"""

from __future__ import annotations

SAC_STEP = 10
DRAG_STEP = 10
SAC_LAYER = 10
