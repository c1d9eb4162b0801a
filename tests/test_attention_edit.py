"""The attention edit inside the test process, on the tiny SD1.5-architecture model: the exact source branch, the
target branch's relation to the source and to plain re-prompting, the mask, the attention maps it shares, and its
refusals. The real-server tests are in test_host_attention_edit.py."""
import re
from pathlib import Path

import pytest
import torch
from support.inprocess import import_pack, random_conditioning, tiny_model

from bench.memory import edit_state_table  # before import_pack: ComfyUI's tree, first on sys.path then, has a `tests`
from solvers import AttentionEditOptions, edited_token, injects, landing_denoised, threshold_mask, token_attention

STEPS = 6
OFF = AttentionEditOptions(cross_fraction=0.0, self_fraction=0.0, auto_mask=False)
SHARED = AttentionEditOptions(1.0, 1.0, auto_mask=False)


@pytest.fixture(scope="module")
def setup():
    """The tiny model, a random image latent, the FixedPoint seed of it under the source prompt."""
    import_pack()
    from seedfinder.nodes import host
    from seedfinder.solvers import FixedPointOptions, fixed_point_invert
    with torch.inference_mode():
        model = tiny_model()
        sigmas = host.build_schedule(model, STEPS, "simple", 1.0, None).sigmas
        latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
        inversion = host.run_inversion(lambda *a, **k: fixed_point_invert(*a, FixedPointOptions(), **k), model,
                                       host.Prompt(random_conditioning(0), None, 1.0), latent, sigmas,
                                       host.HandOff("fixed_point"))
    return model, sigmas, latent["samples"], inversion.noise


def sample(setup, target_seed: int, options: AttentionEditOptions, exact: bool = True, mask=None,
           sampler: str = "euler", both: bool = True) -> torch.Tensor:
    """The guider's [source, target] (`both`) or its output, from the seed on an empty latent, target prompt
    random_conditioning(target_seed) (0 is the source prompt)."""
    import comfy.samplers
    from seedfinder.nodes import host
    model, sigmas, _, seed = setup
    empty = torch.zeros(1, 4, 8, 8)
    guider = host.attention_edit_guider(model, host.Prompt(random_conditioning(0), None, options.cfg),
                                        host.Prompt(random_conditioning(target_seed), None, options.cfg), options,
                                        seed if exact else None, mask)
    run = guider.sample_both if both else guider.sample
    with torch.inference_mode():
        return run(seed.generate_noise({"samples": empty}), empty, comfy.samplers.sampler_object(sampler), sigmas,
                   seed=0)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_landing_denoised_makes_the_euler_step_land_where_asked():
    x, x_next = torch.randn(2, 3), torch.randn(2, 3)
    for sigma, sigma_next in ((2.0, 1.2), (0.7, 0.0)):
        denoised = landing_denoised(x, x_next, sigma, sigma_next)
        assert torch.allclose(x + (sigma_next - sigma) * (x - denoised) / sigma, x_next, atol=1e-6)


def test_the_injected_steps_are_the_first_fraction():
    assert [injects(step, 10, 0.4) for step in range(10)] == [True] * 4 + [False] * 6
    assert not any(injects(step, 10, 0.0) for step in range(10)) and all(injects(s, 10, 1.0) for s in range(10))
    with pytest.raises(ValueError, match=r"cross_fraction: expected a fraction of the steps in \[0, 1\], got 1.5"):
        AttentionEditOptions(cross_fraction=1.5)


def test_the_edited_token_is_the_first_that_differs():
    source = torch.randn(77, 8)
    target = source.clone()
    target[5:] += 1.0  # a causal encoder changes the edited word and every token after it
    assert edited_token(source, target) == 5 and edited_token(source, source.clone()) == -1


