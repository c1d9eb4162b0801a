"""SeedSelect (Samuel, Ben-Ari, Raviv, Darshan, Chechik, AAAI 2024): refine a seed by gradient steps so that the
image the sampler generates from it matches a few reference images, in a semantic and an appearance term
(docs/methods.md §16). The gradient runs through the whole euler sampler, checkpointed step by step.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .core import (
    NOT_ON_NODE,
    Callback,
    CountingDenoiser,
    Denoiser,
    InputScale,
    InversionResult,
    euler_step,
    notify,
    to_d,
)

LR_DROP_AT = 3
"""The iteration from which the learning rate is a tenth (the authors' main.py)."""


@dataclass(frozen=True)
class SeedSelectOptions:
    """SeedSelect's options. These defaults are the node's: its schema, bench/ and the tests read them here."""
    iterations: int = 5
    """Gradient steps (the authors: 5 from a NAO centroid, 30 from a random seed)."""
    learning_rate: float = 0.05
    """AdamW's step on the unit-variance seed, a tenth of it from iteration LR_DROP_AT (the authors: 0.05 from a NAO
    centroid)."""
    semantic_weight: float = 10.0
    """The semantic term's weight against the appearance term's 1 (the authors: 10)."""
    cfg: float = 1.0
    """The guidance the images are generated with, here and afterwards (the authors: 1 from a NAO centroid); the
    host's guider applies it."""
    appearance_weight: float = field(default=1.0, metadata=NOT_ON_NODE)
    """The appearance term's weight (the semantic weight is relative to it)."""

    def __post_init__(self):
        if self.iterations < 1:
            raise ValueError(f"iterations: expected at least 1, got {self.iterations}")
        for name in ("learning_rate", "semantic_weight", "cfg", "appearance_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite value ≥ 0, got {value}")


def statistics_descriptor(latent: torch.Tensor) -> torch.Tensor:
    """Per image, where-independent statistics of a latent: each channel's mean and standard deviation and the
    channels' Gram matrix (Gatys et al. 2016) over every position: (batch, 2C + C²). The semantic term's stand-in for
    CLIP's pooled image embedding (docs/methods.md §16)."""
    flat = latent.flatten(2)
    gram = flat @ flat.transpose(1, 2) / flat.shape[-1]
    return torch.cat([flat.mean(-1), flat.std(-1), gram.flatten(1)], dim=1)


def semantic_loss(latent: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − cos(descriptor(latent), target): the authors' CLIP-centroid term with `statistics_descriptor`."""
    return 1 - torch.nn.functional.cosine_similarity(statistics_descriptor(latent), target, dim=1).mean()


def appearance_loss(latent: torch.Tensor, centroid: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the generated latent to the references' mean latent (the authors' VAE centroid)."""
    return torch.nn.functional.mse_loss(latent, centroid.expand_as(latent))


def euler_steps(denoiser: Denoiser, sigmas: list) -> list:
    """The euler sampler over `sigmas` as one function per step."""
    return [lambda x, hi=hi, lo=lo: euler_step(x, to_d(x, hi, denoiser(x, hi)), hi, lo)
            for hi, lo in zip(sigmas[:-1], sigmas[1:])]


def sample_plain(steps: list, x: torch.Tensor) -> torch.Tensor:
    """The chain of `steps` from x."""
    for step in steps:
        x = step(x)
    return x


def checkpointed_gradient(steps: list, x: torch.Tensor, loss_of: Callable) -> tuple:
    """(loss, image, ∂loss/∂x) through the chain of `steps` from x, checkpointed: the forward pass keeps only each
    step's input latent, and the backward pass recomputes one step at a time to take its vector-Jacobian product.
    Memory: one latent per step and one step's graph; cost: each step evaluated twice, backpropagated once."""
    states = [x.detach()]
    with torch.no_grad():
        for step in steps:
            states.append(step(states[-1]))
    image = states[-1].requires_grad_(True)
    loss = loss_of(image)
    (gradient,) = torch.autograd.grad(loss, image)
    for step, state in zip(reversed(steps), reversed(states[:-1])):
        state = state.requires_grad_(True)
        (gradient,) = torch.autograd.grad(step(state), state, gradient)
    return loss.detach(), image.detach(), gradient


def seed_select(denoiser: Denoiser, start: torch.Tensor, sigmas: torch.Tensor, references: torch.Tensor,
                options: SeedSelectOptions = SeedSelectOptions(), *, callback: Optional[Callback] = None,
                input_scale: Optional[InputScale] = None) -> InversionResult:
    """Refine the seed x_N = `start` (model space, at sigmas[0]) so that euler's image from it matches `references`
    (model-space latents, a batch): minimise w_s·semantic + w_a·appearance by AdamW on the unit seed x_N/σ_N, the
    gradient through the whole sampler. Returns the seed of the lowest loss met; residuals: the loss per iteration.
    `input_scale` is not used (euler needs no level scale): the host calls every method with it."""
    values = sigmas.tolist()
    scale = values[0]
    losses, best, best_loss = [], start, math.inf
    progress = {"step": 0, "steps": options.iterations, "iteration": 0, "residual": 0.0}
    counter = CountingDenoiser(denoiser, lambda: notify(callback, **progress))
    with torch.inference_mode(False), torch.enable_grad():
        references = references.clone().to(start)
        target, centroid = statistics_descriptor(references).mean(0, keepdim=True), references.mean(0, keepdim=True)

        def loss_of(image: torch.Tensor) -> torch.Tensor:
            return (options.semantic_weight * semantic_loss(image, target)
                    + options.appearance_weight * appearance_loss(image, centroid))

        steps = euler_steps(counter, values)
        unit = torch.nn.Parameter(start.clone() / scale)
        optimizer = torch.optim.AdamW([unit], lr=options.learning_rate)
        for iteration in range(options.iterations + 1):  # the last pass only scores the last step
            progress.update(step=min(iteration, options.iterations - 1), iteration=iteration)
            if iteration == options.iterations:
                with torch.no_grad():
                    value = float(loss_of(sample_plain(steps, unit * scale)))
            else:
                loss, _, gradient = checkpointed_gradient(steps, unit.detach() * scale, loss_of)
                value = float(loss)
            if not math.isfinite(value):
                if iteration == 0:
                    raise ValueError("model: the image generated from the seed is NaN/inf before any step")
                raise ValueError(f"learning_rate: the loss became NaN/inf at iteration {iteration} (from "
                                 f"{losses[0]:.4g}); lower it")
            losses.append(value)
            progress["residual"] = value
            if value < best_loss:
                best, best_loss = unit.detach() * scale, value
            if iteration == options.iterations:
                break
            if iteration == LR_DROP_AT:
                for group in optimizer.param_groups:
                    group["lr"] = options.learning_rate / 10
            unit.grad = gradient * scale  # x = σ_N·unit
            optimizer.step()
    return InversionResult(latent=best.detach().clone(), residuals=[losses], evaluations=counter.evaluations,
                           extras={"losses": losses})
