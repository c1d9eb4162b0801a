"""Seed interpolation and centroids (no host): the properties NAO's paper states, on Gaussian seeds."""
import math

import pytest
import torch

from solvers.interpolation import centroid, chi_log_density, interpolate, lerp, path_nll, resample, slerp

SHAPE = (1, 4, 16, 16)


def seeds(count=2, seed=0, scales=None):
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(*SHAPE, generator=g) for _ in range(count)]
    return [s * k for s, k in zip(out, scales)] if scales else out


@pytest.mark.parametrize("method", ["lerp", "slerp", "nao"])
def test_endpoints_are_exact_and_frames_in_order(method):
    a, b = seeds()
    path = interpolate(a, b, 7, method)
    assert path.shape == (7, *SHAPE[1:])
    assert torch.equal(path[0], a[0]) and torch.equal(path[-1], b[0])
    distance_to_b = (path - b).flatten(1).norm(dim=1)
    assert all(later < earlier for earlier, later in zip(distance_to_b, distance_to_b[1:]))


def test_slerp_keeps_norms_between_the_endpoint_norms():
    a, b = seeds(scales=[0.9, 1.1])
    norms = slerp(a, b, torch.linspace(0, 1, 11)).flatten(1).norm(dim=1)
    low, high = sorted([float(a.norm()), float(b.norm())])
    assert (norms >= low - 1e-3).all() and (norms <= high + 1e-3).all()
    assert float(lerp(a, b, torch.tensor([0.5])).norm()) < low * 0.8  # lerp's middle drops out of the shell


def test_nao_path_stays_in_the_shell_and_is_more_likely_than_slerp_and_lerp():
    a, b = seeds(seed=1)
    d = a.numel()
    paths = {m: interpolate(a, b, 16, m) for m in ("lerp", "slerp", "nao")}
    nll = {m: float(path_nll(p.double())) for m, p in paths.items()}
    assert nll["nao"] < nll["slerp"] < nll["lerp"], nll
    norms = paths["nao"].flatten(1).norm(dim=1)
    # the typical shell of a d-dimensional standard normal: √d ± 3 (its norm has standard deviation ≈ 1/√2)
    assert ((norms - math.sqrt(d)).abs() < 3).all(), norms


def test_centroids():
    a, b, c = seeds(3, seed=2)
    batch = torch.cat([a, b, c])
    d = a.numel()
    for method in ("mean", "normalized_mean"):
        assert torch.allclose(centroid(torch.cat([a, a, a]), method), a, atol=1e-5), method
    # NAO's loss also holds −log f(‖c‖), which pulls the norm toward the χ_d mode: identical seeds give back that
    # seed up to the small pull (0.1 % here)
    same = centroid(torch.cat([a, a, a]), "nao")
    assert float((same - a).norm() / a.norm()) < 1e-2
    mean, normalized, nao = (centroid(batch, m) for m in ("mean", "normalized_mean", "nao"))
    assert torch.allclose(mean, batch.mean(0, keepdim=True))
    assert float(mean.norm()) < 0.7 * math.sqrt(d)  # the plain mean falls inside the shell
    assert abs(float(normalized.norm()) - float(batch.flatten(1).norm(dim=1).mean())) < 1e-3
    assert abs(float(nao.norm()) - math.sqrt(d)) < 3
    # NAO's centroid is at least as likely under the χ_d prior as the rescaled mean it started from
    nao_density = float(chi_log_density(nao.norm().double(), d))
    assert nao_density >= float(chi_log_density(normalized.norm().double(), d)) - 1e-3


def test_resample_keeps_endpoints_and_spacing():
    line = torch.linspace(0, 1, 50).view(50, 1) ** 2  # unequal spacing along a line
    out = resample(line, 6).flatten()
    assert out[0] == 0 and out[-1] == 1
    assert torch.allclose(out[1:] - out[:-1], torch.full((5,), 0.2), atol=1e-3)


@pytest.mark.parametrize("call,message", [
    (lambda a, b: interpolate(a, b, 1, "lerp"), "frames: expected at least 2"),
    (lambda a, b: interpolate(a, b, 5, "spline"), "method: expected one of"),
    (lambda a, b: centroid(torch.cat([a, b]), "median"), "method: expected one of"),
])
def test_bad_options(call, message):
    a, b = seeds()
    with pytest.raises(ValueError, match=message):
        call(a, b)


@pytest.mark.parametrize("method", ["lerp", "slerp", "nao"])
def test_video_seeds_interpolate_and_average_over_all_non_batch_dimensions(method):
    """A 5-D video seed (1, channels, frames, height, width) is one point of dimension d = its numel: its paths and
    centroids are the 4-D seed's of the same numbers, reshaped (norms over every non-batch dimension)."""
    a, b, c = seeds(3, seed=3)
    video = (1, 4, 4, 4, 16)  # SHAPE's 16×16 as 4 frames of 4×16
    path = interpolate(a.reshape(video), b.reshape(video), 5, method)
    assert path.shape == (5, *video[1:])
    assert torch.allclose(path.reshape(5, *SHAPE[1:]), interpolate(a, b, 5, method), atol=1e-5)
    batch = torch.cat([a, b, c])
    centre = {"lerp": "mean", "slerp": "normalized_mean", "nao": "nao"}[method]
    assert torch.allclose(centroid(batch.reshape(3, *video[1:]), centre).reshape(1, *SHAPE[1:]),
                          centroid(batch, centre), atol=1e-5)