def test_token_attention_is_the_softmax_column_of_the_token_averaged_over_heads():
    q, k = torch.randn(2, 6, 8), torch.randn(2, 5, 8)
    heads, tokens = 2, torch.tensor([1, 3])
    per_head = torch.softmax(q.reshape(2, 6, 2, 4).transpose(1, 2) @ k.reshape(2, 5, 2, 4).transpose(1, 2)
                             .transpose(-1, -2) / 2.0, dim=-1)
    expected = torch.stack([per_head[b, :, :, tokens[b]].mean(0) for b in range(2)])
    assert torch.allclose(token_attention(q, k, heads, tokens), expected, atol=1e-6)


def test_the_threshold_is_a_fraction_of_each_maps_peak():
    score = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[10.0, 0.0], [0.0, 3.0]]])
    assert threshold_mask(score, 0.4).tolist() == [[[0, 0], [1, 1]], [[1, 0], [0, 0]]]
    with pytest.raises(ValueError, match=r"mask_threshold: expected a fraction in \(0, 1\), got 1.0"):
        AttentionEditOptions(mask_threshold=1.0)
    with pytest.raises(ValueError, match="mask_source: expected one of"):
        AttentionEditOptions(mask_source="words")


def test_the_seed_carries_one_latent_per_sigma_from_the_seed_to_the_image(setup):
    _, sigmas, image, seed = setup
    assert len(seed.trajectory) == len(sigmas)
    assert torch.equal(seed.trajectory[-1], seed.latent_format.process_in(image))
    assert torch.allclose(seed.trajectory[0], seed.model_latent())


@pytest.mark.parametrize("options", [OFF, AttentionEditOptions(), SHARED])
def test_the_corrected_source_regenerates_the_image_and_an_unedited_target_is_the_source(setup, options):
    _, _, image, _ = setup
    source, target = sample(setup, 0, options)
    assert relative(source, image) <= 1e-4
    assert relative(target, source) <= 1e-6


def test_without_injection_mask_or_correction_the_target_is_plain_re_prompting(setup):
    import comfy.samplers
    model, sigmas, _, seed = setup
    empty = torch.zeros(1, 4, 8, 8)
    plain = comfy.samplers.CFGGuider(model)
    plain.inner_set_conds({"positive": random_conditioning(1)})
    with torch.inference_mode():
        reprompted = plain.sample(seed.generate_noise({"samples": empty}), empty,
                                  comfy.samplers.sampler_object("euler"), sigmas, seed=0)
    edited = sample(setup, 1, OFF, exact=False, both=False)
    assert relative(edited, reprompted) <= 1e-4  # a batch of two, not one: the same sums in another order


def test_the_source_maps_move_the_target_toward_the_source(setup):
    """Sharing the source's attention maps keeps the target closer to the source than re-prompting does."""
    free = sample(setup, 1, OFF)
    shared = sample(setup, 1, SHARED)
    cross_only = sample(setup, 1, AttentionEditOptions(1.0, 0.0, auto_mask=False))
    gaps = [relative(target, source) for source, target in (free, shared, cross_only)]
    assert gaps[1] < gaps[0] and gaps[2] != gaps[0], gaps


def test_outside_the_mask_the_target_is_the_source_reconstruction(setup):
    _, _, image, _ = setup
    mask = torch.zeros(1, 64, 64)
    mask[..., :32] = 1.0  # the left half of the picture: latent columns 0-3
    source, target = sample(setup, 1, AttentionEditOptions(), mask=mask)
    assert relative(target[..., 4:], image[..., 4:]) <= 1e-4
    assert relative(target[..., :4], image[..., :4]) > 1e-2


