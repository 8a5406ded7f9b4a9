"""The differentiable victim: preprocessing moved INTO the autograd graph.

MedIS (Shukla, Gupta, Gupta, Multimedia Tools and Applications 2023) attacks the image in [0, 1]
at its ORIGINAL size. A data loader that resizes with PIL and normalises before the model hides
those steps from the gradient; :class:`Victim` does them in the graph instead:

    x in [0,1] (B,3,H,W) -> bilinear resize to the network size -> (x - mean) / std -> model
    -> each side output (logits) bilinearly resized back to the mask size (H, W)
    -> fused probability map P (B,1,H,W)

Fusion of the side outputs (``fusion``):

- ``paper``: sigmoid of each side output, min-max normalised per image,
  ``p <- (p - min p) / (max p - min p + 1e-8)``, then the mean of the maps (MedIS notebooks,
  following PraNet's test script);
- ``clean``: mean of the side logits, then sigmoid (a proper probability; no per-image rescaling);
- ``last``: sigmoid of the last (finest) side output only, as PraNet's own evaluation uses.

Other non-differentiable steps get the same treatment (the paper's "replace non-differentiable
layers with differentiable approximations"):

- a hard threshold ``x > t`` becomes a steep sigmoid :func:`soft_threshold`;
- an argmax over classes becomes a softmax (:func:`soft_argmax_onehot`, with a temperature);
- anything else (JPEG, quantisation, median filters, ...) keeps its exact forward value and gets an
  approximate backward pass through :class:`BPDA` (Athalye et al., "Obfuscated Gradients Give a
  False Sense of Security", ICML 2018): identity by default, or the gradient of a differentiable
  surrogate.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medis.data.resize import resize_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Fusion = Literal["paper", "clean", "last"]
FUSIONS = ("paper", "clean", "last")
MINMAX_EPS = 1e-8


@dataclass
class VictimOutput:
    """What the victim returns for a batch, everything at MASK size (H, W).

    Attributes:
        side_logits: one (B, 1, H, W) logit map per side output (PraNet: maps 5, 4, 3, 2).
        prob: fused probability map (B, 1, H, W) in [0, 1] (see the module docstring).
        side_probs: (B, 1, H, W) per side output as fused (``paper``: min-max normalised sigmoids;
            otherwise plain sigmoids).
        logit: (B, 1, H, W) the fused logit, ``prob = sigmoid(logit)`` (``clean``: the mean of the side
            logits; ``last``: the last one); ``None`` for the paper fusion, which has none. Losses
            read it where it exists: gradients through a probability vanish where it saturates.
    """

    side_logits: tuple[torch.Tensor, ...]
    prob: torch.Tensor
    side_probs: tuple[torch.Tensor, ...]
    logit: torch.Tensor | None = None

    @property
    def mask(self) -> torch.Tensor:
        """The binary prediction: ``prob`` rounded at 0.5, (B, 1, H, W) float."""
        return (self.prob > 0.5).float()


def minmax_per_image(p: torch.Tensor, eps: float = MINMAX_EPS) -> torch.Tensor:
    """(p - min) / (max - min + eps) with min/max over each image's pixels. (B, C, H, W) -> same."""
    flat = p.flatten(1)
    low = flat.min(dim=1).values.view(-1, *([1] * (p.dim() - 1)))
    high = flat.max(dim=1).values.view(-1, *([1] * (p.dim() - 1)))
    return (p - low) / (high - low + eps)


