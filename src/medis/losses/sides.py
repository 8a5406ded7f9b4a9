"""PraNet's structure loss summed over the side outputs of a victim, per sample."""

from __future__ import annotations

import torch

from medis.losses.structure import structure_loss, structure_weights
from medis.models.frontend import VictimOutput


def side_structure_loss(outputs: VictimOutput, mask: torch.Tensor, paper: bool = False) -> torch.Tensor:
    """Σ_k structure_loss(z_k, M) over the K side outputs. (B,1,H,W) maps, mask (B,1,H,W) -> (B,).

    Fan et al., "PraNet: Parallel Reverse Attention Network for Polyp Segmentation", MICCAI 2020
    (deep supervision of every side output with weighted BCE + weighted IoU).

    Args:
        outputs: the victim's outputs; clean mode reads ``side_logits``, paper mode ``side_probs``.
        mask: (B, 1, H, W) reference M in {0, 1}.
        paper: the MedIS notebook form: the (min-max normalised) side probabilities are fed where
            logits belong, and PraNet's unweighted BCE term is kept (``paper_bce=True``); otherwise
            the side logits, in the saturation-safe form (``structure_loss(stable=True)``).
    """
    maps = outputs.side_probs if paper else outputs.side_logits
    if not maps:
        raise ValueError("structure loss needs at least one side output")
    mask = mask.to(maps[0].dtype)
    weights = structure_weights(mask)  # shared by every side output: it depends on the mask only
    return torch.stack([structure_loss(z, mask, paper_bce=paper, weights=weights, stable=not paper)
                        for z in maps]).sum(0)