def test_a_cell_the_mask_covers_in_part_is_blended_in_part_and_an_uncovered_cell_is_the_source(setup):
    """A mask over 34 of 64 pixel columns covers a quarter of latent column 4: that cell takes half the target (twice
    its coverage), the columns to its right none (the target there is the source's reconstruction); covering half of
    the cell edits it whole."""
    import_pack()
    from seedfinder.nodes.host.attention_edit import latent_mask
    _, _, image, _ = setup
    mask = torch.zeros(1, 64, 64)
    mask[..., :34] = 1.0
    assert latent_mask(mask, (1, 4, 8, 8))[0, 0, 0].tolist() == [1, 1, 1, 1, 0.5, 0, 0, 0]
    covered = torch.zeros(1, 64, 64)
    covered[..., :36] = 1.0
    assert latent_mask(covered, (1, 4, 8, 8))[0, 0, 0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    source, target = sample(setup, 1, AttentionEditOptions(), mask=mask)
    _, whole = sample(setup, 1, AttentionEditOptions(), mask=covered)
    assert relative(target[..., 5:], image[..., 5:]) <= 1e-4
    half, full = relative(target[..., 4], image[..., 4]), relative(whole[..., 4], image[..., 4])
    assert 1e-3 < half < full, (half, full)


def test_one_clone_replaces_both_attentions_of_every_block_and_the_target_takes_the_source_maps(setup):
    """The guider's one patched clone replaces attn1 and attn2 in every UNet transformer block (the caller's model
    stays unpatched); in each cond/uncond chunk [source, target] the target's queries and keys become the source's."""
    from seedfinder.nodes.host import attention_edit, patches
    model = setup[0]
    guider = attention_edit.AttentionEditGuider(model, _prompt(0), _prompt(1), OFF)
    replaces = guider.model_patcher.model_options["transformer_options"]["patches_replace"]
    for attention in patches.ATTENTIONS:
        assert set(replaces[attention]) == set(patches.unet_attention_blocks(model))
    assert "patches_replace" not in model.model_options["transformer_options"]
    q = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2 * 2, 3, 2)  # 2 chunks (cond, uncond) × [s, t]
    shared_q, shared_k, v = attention_edit.with_source_maps(q, q + 1, q + 2, chunks=2)
    assert torch.equal(shared_q[1], q[0]) and torch.equal(shared_q[3], q[2]) and torch.equal(shared_k[1], q[0] + 1)
    assert torch.equal(v, q + 2) and torch.equal(shared_q[0], q[0])


def _prompt(seed: int):
    from seedfinder.nodes import host
    return host.Prompt(random_conditioning(seed), None, 1.0)


def test_refusals_name_the_input(setup):
    from seedfinder.nodes import host
    model, sigmas, _, seed = setup
    with pytest.raises(ValueError, match="sampler: the exact source branch .* corrects euler steps"):
        sample(setup, 1, OFF, sampler="heun")
    with pytest.raises(ValueError, match="noise: expected the noise output of a DDIM, FixedPoint or RNRI"):
        host.attention_edit_guider(model, _prompt(0), _prompt(1), OFF, seed.with_noise(seed.noise, "interpolated"))
    with pytest.raises(ValueError, match="target_negative: required when cfg ≠ 1"):
        host.attention_edit_guider(model, host.Prompt(random_conditioning(0), random_conditioning(2), 3.0),
                                   host.Prompt(random_conditioning(1), None, 3.0), AttentionEditOptions(cfg=3.0))
    longer = [[torch.randn(1, 154, 768), {}]]
    guider = host.attention_edit_guider(model, _prompt(0), host.Prompt(longer, None, 1.0), OFF)
    with pytest.raises(ValueError, match="target_positive: .* same token count; source_positive has 77 tokens"):
        guider.sample(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), None, sigmas)


def test_a_non_finite_result_is_an_error_not_a_result(setup):
    import comfy.samplers
    from seedfinder.nodes import host
    model, sigmas, _, _ = setup
    huge = torch.full((1, 4, 8, 8), 1e30)
    guider = host.attention_edit_guider(model, _prompt(0), _prompt(1), OFF)
    with pytest.raises(ValueError, match="latent: values up to"), torch.inference_mode():
        guider.sample(torch.zeros_like(huge), huge, comfy.samplers.sampler_object("euler"), sigmas, seed=0)


