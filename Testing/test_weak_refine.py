"""The simulated correction-click loop (``slicercad.weak.refine``): the click goes to the deepest voxel of
the largest error region with the right sign, and each round re-segments through the product path with
every click so far. SYNTHETIC phantom."""
import numpy as np

from slicercad.weak import experiment
from slicercad.weak.refine import error_click, refined_masks
from slicercad.weak.segment import load_segmenter, segment_lesion
from slicercad.weak.task import phantom_lesions


def test_error_click_picks_the_largest_error_and_its_sign():
    truth = np.zeros((20, 20, 20), bool)
    truth[5:15, 5:15, 5:15] = True
    pred = truth.copy()
    assert error_click(pred, truth) is None
    pred[5:15, 5:15, 5:9] = False                       # missed slab (400 voxels) ...
    pred[0:2, 0:3, 0:3] = True                          # ... beats a small false positive (18)
    positive, kji = error_click(pred, truth)
    assert positive and truth[tuple(kji)] and not pred[tuple(kji)] and 6 <= kji[2] <= 7
    pred = truth.copy()
    pred[15:19, 2:18, 2:18] = True                      # a false-positive slab
    positive, kji = error_click(pred, truth)
    assert not positive and pred[tuple(kji)] and not truth[tuple(kji)] and kji[0] in (16, 17)


def test_refinement_rounds_start_from_the_product_path_and_use_the_clicks():
    model, card = load_segmenter()
    lesion = list(phantom_lesions("liver_mri", 3, experiment.TEST_SEED))[1]
    (c, d), = experiment.fixed_prompts([lesion], 0.4, 0.7)          # a poor prompt leaves errors to click on
    masks = refined_masks(model, card, lesion, c, d, 2)
    assert len(masks) == 3
    np.testing.assert_array_equal(masks[0], segment_lesion(model, card, lesion.image, c, d).mask)
    assert not np.array_equal(masks[0], masks[1])                   # the first click changed the label
