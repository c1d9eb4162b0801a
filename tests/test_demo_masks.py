"""demo_model.masks: the object mask the edit benchmark takes as ground truth is exactly the coverage the picture was
drawn with (in-process, no ComfyUI)."""
import numpy as np
import pytest

from demo_model import data, install, masks


@pytest.mark.parametrize("index", range(len(install.DEMO_LABELS)))
def test_the_mask_is_the_coverage_the_picture_was_drawn_with(index):
    label = install.DEMO_LABELS[index]
    image, mask = masks.draw(label, np.random.default_rng(install.DEMO_SEED + index))
    assert np.array_equal(image, data.render(label, np.random.default_rng(install.DEMO_SEED + index)))
    assert mask.shape == image.shape[:2] and 0.0 <= mask.min() and mask.max() == 1.0 and (mask == 0).any()
    fg = np.median(image[mask == 1.0], axis=0)
    bg = np.median(image[mask == 0.0], axis=0)
    redrawn = mask[..., None] * fg + (1 - mask[..., None]) * bg
    assert np.abs(redrawn - image.astype(np.float64)).max() <= 2.0