def test_with_guidance_the_cond_and_uncond_chunks_each_pair_their_branches(setup, monkeypatch):
    """At cfg 3 the model sees [source, target] twice (cond, uncond) and the callbacks split it in two chunks; the
    source stays exact and an unedited target is still the source."""
    import comfy.samplers
    from seedfinder.nodes import host
    from seedfinder.nodes.host import attention_edit
    model, sigmas, image, seed = setup
    seen, share = [], attention_edit.with_source_maps

    def spy(q, k, v, chunks):
        seen.append((q.shape[0], chunks))
        return share(q, k, v, chunks)

    monkeypatch.setattr(attention_edit, "with_source_maps", spy)
    options = AttentionEditOptions(1.0, 1.0, cfg=3.0, auto_mask=False)
    empty = torch.zeros(1, 4, 8, 8)
    prompt = host.Prompt(random_conditioning(0), random_conditioning(2), 3.0)
    guider = host.attention_edit_guider(model, prompt, prompt, options, seed)
    with torch.inference_mode():
        source, target = guider.sample_both(seed.generate_noise({"samples": empty}), empty,
                                            comfy.samplers.sampler_object("euler"), sigmas, seed=0)
    assert relative(source, image) <= 1e-4
    assert relative(target, source) <= 1e-6
    # each chunk (cond, uncond: together, or apart when memory is short) holds one source and one target row
    assert seen and all(rows == 2 * chunks for rows, chunks in seen) and max(c for _, c in seen) <= 2, set(seen)


@pytest.mark.parametrize("source, threshold", [("noise difference", 0.9), ("cross-attention", 0.995)])
def test_the_automatic_mask_keeps_the_target_the_source_outside_it(setup, source, threshold):
    """The mask pass finds some cells and not others; the node shows the mask at the pixels its cells cover; where it
    found none the edited target is the source's reconstruction (the image, checked once); the same prompt finds
    nothing to edit."""
    from seedfinder.nodes import host
    model, _, image, seed = setup
    # random prompts differ everywhere, and a random UNet's attention is nearly uniform: high thresholds
    options = AttentionEditOptions(mask_source=source, mask_threshold=threshold)
    guider = host.attention_edit_guider(model, _prompt(0), _prompt(1), options, seed)
    cells = guider.automatic_mask()
    shown = host.shown_mask(guider)
    assert shown.shape == (1, 64, 64) and torch.equal(shown[:, ::8, ::8], cells)
    assert 0 < cells.sum() < cells.numel(), cells
    if source == "noise difference":
        _, target = sample(setup, 1, options)  # one latent (channels, h, w) of the batch [source, target]
        keep, image = (cells[0] == 0).expand_as(target), image[0]
        assert relative(target[keep], image[keep]) <= 1e-4
        assert relative(target[~keep], image[~keep]) > 1e-2
        assert not host.attention_edit_guider(model, _prompt(0), _prompt(0), options, seed).mask.any()


@pytest.mark.parametrize("exact", [True, False])
def test_the_memory_guard_refuses_before_the_run_naming_the_input(setup, exact):
    """With a budget no edit fits in, a block's copy is refused at latent_image (with or without the seed's
    trajectory); the message says what it counted and what to change."""
    tight = AttentionEditOptions(auto_mask=False, memory_fraction=1e-12)
    with pytest.raises(ValueError, match="latent_image: a block of the edit copies .* 0.3 MiB, 64 tokens of width "
                                         "320.* use a smaller latent"):
        sample(setup, 1, tight, exact=exact)


def test_the_estimate_is_the_latent_the_tokens_and_the_width():
    from solvers import edit_memory, image_tokens
    memory = edit_memory((1, 16, 21, 60, 104), 30, True, True, image_tokens((21, 60, 104), (1, 2, 2)), 1536, 2, 2)
    assert memory.per_step == 16 * 21 * 60 * 104 * 4 and memory.trajectory == 31 * memory.per_step
    assert memory.mask_map == 21 * 60 * 104 * 4 and memory.tokens == 21 * 30 * 52
    assert memory.per_block == 2 * 2 * 2 * 21 * 30 * 52 * 1536 * 2  # k and v, cond/uncond, 2 branches, fp16
    free = edit_memory((1, 4, 8, 8), 6, False, False, 64, 320, 1, 4)
    assert free.trajectory == 0 and free.mask_map == 0
    assert image_tokens((7, 9), (2, 2)) == 4 * 5  # padded up to whole patches


