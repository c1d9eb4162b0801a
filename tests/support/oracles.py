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
        ratio = (self.std ** 2 + sigma_to ** 2) / (self.std ** 2 + sigma_from ** 2)
        return self.mean + (x - self.mean) * math.sqrt(ratio)

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


class GaussianMixtureDenoiser:
    """Exact denoiser of data x0 ~ Σ_k π_k N(μ_k, std²·I): the posterior-weighted mean of per-mode Gaussian
    denoisers."""

    def __init__(self, means: torch.Tensor, std: float, weights=None):
        self.means, self.std = means, std  # means: (modes, *shape)
        self.log_weights = torch.log(torch.as_tensor(weights, dtype=means.dtype) if weights is not None
                                     else torch.full((means.shape[0],), 1.0 / means.shape[0], dtype=means.dtype))

    def responsibilities(self, x, sigma):
        variance = self.std ** 2 + sigma ** 2
        distance = (x.unsqueeze(1) - self.means.unsqueeze(0)).flatten(2).pow(2).sum(2)  # (batch, modes)
        return torch.softmax(self.log_weights - distance / (2 * variance), dim=1)

    def __call__(self, x, sigma):
        shrink = self.std ** 2 / (self.std ** 2 + sigma ** 2)
        per_mode = self.means.unsqueeze(0) + shrink * (x.unsqueeze(1) - self.means.unsqueeze(0))
        weights = self.responsibilities(x, sigma).view(*x.shape[:1], -1, *[1] * (x.ndim - 1))
        return (weights * per_mode).sum(1)

    def log_density(self, x):
        """log p(x) of the data distribution (up to the shared normalising constant)."""
        distance = (x.unsqueeze(1) - self.means.unsqueeze(0)).flatten(2).pow(2).sum(2)
        return torch.logsumexp(self.log_weights - distance / (2 * self.std ** 2), dim=1)


class SubspaceGaussianDenoiser:
    """Exact denoiser of data x0 = mean + U·z, z ~ N(0, std²·I_k), on a k-dimensional subspace (U orthonormal).

    D(x, σ) = mean + U·std²/(std² + σ²)·Uᵀ(x − mean): its range is the data subspace, so a latent with a
    component off the subspace is not the output of any sampler step (a stand-in for a VAE encoding that the
    model cannot generate with this prompt).
    """

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, std: float):
        self.mean, self.basis, self.std = mean, basis, std  # basis: (numel, k), orthonormal columns

    def __call__(self, x, sigma):
        flat = (x - self.mean).flatten(1)
        coefficients = flat @ self.basis * (self.std ** 2 / (self.std ** 2 + sigma ** 2))
        return self.mean + (coefficients @ self.basis.T).view_as(x)

    def off_subspace(self, x):
        """Per-sample norm of the component of x − mean orthogonal to the data subspace."""
        flat = (x - self.mean).flatten(1)
        return (flat - flat @ self.basis @ self.basis.T).norm(dim=1)


def random_subspace_denoiser(shape, rank: int, std: float = 0.7, seed: int = 0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    numel = math.prod(shape)
    basis, _ = torch.linalg.qr(torch.randn(numel, rank, generator=generator, dtype=dtype))
    mean = 0.3 * torch.randn(1, *shape, generator=generator, dtype=dtype)
    return SubspaceGaussianDenoiser(mean, basis, std)


class FlowGaussianDataDenoiser:
    """Exact denoiser of Gaussian data under rectified flow x = (1 − σ)·x0 + σ·n (ComfyUI's CONST models):
    D(x, σ) = mean + (1 − σ)·std²/((1 − σ)²·std² + σ²)·(x − (1 − σ)·mean)."""

    def __init__(self, mean: torch.Tensor, std: float):
        self.mean, self.std = mean, std

    def __call__(self, x, sigma):
        alpha = 1.0 - sigma
        gain = alpha * self.std ** 2 / (alpha ** 2 * self.std ** 2 + sigma ** 2)
        return self.mean + gain * (x - alpha * self.mean)


def flow_sigmas(steps: int, shift: float = 3.0, dtype=torch.float64) -> torch.Tensor:
    """SD3-style shifted flow schedule from σ = 1 to 0."""
    t = torch.linspace(1, 0, steps + 1, dtype=dtype)
    return shift * t / (1 + (shift - 1) * t)