def fuse_side_outputs(side_logits: Sequence[torch.Tensor], fusion: Fusion) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Fuse side logit maps (each (B,1,H,W)) into a probability map; see the module docstring.

    Returns:
        (fused probability (B,1,H,W), per-side probabilities as used by the fusion).
    """
    out = fused_output(side_logits, fusion)
    return out.prob, out.side_probs


def fused_output(side_logits: Sequence[torch.Tensor], fusion: Fusion) -> VictimOutput:
    """The :class:`VictimOutput` of side logit maps (each (B,1,H,W)) under ``fusion`` (module docstring)."""
    side_logits = tuple(side_logits)
    if fusion == "paper":
        probs = tuple(minmax_per_image(torch.sigmoid(z)) for z in side_logits)
        return VictimOutput(side_logits, torch.stack(probs).mean(0), probs)
    probs = tuple(torch.sigmoid(z) for z in side_logits)
    if fusion == "clean":
        logit = torch.stack(side_logits).mean(0)
        return VictimOutput(side_logits, torch.sigmoid(logit), probs, logit)
    if fusion == "last":
        return VictimOutput(side_logits, probs[-1], probs, side_logits[-1])
    raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")


class Victim(nn.Module):
    """A segmentation model as a differentiable function of the [0, 1] image at original size.

    Args:
        model: maps a normalised (B, 3, S, S) batch to one logit map (B, 1, S, S) or a tuple of them.
        size: network input size S (int, or (height, width)).
        mean, std: per-channel normalisation (ImageNet by default).
        fusion: ``paper``, ``clean`` or ``last`` (see the module docstring).
        antialias: antialiased bilinear downscaling (:mod:`medis.data.resize`: the loaders' resize,
            PIL's); off by default, as in a plain ``F.interpolate`` and the MedIS notebooks.
    """

    def __init__(self, model: nn.Module, size: int | tuple[int, int] = 352,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 fusion: Fusion = "paper", antialias: bool = False) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.model = model
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.fusion = fusion
        self.antialias = antialias
        # float64, cast to the images' dtype at use: a float64 victim gets the exact constants, a
        # float32 one the same float32 values as ever
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, S, S) resized (the project's one resize,
        :func:`medis.data.resize.resize_images`) and normalised, in the graph."""
        images = resize_images(images, self.size, antialias=self.antialias)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def side_logits(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, ...]:
        """The model's side outputs as logits resized (bilinear) to ``out_size`` (default: input size)."""
        out = self.model(self.preprocess(images))
        maps = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        target = tuple(out_size) if out_size is not None else tuple(images.shape[-2:])
        return tuple(
            m if tuple(m.shape[-2:]) == target else F.interpolate(m, size=target, mode="bilinear", align_corners=False)
            for m in maps)

    def forward(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> VictimOutput:
        """Predict on a batch of same-size images.

        Args:
            images: (B, 3, H, W) in [0, 1] at original size.
            out_size: mask size (default (H, W)).

        Returns:
            A :class:`VictimOutput` at mask size.
        """
        return fused_output(self.side_logits(images, out_size), self.fusion)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The binary prediction ``prob > 0.5`` of :meth:`forward`, (B, 1, H, W) bool, bit for bit, with
        a fraction of its memory: under the ``clean`` and ``last`` fusions the side outputs are
        brought to the mask size one at a time and summed in place (``forward`` keeps every side
        map, its probability and their stack at mask size: some 60 bytes a pixel, gigabytes at ISIC's
        sizes). The ``paper`` fusion's per-image min-max needs every map: it runs ``forward``."""
        if self.fusion == "paper":
            return self(images, out_size).prob > 0.5
        return self._predict_from(self.model(self.preprocess(images)), tuple(out_size or images.shape[-2:]))

    def _predict_from(self, out: Any, size: tuple[int, int]) -> torch.Tensor:
        """``prob > 0.5`` of the network's output ``out`` under the clean or last fusion at ``size``."""
        maps = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        if self.fusion == "last":
            maps = maps[-1:]
        total = None
        for side in maps:
            at_size = side if tuple(side.shape[-2:]) == size else F.interpolate(side, size=size, mode="bilinear",
                                                                               align_corners=False)
            total = at_size.clone() if total is None else total.add_(at_size)
        if self.fusion == "clean":
            total.div_(len(maps))
        return torch.sigmoid_(total) > 0.5

    @torch.no_grad()
    def real_predict(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The binary prediction of :meth:`real_pipeline`, (B, 1, H, W) bool, as lean as :meth:`predict`."""
        if self.fusion == "paper":
            return self.real_pipeline(images, out_size).prob > 0.5
        return self._predict_from(self.model(self._real_inputs(images)), tuple(out_size or images.shape[-2:]))

    def _real_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """What the loaders feed the network for ``images``: 8-bit, the evaluation loader's own
        transform (:func:`medis.data.transforms.eval_transform`: the resize to the network size),
        normalised (:meth:`real_pipeline`)."""
        from medis.data.transforms import eval_transform

        transform = eval_transform(self.size)
        pixels = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        empty = np.zeros(pixels.shape[1:3], dtype=np.uint8)
        resized = [transform(image=image, mask=empty)["image"] for image in pixels]
        batch = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).to(images.device, images.dtype) / 255
        return (batch - self.mean.to(batch.dtype)) / self.std.to(batch.dtype)

    @torch.no_grad()
    def real_pipeline(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> VictimOutput:
        """The prediction the model makes of ``images`` once they are 8-bit files read by the loaders
        (this project's evaluation loader, as PraNet's test loader: 8-bit image, the resize to the
        network size, 8-bit again, ``ToTensor``, ``Normalize``): each image is rounded to 8 bits, run
        through the evaluation loader's own transform, then normalised; the side outputs return to
        the mask size (bilinear) and are fused. No gradient. (B, 3, H, W) in [0, 1] ->
        :class:`VictimOutput`. The engine hands it images already quantised inside the budget
        (:meth:`medis.attacks.budget.Budget.quantize`).

        The attack's own front end is differentiable and sees the float image; this is what a user of
        the model would feed it, so a success that survives here is real.
        """
        out = self.model(self._real_inputs(images))
        maps = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        target = tuple(out_size) if out_size is not None else tuple(images.shape[-2:])
        return fused_output(tuple(F.interpolate(m, size=target, mode="bilinear", align_corners=False) for m in maps),
                            self.fusion)

    def forward_list(self, images: Sequence[torch.Tensor]) -> list[VictimOutput]:
        """Predict on images of mixed sizes with ONE network pass: each (3, H_i, W_i) is resized to
        the network size, the batch runs once, and each output returns to its own size."""
        batch = torch.cat([self.preprocess(img.unsqueeze(0)) for img in images])
        out = self.model(batch)
        maps = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        results = []
        for i, img in enumerate(images):
            size = tuple(img.shape[-2:])
            logits = tuple(F.interpolate(m[i:i + 1], size=size, mode="bilinear", align_corners=False) for m in maps)
            results.append(fused_output(logits, self.fusion))
        return results

    def freeze(self) -> "Victim":
        """Inference mode for attacks: eval() (batch norm, dropout) and no gradient for the weights."""
        self.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        return self


def predict_mask(victim: Callable[..., Any], images: torch.Tensor, out_size: tuple[int, int] | None = None,
                 real: bool = False) -> torch.Tensor:
    """``victim``'s binary prediction of ``images`` (B, 3, H, W) at ``out_size`` (default: their size),
    (B, 1, h, w) bool, without gradients: :meth:`Victim.predict` (``real``: :meth:`Victim.real_predict`)
    for a :class:`Victim` whose ``forward`` is :class:`Victim`'s, else
    ``victim(images[, out_size]).prob > 0.5`` (any callable victim; the fast path's wrappers, whose
    calls carry their precision)."""
    with torch.no_grad():
        if isinstance(victim, Victim) and type(victim).forward is Victim.forward:
            return (victim.real_predict if real else victim.predict)(images, out_size)
        call = victim.real_pipeline if real else victim
        return (call(images) if out_size is None else call(images, out_size)).prob > 0.5


@contextlib.contextmanager
def frozen(model: Any) -> Iterator[None]:
    """Eval mode and no parameter gradients for ``model`` inside the block (an attack's rule: only
    the input gets gradients); the previous mode and flags are restored. A no-op for anything that
    is not an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        model.train(was_training)
        for p, flag in flags:
            p.requires_grad_(flag)


class _StraightThrough(torch.autograd.Function):
    """Forward: ``exact``; backward: the gradient of ``surrogate`` (already evaluated)."""

    @staticmethod
    def forward(ctx, exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:  # noqa: D401
        return exact

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, grad


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation (Athalye et al., ICML 2018).

    Wraps a non-differentiable function ``fn``: the forward value is exactly ``fn(x)``; the backward
    pass is that of ``surrogate(x)`` (identity when ``None``, the usual choice for preprocessing
    that roughly preserves the image such as JPEG or quantisation).

    Args:
        fn: the non-differentiable function, (any shape) -> same shape as ``surrogate(x)``.
        surrogate: a differentiable approximation of ``fn``; identity by default.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor],
                 surrogate: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.surrogate = surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            exact = self.fn(x)
        approx = x if self.surrogate is None else self.surrogate(x)
        return _StraightThrough.apply(exact, approx)


def soft_threshold(x: torch.Tensor, threshold: float = 0.5, steepness: float = 50.0) -> torch.Tensor:
    """Differentiable ``x > threshold``: ``sigmoid(steepness * (x - threshold))``, same shape."""
    return torch.sigmoid(steepness * (x - threshold))


def soft_argmax_onehot(logits: torch.Tensor, dim: int = 1, temperature: float = 1.0) -> torch.Tensor:
    """Differentiable one-hot argmax over ``dim``: ``softmax(logits / temperature)``, same shape."""
    return torch.softmax(logits / temperature, dim=dim)
