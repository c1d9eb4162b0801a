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


def test_a_dit_target_takes_the_source_keys_and_values_of_the_chosen_image_tokens(model):
    """[source, target] rows of 2 text and 3 image tokens (the image's last, as Flux and SD3 join them), in two
    cond/uncond chunks: the target's image tokens where `take` is 1 become the source's; its text tokens, the source
    rows and v's layout stay."""
    from seedfinder.nodes.host import attention_edit
    k = torch.arange(2 * 2 * 5 * 3, dtype=torch.float32).reshape(4, 5, 3)  # (chunks·2, tokens, width)
    take = torch.tensor([[1.0, 0.0, 1.0]])
    shared_k, shared_v = attention_edit.with_source_kv(k, k + 100, chunks=2, axis=1, image_tokens=3, take=take)
    for chunk in (0, 2):
        source, target = k[chunk], k[chunk + 1]
        assert torch.equal(shared_k[chunk], source)
        assert torch.equal(shared_k[chunk + 1][:2], target[:2])  # the text tokens stay the target's
        assert torch.equal(shared_k[chunk + 1][2:], torch.stack([source[2], target[3], source[4]]))
    assert torch.equal(shared_v - 100, shared_k)
    heads_first = k.reshape(4, 5, 1, 3).transpose(1, 2)  # Flux's (rows, heads, tokens, d): the tokens on axis 2
    flux_k, _ = attention_edit.with_source_kv(heads_first, heads_first, chunks=2, axis=2, image_tokens=3, take=take)
    assert torch.equal(flux_k.transpose(1, 2).reshape(4, 5, 3), shared_k)


def test_the_dit_override_swaps_keys_and_values_in_a_blocks_first_attention_only(model):
    """shared_kv with a recording attention: in a block's first call the target's image tokens get the source's k and
    v; its second call (Wan's cross-attention), a call outside any block and a step that takes none pass unchanged."""
    from seedfinder.nodes.host import attention_edit
    seen = []

    def attention(q, k, v, heads, **kwargs):
        seen.append((k.clone(), v.clone()))
        return q

    q = k = torch.arange(2 * 4 * 2, dtype=torch.float32).reshape(2, 4, 2)  # [source, target], 1 text + 3 image
    step = attention_edit.EditStep(frozenset(), source_tokens=torch.ones(1, 3))
    block = attention_edit.DitBlock(image_tokens=3)
    options = {attention_edit.EDIT_STEP: step, attention_edit.EDIT_BLOCK: block, "cond_or_uncond": [0]}
    for _ in range(2):
        attention_edit.shared_kv(attention, q, k, k + 1, 1, transformer_options=options)
    attention_edit.shared_kv(attention, q, k, k + 1, 1, transformer_options={attention_edit.EDIT_STEP: step,
                                                                              "cond_or_uncond": [0]})
    taking_none = attention_edit.EditStep(frozenset())
    attention_edit.shared_kv(attention, q, k, k + 1, 1, transformer_options={
        attention_edit.EDIT_STEP: taking_none, attention_edit.EDIT_BLOCK: attention_edit.DitBlock(3),
        "cond_or_uncond": [0]})
    first = seen[0]
    assert torch.equal(first[0][1, 1:], k[0, 1:]) and torch.equal(first[0][1, 0], k[1, 0])
    assert torch.equal(first[1], first[0] + 1)
    assert all(torch.equal(later[0], k) for later in seen[1:]) and block.calls == 2


def test_blocks_that_see_more_tokens_than_the_latent_has_are_refused_by_name(model):
    """A reference latent joined to the image's tokens (Flux Kontext, Wan's reference image) makes the blocks see more
    image tokens than the mask covers: refused at model, not a reshape error inside the block."""
    from seedfinder.nodes.host import attention_edit
    q = k = torch.zeros(2, 5, 2)
    options = {attention_edit.EDIT_STEP: attention_edit.EditStep(frozenset(), source_tokens=torch.ones(1, 3)),
               attention_edit.EDIT_BLOCK: attention_edit.DitBlock(image_tokens=4), "cond_or_uncond": [0]}
    with pytest.raises(ValueError, match="model: .* 3 image tokens, but the blocks see 4; reference latents"):
        attention_edit.shared_kv(lambda *args, **kwargs: None, q, k, k, 1, transformer_options=options)
