"""Image fidelity in the papers' own metrics: PSNR and SSIM of a reconstruction against its source, per image.

Images are (batch, height, width, channels) in [0, 1], as ComfyUI's IMAGE type holds them.
"""
import torch

PSNR_CAP = 100.0
"""PSNR of identical images is infinite; reported as this many dB (JSON has no inf)."""


def psnr(reference: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio 10·log10(1/MSE) in dB for a peak of 1, per image, capped at PSNR_CAP."""
    mse = (reference.double() - image.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(10 ** (-PSNR_CAP / 10)))).float()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 2-D Gaussian window of SSIM (Wang et al. 2004: 11×11, σ = 1.5)."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    line = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    window = torch.outer(line, line)
    return window / window.sum()


def ssim(reference: torch.Tensor, image: torch.Tensor, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean structural similarity per image (Wang, Bovik, Sheikh, Simoncelli 2004, eq. 13), each channel on its own
    with the Gaussian window over the valid region, averaged over channels and positions."""
    x = reference.double().permute(0, 3, 1, 2)
    y = image.double().permute(0, 3, 1, 2)
    channels = x.shape[1]
    size = min(11, x.shape[-1], x.shape[-2])
    window = gaussian_window(size, 1.5 * size / 11).to(x).expand(channels, 1, size, size)

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, window, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x ** 2
    var_y = local_mean(y * y) - mu_y ** 2
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = k1 ** 2, k2 ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(1).float()

