"""SeedSelect on an oracle (no host): the loss falls, the seed stays finite, every evaluation is reported and a
callback that raises stops it."""
import pytest
import torch
from support.oracles import GaussianDataDenoiser, karras_sigmas

from solvers import CountingDenoiser
from solvers.seed_select import (
    SeedSelectOptions,
    appearance_loss,
    seed_select,
    semantic_loss,
    statistics_descriptor,
)


def case():
    """A Gaussian-data denoiser, a 6-step schedule, a random seed and two references away from its image."""
    g = torch.Generator().manual_seed(5)
    mean = torch.randn(1, 4, 6, 6, generator=g) * 0.5
    sigmas = karras_sigmas(6, dtype=torch.float32)
    start = torch.randn(1, 4, 6, 6, generator=g) * float(sigmas[0])
    references = mean + 1.0 + 0.3 * torch.randn(2, 4, 6, 6, generator=g)
    return GaussianDataDenoiser(mean, 0.8), sigmas, start, references


def test_loss_falls_and_the_seed_stays_finite():
    oracle, sigmas, start, references = case()
    counter = CountingDenoiser(oracle)
    result = seed_select(counter, start, sigmas, references, SeedSelectOptions(iterations=8, learning_rate=0.1))
    losses = result.extras["losses"]
    assert len(losses) == 9 and losses[-1] < 0.7 * losses[0]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert min(losses) == pytest.approx(losses[-1]) and torch.isfinite(result.latent).all()
    assert result.latent.shape == start.shape and not torch.equal(result.latent, start)
    # each iteration: 6 forward evaluations and 6 recomputed in the backward pass; the last pass only scores
    assert counter.evaluations == result.evaluations == 8 * 12 + 6


def test_terms_vanish_on_the_references_own_statistics():
    _, _, _, references = case()
    target = statistics_descriptor(references[:1])
    assert float(semantic_loss(references[:1], target)) == pytest.approx(0.0, abs=1e-6)
    assert float(appearance_loss(references[:1], references[:1])) == 0.0
    # the descriptor ignores where things are: a shifted latent has the same statistics
    assert torch.allclose(statistics_descriptor(references.roll(2, -1)), statistics_descriptor(references), atol=1e-6)


def test_a_raising_callback_stops_it_at_once():
    oracle, sigmas, start, references = case()
    counter = CountingDenoiser(oracle)

    def cancel(event):
        raise InterruptedError

    with pytest.raises(InterruptedError):
        seed_select(counter, start, sigmas, references, SeedSelectOptions(iterations=50), callback=cancel)
    assert counter.evaluations == 1


def test_a_diverging_step_is_named():
    """A model that overflows on latents far out of range (as half precision does), after a far too large step."""
    oracle, sigmas, start, references = case()

    def overflowing(x, sigma):
        return oracle(x, sigma) if float(x.detach().abs().max()) < 1e3 else torch.full_like(x, float("inf"))

    with pytest.raises(ValueError, match="learning_rate: the loss became NaN/inf at iteration 1"):
        seed_select(overflowing, start, sigmas, references, SeedSelectOptions(iterations=3, learning_rate=1e3))


@pytest.mark.parametrize("field,value,message", [("iterations", 0, "iterations: expected at least 1, got 0"),
                                                 ("learning_rate", float("nan"), "learning_rate: expected a finite"),
                                                 ("semantic_weight", -1.0, "semantic_weight: expected a finite")])
def test_bad_options_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        SeedSelectOptions(**{field: value})
