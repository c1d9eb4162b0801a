"""PSNR and SSIM against their closed forms (Wang et al. 2004)."""
import math

import torch

from solvers import metrics


def smooth_images(batch: int = 2, size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch, 3, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").permute(0, 2, 3, 1) * 0.8 + 0.1


def test_psnr_of_a_constant_offset_and_of_identical_images():
    images = smooth_images()
    assert torch.allclose(metrics.psnr(images, images + 0.01), torch.full((2,), 40.0), atol=1e-3)
    assert torch.equal(metrics.psnr(images, images), torch.full((2,), metrics.PSNR_CAP))


def test_ssim_is_one_on_identical_images_and_follows_the_luminance_term_for_an_offset():
    """Adding a constant c leaves variances and covariance unchanged, so SSIM = mean of the luminance term
    (2μ(μ+c) + C1)/(μ² + (μ+c)² + C1) over the windows."""
    images = smooth_images()
    assert torch.allclose(metrics.ssim(images, images), torch.ones(2), atol=1e-6)
    flat = torch.full((1, 16, 16, 1), 0.4)
    expected = (2 * 0.4 * 0.5 + 1e-4) / (0.4 ** 2 + 0.5 ** 2 + 1e-4)
    assert math.isclose(float(metrics.ssim(flat, flat + 0.1)[0]), expected, rel_tol=1e-6)
    noisy = images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    assert float(metrics.ssim(images, noisy).max()) < 0.9
