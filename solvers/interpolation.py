"""Moving between seeds along paths the model likes: lerp, slerp, and norm-aware optimisation (NAO; Samuel et al.,
"Norm-guided latent space exploration for text-to-image generation", NeurIPS 2023), on unit-variance seeds.

A d-dimensional standard normal seed has its norm χ_d-distributed, tightly around √(d−1); lerp cuts through the
low-norm interior, slerp keeps the endpoints' norms, NAO finds a path (and a centroid) of high likelihood.
"""
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

CENTROIDS = ("mean", "normalized_mean", "nao")
PATHS = ("lerp", "slerp", "nao")
NAO_PATH_ITERATIONS = 500
"""The NAO path's optimisation cap (authors: 10,000), to stay interactive."""
NAO_CENTROID_ITERATIONS = 2000
"""The NAO centroid's optimisation cap."""


@dataclass(frozen=True)
class PathOptions:
    """Seed Interpolate's options (defaults the node's: its schema and the tests read them here)."""
    frames: int = 5
    """Frames in the batch, endpoints included."""
    method: str = "nao"
    """One of PATHS."""


@dataclass(frozen=True)
class CentroidOptions:
    """Seed Centroid's option (default the node's and `centroid`'s)."""
    method: str = "nao"
    """One of CENTROIDS."""


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1 − t)·a + t·b for each t: a batch of len(t) points (a and b of batch 1)."""
    t = t.to(a).view(-1, *[1] * (a.ndim - 1))
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation sin((1−t)θ)/sin θ·a + sin(tθ)/sin θ·b; lerp when |cos θ| > threshold (NAO code)."""
    cosine = float((a.flatten() @ b.flatten()) / (a.norm() * b.norm()))
    if abs(cosine) > threshold:
        return lerp(a, b, t)
    theta = math.acos(cosine)
    t = t.to(a).view(-1, *[1] * (a.ndim - 1))
    return (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / math.sin(theta)


def chi_log_density(r: torch.Tensor, d: int) -> torch.Tensor:
    """log f(r) of the χ_d distribution: (d−1)·log r − r²/2 − [(d/2 − 1)·log 2 + lgamma(d/2)]."""
    return (d - 1) * torch.log(r) - r ** 2 / 2 - ((d / 2 - 1) * math.log(2) + math.lgamma(d / 2))


def path_nll(points: torch.Tensor) -> torch.Tensor:
    """Discretised line integral of −log f(‖midpoint‖) along a path of points (n, *shape) (NAO eq. 5)."""
    flat = points.flatten(1)
    segments = (flat[1:] - flat[:-1]).norm(dim=1)
    midpoints = ((flat[1:] + flat[:-1]) / 2).norm(dim=1)
    return -(segments * chi_log_density(midpoints, flat.shape[1])).sum()


def segment_penalty(points: torch.Tensor, max_length: float) -> torch.Tensor:
    """Σ relu(‖p_{j+1} − p_j‖ − ε_seg): keeps the path's points spread along it (NAO)."""
    flat = points.flatten(1)
    return torch.relu((flat[1:] - flat[:-1]).norm(dim=1) - max_length).sum()


def optimise(parameters: list, loss: Callable[[], torch.Tensor], learning_rate: float, tolerance: float,
             patience: int, max_iterations: int, callback: Optional[Callable[[int], None]]) -> int:
    """Adam until |Δloss| < tolerance for `patience` iterations in a row (the NAO authors' plateau stop)."""
    optimizer = torch.optim.Adam(parameters, lr=learning_rate)
    previous, calm = None, 0
    for iteration in range(max_iterations):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
        current = float(value.detach())
        calm = calm + 1 if previous is not None and abs(current - previous) < tolerance else 0
        previous = current
        if callback is not None:
            callback(iteration)
        if calm >= patience:
            return iteration + 1
    return max_iterations


def resample(points: torch.Tensor, frames: int) -> torch.Tensor:
    """`frames` points at equal arc length along a polyline (endpoints kept exactly)."""
    flat = points.flatten(1)
    lengths = torch.cat([flat.new_zeros(1), (flat[1:] - flat[:-1]).norm(dim=1).cumsum(0)])
    targets = torch.linspace(0, float(lengths[-1]), frames, dtype=flat.dtype)
    index = torch.searchsorted(lengths, targets, right=True).clamp(1, len(flat) - 1)
    span = (lengths[index] - lengths[index - 1]).clamp_min(1e-12)
    weight = ((targets - lengths[index - 1]) / span).unsqueeze(1)
    out = (1 - weight) * flat[index - 1] + weight * flat[index]
    out[0], out[-1] = flat[0], flat[-1]
    return out.view(frames, *points.shape[1:])


def nao_path(a: torch.Tensor, b: torch.Tensor, frames: int, resolution: int = 16, penalty: float = 1.0,
             learning_rate: float = 0.01, tolerance: float = 1e-3, patience: int = 10,
             max_iterations: int = NAO_PATH_ITERATIONS,
             callback: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """NAO interpolation: minimise path NLL + λ·segment penalty over max(resolution, frames) points from a to b with
    the authors' Adam and plateau stop, then return `frames` points at equal arc length. It starts from the slerp
    path rather than the authors' jittered chord: already in the χ_d shell, it needs far fewer iterations. Capped at
    500 iterations (authors: 10,000) to stay interactive; seeds of unequal norms rarely reach the plateau."""
    count = max(resolution, frames)
    start = slerp(a.float(), b.float(), torch.linspace(0, 1, count))
    max_length = 2 * float((a - b).norm()) / count
    with torch.inference_mode(False), torch.enable_grad():
        inner = start[1:-1].clone().requires_grad_(True)
        ends = start[:1].clone(), start[-1:].clone()

        def loss():
            points = torch.cat([ends[0], inner, ends[1]])
            return path_nll(points) + penalty * segment_penalty(points, max_length)

        optimise([inner], loss, learning_rate, tolerance, patience, max_iterations, callback)
        points = torch.cat([ends[0], inner.detach(), ends[1]])
    out = resample(points, frames).to(a.dtype)
    out[0], out[-1] = a[0], b[0]
    return out


def centroid(seeds: torch.Tensor, method: str = CentroidOptions.method, resolution: int = 8, penalty: float = 1.0,
             learning_rate: float = 0.01, tolerance: float = 1e-2, patience: int = 5,
             max_iterations: int = NAO_CENTROID_ITERATIONS,
             callback: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """The centroid of a batch of seeds: the mean; the mean rescaled to the seeds' mean norm (back into their shell);
    or NAO's centroid, jointly optimising it and one path to it from every seed (NAO centroid loss)."""
    if method not in CENTROIDS:
        raise ValueError(f"method: expected one of {CENTROIDS}, got {method!r}")
    mean = seeds.mean(0, keepdim=True)
    if method == "mean":
        return mean
    norm = seeds.flatten(1).norm(dim=1).mean()
    normalized = mean * (norm / mean.norm().clamp_min(1e-12))
    if method == "normalized_mean" or seeds.shape[0] == 1:
        return normalized
    d = seeds[0].numel()
    with torch.inference_mode(False), torch.enable_grad():
        start = seeds.float().clone()
        center = normalized.float().clone().requires_grad_(True)
        inner = torch.stack([slerp(s[None], center.detach(), torch.linspace(0, 1, resolution))[1:-1]
                             for s in start]).requires_grad_(True)
        max_lengths = [2 * float((s - normalized[0]).norm()) / resolution for s in seeds.float()]

        def loss():
            total = -chi_log_density(center.norm(), d)
            for k in range(seeds.shape[0]):
                points = torch.cat([start[k:k + 1], inner[k], center])
                total = total + path_nll(points) + penalty * segment_penalty(points, max_lengths[k])
            return total

        optimise([center, inner], loss, learning_rate, tolerance, patience, max_iterations, callback)
    return center.detach().to(seeds.dtype)


def interpolate(a: torch.Tensor, b: torch.Tensor, frames: int, method: str,
                callback: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """`frames` seeds from a to b (endpoints exact) by lerp, slerp or NAO."""
    if method not in PATHS:
        raise ValueError(f"method: expected one of {PATHS}, got {method!r}")
    if frames < 2:
        raise ValueError(f"frames: expected at least 2 (the endpoints), got {frames}")
    if method == "nao":
        return nao_path(a, b, frames, callback=callback)
    t = torch.linspace(0, 1, frames, dtype=torch.float64)
    out = (lerp if method == "lerp" else slerp)(a.double(), b.double(), t).to(a.dtype)
    out[0], out[-1] = a[0], b[0]
    return out