MEASURED_EDIT = re.compile(r"`python -m bench\.memory --edit --size (\d+)[^`]*`.*?\n\| run \| peak \|\n\|---\|---\|\n"
                           r"((?:\| [^|]+ \| [+-]\d+ \|\n)+)", re.S)


def test_the_measured_peaks_lie_between_the_estimate_and_the_batch_of_two_plus_the_estimate():
    """bench/results/memory_edit.md's runs (the tests' tiny UNet at the demo size, SD1.5's architecture at 512²; 2
    euler steps, cfg 1, fp32): the edit's extra peak over a plain sample is at least the state edit_memory estimates,
    and its peak at most twice the plain sample's (the batch of two) plus that state and 1 MiB of rounding."""
    from pathlib import Path

    from solvers import edit_memory, image_tokens
    text = (Path(__file__).parents[1] / "bench" / "results" / "memory_edit.md").read_text()
    runs = MEASURED_EDIT.findall(text)
    assert [int(size) for size, _ in runs] == [8, 64]
    for size, rows in runs:
        peaks = dict(re.findall(r"\| ([^|]+) \| ([+-]\d+) \|", rows))
        plain = int(peaks.pop("plain sample"))
        shape = (1, 4, int(size), int(size))
        for kind, peak in peaks.items():
            memory = edit_memory(shape, 2, True, "mask" in kind, image_tokens(shape[2:], (1, 1)), 320, 1, 4)
            state = (memory.trajectory + memory.mask_map + memory.per_block) / 2 ** 20
            assert state <= int(peak) - plain <= plain + state + 1, (size, kind, state, peak, plain)


def test_the_results_show_the_estimate_for_the_usual_sizes():
    text = (Path(__file__).parents[1] / "bench" / "results" / "memory_edit.md").read_text()
    assert edit_state_table() in text


def test_a_video_mask_is_one_for_all_frames_one_per_latent_frame_or_one_per_frame_of_the_clip():
    """Wan's latent (1, 16, T = 2, 8, 8) of a 5-frame clip: a MASK of 1, 2 or 5 planes at its cells, latent frame 1
    taking the largest of the clip's frames 1-4 and each cell twice the fraction of it the mask covers; another count is
    refused; a mask found per latent frame and shown per frame of the clip comes back to the same cells."""
    import_pack()
    from seedfinder.nodes.host.attention_edit import at_pixels, latent_mask, token_mask
    shape = (1, 16, 2, 8, 8)
    one = torch.zeros(64, 64)
    one[:8, :8] = 1
    assert latent_mask(one, shape).shape == (1, 1, 2, 8, 8)
    assert latent_mask(one, shape).sum() == 2 and latent_mask(one, shape)[0, 0, :, 0, 0].tolist() == [1, 1]
    clip = torch.zeros(5, 64, 64)
    clip[3, 60:, 60:] = 1  # a quarter of the last cell in the clip's fourth frame: latent frame 1
    assert latent_mask(clip, shape)[0, 0, :, 7, 7].tolist() == [0, 0.5] and latent_mask(clip, shape).sum() == 0.5
    with pytest.raises(ValueError, match=r"mask: expected 1 mask, one per latent frame \(2\) or one per frame of the "
                                         r"clip \(5\), got 3"):
        latent_mask(torch.zeros(3, 64, 64), shape)
    found = torch.zeros(1, 2, 8, 8)
    found[0, 1, 2, 3] = 1
    shown = at_pixels(found)
    assert shown.shape == (5, 64, 64) and torch.equal(latent_mask(shown, shape)[0, 0], found[0])
    # Wan patchifies (1, 2, 2) cells frame by frame, row by row: cell (t=1, 2, 3) is token 1·16 + 1·4 + 1
    tokens = token_mask(latent_mask(shown, shape), (1, 2, 2))
    assert tokens.shape == (1, 32) and tokens[0].nonzero().flatten().tolist() == [21]
