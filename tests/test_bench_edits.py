"""bench.edits' ground truth on rendered scenes (in-process, no model): the sources read back as their captions, each
target changes one word, the edit region covers what changes and leaves what must be kept, the ideal edit (the target
drawn with the source's colour jitter) differs from the source only inside it, and the structure measure is blind to
colour but not to shape."""
import numpy as np
import pytest

from bench import edits
from demo_model import measure, scenes

EDITS = edits.edit_list(6, 2)
DILATE = 2


def test_every_source_reads_back_as_its_caption_and_every_target_changes_one_word():
    assert [edit.kind for edit in EDITS] == [kind for kind in edits.KINDS for _ in range(6)]
    for edit in EDITS:
        scene, target = edit.scene, edit.target
        assert measure.classify_scene(edit.image) == scene.label
        assert measure.classify_scene(edit.drawn) == target.label
        assert len(scene.things) == (2 if edit.kind == "one of two" else 1)
        before, after = scene.caption.split(), target.caption.split()
        assert len(before) == len(after) and sum(a != b for a, b in zip(before, after)) == 1, (scene, target)
        assert all(edits.drawable((thing.colour, thing.shape)) for thing in target.things)
        assert target.background not in {thing.colour for thing in target.things}
        assert len({thing.colour for thing in target.things}) == len(target.things)


def test_one_of_two_changes_the_colour_then_the_shape_of_the_left_then_the_right_object():
    changed = [(index, attribute) for edit in EDITS if edit.kind == "one of two"
               for index, (old, new) in enumerate(zip(edit.scene.things, edit.target.things)) if old != new
               for attribute in ("colour", "shape") if getattr(old, attribute) != getattr(new, attribute)]
    assert changed == [(0, "colour"), (0, "shape"), (1, "colour"), (1, "shape"), (0, "colour"), (0, "shape")]


@pytest.mark.parametrize("index", range(len(EDITS)))
def test_the_edit_region_covers_what_changes_and_spares_what_is_kept(index):
    edit = EDITS[index]
    scene, image, region, tight, drawn = edit.scene, edit.image, edit.region, edit.tight, edit.drawn
    cover = scenes.render(scene, np.random.default_rng(0))[1]
    assert set(np.unique(region)) == {0.0, 1.0} and set(np.unique(tight)) == {0.0, 1.0}
    assert (region >= tight).all() and region.sum() > tight.sum()  # the tight mask is the region before it grows
    if edit.kind == "background":
        interior = (cover >= 1).any(axis=0)
        assert region[~interior].all() and not region.all() and (tight == ~interior).all()
        assert (drawn[interior] == image[interior]).all()  # the ideal edit: objects as they were
        return
    for old, new, alpha in zip(scene.things, edit.target.things, cover):
        if old == new:  # the other object of two is kept whole, with the gap around it
            assert not region[edits.grow(alpha > 0, 1) > 0].any()
        else:  # the old object and the new shape at its place, grown; nothing farther than the growth
            changed = (alpha > 0) | (scenes.coverage(new.shape, new.cx, new.cy, new.size) > 0)
            assert region[changed].all() and (tight == changed).all()
            assert not region[edits.grow(changed, DILATE) == 0].any()
    assert (drawn[region == 0] == image[region == 0]).all()  # the ideal edit keeps every pixel it may not change


def test_structure_is_blind_to_colour_and_background_but_not_to_shape():
    scene, image, *_ = edits.source_scenes(1)[0][0]
    assert edits.structure(image, image) == 1.0
    for kind in ("colour", "background"):
        redrawn = scenes.render(edits.target_of(scene, kind, 0), np.random.default_rng(1))[0]
        assert edits.structure(image, redrawn) > 0.95, kind
    reshaped = scenes.render(edits.target_of(scene, "shape", 0), np.random.default_rng(1))[0]
    assert edits.structure(image, reshaped) < 0.9


def test_the_object_mask_is_the_drawn_coverage():
    for _, image, cover, _ in edits.source_scenes(2)[1]:
        drawn, found = (cover > 0.5).any(axis=0), edits.objects_mask(image)
        assert (drawn & found).sum() / (drawn | found).sum() > 0.97


def test_the_blended_reference_is_the_source_outside_the_mask_and_the_drawn_target_where_it_covers_a_cell():
    """bench.edits' ceiling of a local blend, with an 8× average pool standing in for the VAE encoder."""
    import torch
    from support.inprocess import import_pack
    import_pack()

    class Pooled:
        def encode(self, image: np.ndarray) -> dict:
            pixels = torch.from_numpy(image.copy()).float().permute(2, 0, 1)[None]
            return {"samples": torch.nn.functional.avg_pool2d(pixels, 8)}

    edit = next(edit for edit in EDITS if edit.kind == "shape")
    source, ideal, blended = edits.references(Pooled(), edit)
    coverage = torch.nn.functional.avg_pool2d(torch.from_numpy(edit.region)[None, None], 8).expand_as(source)
    assert torch.equal(blended[coverage == 0], source[coverage == 0])
    assert torch.equal(blended[coverage >= 0.5], ideal[coverage >= 0.5])
    assert (coverage == 0).any() and (coverage >= 0.5).any() and not torch.equal(source, ideal)
