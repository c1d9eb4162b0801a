"""Analytic denoisers whose probability-flow ODE and per-step inverses are known in closed form."""
import math

import torch


class GaussianDataDenoiser:
    """Exact denoiser of data x0 ~ N(mean, std²·I) in VE/σ space: D(x, σ) = mean + std²/(std² + σ²)·(x − mean)."""

    def __init__(self, mean: torch.Tensor, std: float):
        self.mean, self.std = mean, std

    def __call__(self, x, sigma):
        return self.mean + self.std ** 2 / (self.std ** 2 + sigma ** 2) * (x - self.mean)

    def flow(self, x, sigma_from, sigma_to):
        """Exact PF-ODE map: x − mean scales with √(std² + σ²)."""
        return self.mean + (x - self.mean) * math.sqrt((self.std ** 2 + sigma_to ** 2) / (self.std ** 2 + sigma_from ** 2))

    def exact_step_inverse(self, x_lo, sigma_lo, sigma_hi):
        """Solution of x_hi = x_lo + (σ_hi − σ_lo)·d(x_hi, σ_hi): (x_hi − mean)(1 − a) = x_lo − mean."""
        a = (sigma_hi - sigma_lo) * sigma_hi / (self.std ** 2 + sigma_hi ** 2)
        return self.mean + (x_lo - self.mean) / (1 - a)

    def contraction(self, sigma_lo, sigma_hi):
        """Lipschitz constant of T for one step: fixed-point error shrinks by this factor per iteration."""
        return (sigma_hi - sigma_lo) * sigma_hi / (self.std ** 2 + sigma_hi ** 2)


class LinearDenoiser:
    """D(x, σ) = A(σ)·x with A(σ) = s(σ)·M on the flattened latent; a σ-dependent linear map."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix = matrix

    def weight(self, sigma):
        return 1.0 / (1.0 + sigma ** 2)

    def __call__(self, x, sigma):
        flat = x.flatten(1) @ self.matrix.T
        return (self.weight(sigma) * flat).view_as(x)

    def exact_step_inverse(self, x_lo, sigma_lo, sigma_hi):
        """Solve y = x_lo + c·(y − A y), c = (σ_hi − σ_lo)/σ_hi: y = (I − c(I − A))⁻¹ x_lo."""
        n = self.matrix.shape[0]
        c = (sigma_hi - sigma_lo) / sigma_hi
        eye = torch.eye(n, dtype=self.matrix.dtype)
        system = eye - c * (eye - self.weight(sigma_hi) * self.matrix)
        return torch.linalg.solve(system, x_lo.flatten(1).T).T.view_as(x_lo)


def random_linear_denoiser(dim: int, seed: int = 0, dtype=torch.float64) -> LinearDenoiser:
    """A linear denoiser close to the identity, as a good denoiser is near a clean latent."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(dim, dim, generator=g, dtype=dtype) / math.sqrt(dim)
    return LinearDenoiser(torch.eye(dim, dtype=dtype) * 0.9 + 0.2 * noise)


def karras_sigmas(steps: int, sigma_min=0.03, sigma_max=14.6, rho=7.0, dtype=torch.float64) -> torch.Tensor:
    """Karras et al. (2022) eq. 5 schedule with a trailing 0, as ComfyUI builds it."""
    ramp = torch.linspace(0, 1, steps, dtype=dtype)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=dtype)])
