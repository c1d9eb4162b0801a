"""The adapter's model patches on the tiny SD1.5-architecture model, inside the test process: a patch is called where
it is installed, ordinary attention through it leaves the guided model's output unchanged, another attention changes
it, and the caller's model stays unpatched."""
import pytest
import torch
from support.inprocess import import_pack, random_conditioning, tiny_model


@pytest.fixture(scope="module")
def model():
    import_pack()
    with torch.inference_mode():
        return tiny_model()


def denoised(model) -> torch.Tensor:
    """D(x, σ = 1) of the guided model on a fixed latent, through the adapter's guided run."""
    from seedfinder.nodes import host
    from seedfinder.solvers import InversionResult

    def once(denoiser, x0, sigmas, input_scale=None, callback=None):
        return InversionResult(latent=denoiser(x0, 1.0))

    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))}
    with torch.inference_mode():
        return host.run_guided(once, model, host.Prompt(random_conditioning(5), None, 1.0), latent,
                               torch.tensor([1.0, 0.0])).result.latent


def test_the_tiny_unet_has_attention_blocks_on_both_sides(model):
    from seedfinder.nodes.host import patches
    blocks = patches.unet_attention_blocks(model)
    assert {name for name, _, _ in blocks} == {"input", "output"}, blocks  # built without a middle block
    assert len(set(blocks)) == len(blocks)


@pytest.mark.parametrize("attention", ["attn1", "attn2"])
def test_ordinary_attention_through_the_replace_patch_changes_nothing(model, attention):
    from seedfinder.nodes.host import patches
    blocks = patches.unet_attention_blocks(model)
    seen = []

    def replace(q, k, v, extra_options):
        seen.append((*extra_options["block"], extra_options["block_index"]))
        return patches.ordinary_attention(q, k, v, extra_options)

    patched = patches.attention_replaced(model, attention, blocks, replace)
    assert set(seen) == set()  # installing runs nothing
    assert torch.allclose(denoised(patched), denoised(model), rtol=1e-5, atol=1e-6)
    assert set(seen) == set(blocks)
    assert "patches_replace" not in model.model_options["transformer_options"]  # the caller's model is untouched


def test_another_attention_in_one_block_changes_the_output(model):
    from seedfinder.nodes.host import patches
    block = patches.unet_attention_blocks(model)[0]
    silenced = patches.attention_replaced(model, "attn2", [block], lambda q, k, v, extra: torch.zeros_like(q))
    assert not torch.allclose(denoised(silenced), denoised(model), rtol=1e-3, atol=1e-4)


def test_the_attention_override_sees_every_attention_call(model):
    from seedfinder.nodes.host import patches
    calls = []

    def override(attention, *args, **kwargs):
        calls.append(attention.__name__)
        return attention(*args, **kwargs)

    patched = patches.attention_overridden(model, override)
    assert torch.allclose(denoised(patched), denoised(model), rtol=1e-5, atol=1e-6)
    # every transformer block runs self- and cross-attention once per evaluation (cfg 1: one batch)
    assert len(calls) == 2 * len(patches.unet_attention_blocks(model))
    assert "optimized_attention_override" not in model.model_options["transformer_options"]


def test_an_unknown_attention_is_refused(model):
    from seedfinder.nodes.host import patches
    with pytest.raises(ValueError, match="attention: expected one of"):
        patches.attention_replaced(model, "attn3", [], patches.ordinary_attention)
