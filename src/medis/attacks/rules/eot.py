"""EOT: any rule, its gradient averaged over random transformations of the input.

Expectation over Transformation (Athalye, Engstrom, Ilyas, Kwok, "Synthesizing Robust Adversarial
Examples", ICML 2018) is how a randomised defence is attacked honestly (Athalye, Carlini, Wagner,
"Obfuscated Gradients Give a False Sense of Security", ICML 2018, §5.3): the gradient of one random
draw describes that draw only, so the attack follows the mean over N draws t_1..t_N,

    ∇ ≈ (1/N) Σ_i ∇_x L(victim(t_i(x))),

taken at the wrapped rule's gradient point. Everything else (state, gradient point, step, stages)
is the wrapped rule's. Transforms (``transform``):

- ``identity``: the victim as it is, N times: the expectation over a randomised victim's own
  randomness (random resizing, noise or dropout inside the model). Its first draw reuses the pass
  that scored the iterate, so N = 1 is the wrapped rule exactly;
- ``rescale``: a bilinear resize to a random scale s ~ U(``scale``) of the image's size and back
  (the random resizing of Xie, Wang, Zhang, Ren, Yuille, "Mitigating Adversarial Effects Through
  Randomization", ICLR 2018; back to the image's size, so that the prediction stays aligned with
  the reference);
- ``noise``: Gaussian noise of standard deviation ``sigma`` (randomised smoothing's draws);
- ``jpeg``: JPEG at a random quality in ``quality`` (Guo, Rana, Cissé, van der Maaten, "Countering
  Adversarial Images using Input Transformations", ICLR 2018), its forward value exact and its
  backward pass the identity (BPDA, Athalye et al. 2018 §4.1).

Each draw of a replica comes from a generator seeded by the replica (run seed, image id, loss), the
step and the draw's number (:class:`~medis.attacks.rules.base.GradientAt`'s ``seeds``): a replica's
draws do not depend on which replicas share its batch. Each draw costs one forward and one backward
pass.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from medis.attacks.budget import Budget, check_number
from medis.attacks.rules.base import Gradient, GradientAt, Stage, State, StepInfo, Transform, UpdateRule
from medis.errors import ConfigError
from medis.models.frontend import BPDA

__all__ = ["EOT", "TRANSFORMS"]

TRANSFORMS = ("identity", "rescale", "noise", "jpeg")
"""``attack.rule.transform`` values (module docstring)."""


def draw_seed(seed: int, draw: int) -> int:
    """The seed of draw ``draw`` of a replica whose step seed is ``seed``."""
    return (int(seed) * 1_000_003 + int(draw) + 1) % (2**63)


def _uniform(seed: int, low: float, high: float) -> float:
    """One U(low, high) value from the generator of ``seed``."""
    return low + (high - low) * float(torch.rand(1, generator=torch.Generator().manual_seed(seed)))


def rescaled(x: torch.Tensor, seeds: Sequence[int], scale: tuple[float, float]) -> torch.Tensor:
    """Each row of ``x`` (n, C, H, W) resized (bilinear) to a random scale of its size and back."""
    height, width = x.shape[-2:]
    rows = []
    for r, seed in enumerate(seeds):
        factor = _uniform(seed, *scale)
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        row = x[r:r + 1]
        if size != (height, width):
            row = F.interpolate(F.interpolate(row, size=size, mode="bilinear", align_corners=False),
                                size=(height, width), mode="bilinear", align_corners=False)
        rows.append(row)
    return torch.cat(rows)


def noisy(x: torch.Tensor, seeds: Sequence[int], sigma: float) -> torch.Tensor:
    """Each row of ``x`` (n, C, H, W) plus Gaussian noise of std ``sigma`` from its own generator."""
    noise = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(seed)) for seed in seeds])
    return x + sigma * noise.to(x.device, x.dtype, non_blocking=True)  # drawn per row on the host; not waited for


def jpeg(x: torch.Tensor, seeds: Sequence[int], quality: tuple[int, int]) -> torch.Tensor:
    """Each row of ``x`` (n, 3, H, W) in [0, 1] saved as JPEG at a random quality and read back;
    the backward pass is the identity (BPDA)."""
    qualities = [int(round(_uniform(seed, quality[0] - 0.5, quality[1] + 0.5))) for seed in seeds]

    def compress(batch: torch.Tensor) -> torch.Tensor:
        pixels = (batch.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for image, q in zip(pixels, qualities):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=min(max(q, 1), 100))
            out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(batch.device, batch.dtype) / 255

    return BPDA(compress)(x)


class _Through:
    """A :class:`GradientAt` that sees every point through ``transform`` first (then through the
    transform a nested rule passes, if any)."""

    def __init__(self, at: GradientAt, transform: Transform | None) -> None:
        self.at, self.transform, self.seeds = at, transform, at.seeds

    def __call__(self, point: torch.Tensor, transform: Transform | None = None) -> Gradient:
        if self.transform is None or transform is None:
            return self.at(point, self.transform or transform)
        first = self.transform
        return self.at(point, lambda z: transform(first(z)))


@dataclass(frozen=True)
class EOT(UpdateRule):
    """The wrapped ``rule`` (a rule, its name, or ``{name: ..., **parameters}``) with its gradient
    averaged over ``samples`` draws of ``transform`` (module docstring); ``scale`` (rescale),
    ``sigma`` (noise) and ``quality`` (jpeg) are the transforms' ranges."""

    name: ClassVar[str] = "eot"
    rule: Any = "sign"
    samples: int = 4
    transform: str = "rescale"
    scale: tuple[float, float] = (0.9, 1.1)
    sigma: float = 4.0 / 255.0
    quality: tuple[int, int] = (60, 95)

    def __post_init__(self) -> None:
        from medis.attacks.rules import as_rule

        object.__setattr__(self, "rule", as_rule(self.rule, "attack.rule.rule"))
        check_number(self.samples, "attack.rule.samples", low=1, integer=True)
        object.__setattr__(self, "samples", int(self.samples))
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"attack.rule.transform={self.transform!r} must be one of {', '.join(TRANSFORMS)}")
        object.__setattr__(self, "scale", _pair(self.scale, "attack.rule.scale", float, 0.0, None))
        object.__setattr__(self, "quality", _pair(self.quality, "attack.rule.quality", int, 0, 100))
        check_number(self.sigma, "attack.rule.sigma", low=0)

    def check(self, budget: Budget) -> None:
        self.rule.check(budget)

    def tracked_loss(self, loss: str) -> str | None:
        return self.rule.tracked_loss(loss)

    def stage(self, position: int, total: int) -> Stage:
        return self.rule.stage(position, total)

    def init(self, x0: torch.Tensor, budget: Budget) -> State:
        return self.rule.init(x0, budget)

    def gradient_point(self, x: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
                       budget: Budget) -> torch.Tensor:
        return self.rule.gradient_point(x, x0, direction, state, budget)

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        return self.rule.step(x, grad, x0, direction, state, info, budget)

    def draw(self, seeds: Sequence[int], index: int) -> Transform | None:
        """The transform of draw ``index`` for rows whose step seeds are ``seeds`` (``None``: identity)."""
        if self.transform == "identity":
            return None
        row_seeds = [draw_seed(seed, index) for seed in seeds]
        if self.transform == "rescale":
            return partial(rescaled, seeds=row_seeds, scale=self.scale)
        if self.transform == "noise":
            return partial(noisy, seeds=row_seeds, sigma=self.sigma)
        return partial(jpeg, seeds=row_seeds, quality=self.quality)

    def gradient(self, point: torch.Tensor, at: GradientAt) -> Gradient:
        """The mean over ``samples`` draws of the wrapped rule's gradient, each through its transform."""
        seeds = at.seeds if self.transform != "identity" else ()
        total: Gradient | None = None
        for index in range(self.samples):
            found = self.rule.gradient(point, _Through(at, self.draw(seeds, index)))
            total = found if total is None else Gradient(
                total.grad + found.grad, total.loss + found.loss,
                None if found.tracked is None else total.tracked + found.tracked)
        assert total is not None
        return Gradient(total.grad / self.samples, total.loss / self.samples,
                        None if total.tracked is None else total.tracked / self.samples)


def _pair(value: Any, key: str, kind: type, low: float, high: float | None) -> tuple:
    """``value`` as a non-decreasing pair (a, b) of ``kind`` with low < a and b <= high (ConfigError otherwise)."""
    try:
        pair = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or pair[0] > pair[1] or pair[0] <= low or (high is not None and pair[1] > high):
        bounds = f"in ({low:g}, {high:g}]" if high is not None else f"above {low:g}"
        raise ConfigError(f"{key} must be two numbers [low, high] {bounds}, low <= high, got {value!r}")
    return pair
