"""Held-out-normal reference of the AnomalyCT detectors: leave-one-out standardised maps equal an explicit
recomputation without the case, are not biased low the way in-sample standardisation is (the control), the
map-based case score, the step budget, and the grid holding the large-head variant uncropped."""
import warnings

import numpy as np
import pytest
import torch

from slicercad.anomaly import task as T
from slicercad.anomaly.baselines import TOP_MIN, top_fraction_mean
from slicercad.anomaly import reference as R
from slicercad.anomaly.reference import smooth_in_mask


def _raw(n=6, shape=(4, 6, 5), channels=2, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, channels) + shape)
    raw[:, :, 0] = np.nan                                     # a slab outside every mask
    raw[1, :, 1, 1, 1] = np.nan                               # one case's own hole
    return raw


@pytest.mark.parametrize("channels", [1, 2])
def test_leave_one_out_equals_explicit_recomputation(channels):
    raw = _raw(channels=channels)
    _, _, floor, prior = R.voxel_stats(raw)
    loo = T.leave_one_out_maps(raw, floor, prior)
    for i in (0, 1, 4):
        others = np.delete(raw, i, 0)
        n = (~np.isnan(others)).sum(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, var = np.nan_to_num(np.nanmean(others, 0)), np.nan_to_num(np.nanvar(others, 0))
        mean = np.where(n > 0, mean, prior["mean"])
        std = np.where(n > 0, np.sqrt((n * var + R.PRIOR_COUNT * prior["var"]) / (n + R.PRIOR_COUNT)),
                       np.sqrt(prior["var"]))
        z = np.abs((np.nan_to_num(raw[i]) - mean) / np.maximum(std, floor)).max(0)    # two-sided, max over C'
        valid = ~np.isnan(raw[i, 0])
        want = smooth_in_mask(z[None].astype(np.float32), valid[None])[0]
        assert np.allclose(loo[i], want, atol=1e-5)


def test_std_floor_and_shrinkage_ignore_voxels_outside_every_mask():
    assert R.PRIOR_COUNT == 4
    raw = np.full((5, 1, 10, 10, 10), np.nan)
    raw[:, :, :2] = np.random.default_rng(2).normal(loc=3.0, scale=0.01, size=(5, 1, 2, 10, 10))   # 20 % of grid
    raw[0, :, 2, 0, 0] = 5.0                                  # an edge voxel inside one mask only: var 0
    mean, std, floor, prior = R.voxel_stats(raw)
    seen = ~np.isnan(raw).all(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert prior["var"].item() == pytest.approx(np.median(np.nanvar(raw, 0)[seen]))
        assert prior["mean"].item() == pytest.approx(np.median(np.nanmean(raw, 0)[seen]))
    assert floor == pytest.approx(0.5 * np.median(std[seen])) and floor < 0.01
    assert std[0, 2, 0, 0] == pytest.approx(np.sqrt(4 * prior["var"].item() / 5))   # shrunk from 0 to the prior
    # outside every mask: the channel's typical mean and std, so a voxel there is not an outlier by default
    assert np.allclose(std[:, 3:], np.sqrt(prior["var"].item())) and np.allclose(mean[:, 3:], prior["mean"].item())


def _standardised(raw, mean, std, floor):
    z = np.abs((raw - mean) / np.maximum(std, floor)).max(1).astype(np.float32)
    return smooth_in_mask(z, np.ones(z.shape, bool))


def test_in_sample_standardisation_is_biased_low_and_leave_one_out_is_not():
    rng = np.random.default_rng(1)
    raw_val, fresh = rng.normal(size=(8, 1, 4, 8, 8)), rng.normal(size=(200, 1, 4, 8, 8))
    mean, std, floor, prior = R.voxel_stats(raw_val)
    score = lambda maps: np.median(top_fraction_mean(maps, np.ones(maps.shape, bool)))  # noqa: E731
    target = score(_standardised(fresh, mean, std, floor))        # what new normals score
    in_sample = score(_standardised(raw_val, mean, std, floor))
    loo = score(T.leave_one_out_maps(raw_val, floor, prior))
    assert in_sample < 0.9 * target                                # the bias the reference must avoid
    assert abs(loo - target) < abs(in_sample - target)


def test_top_fraction_mean_and_step_budget():
    maps = np.zeros((2, 10, 10, 10))
    maps[1, 2:4, 2:4, 2:4] = 5.0                              # 8 hot voxels in the second case
    masks = np.ones_like(maps, bool)
    s = top_fraction_mean(maps, masks)
    assert s[0] == 0 and s[1] == pytest.approx(5.0 * 8 / 10)  # top 1 % of 1000 = 10 voxels
    assert TOP_MIN == 5
    assert T.epochs_for_steps(96, 8, 400) == 34 and T.epochs_for_steps(10, 8, 1) == 1


def test_large_head_variant_is_not_cropped_by_the_grid():
    x = T.phantom_normal(T.HEAD, 30_003, "large")[0]
    m = x[-1] > 0.5
    inner = np.zeros_like(m)
    inner[1:-1, 1:-1, 1:-1] = True
    assert m.sum() > 1000 and not (m & ~inner).any()


def test_paired_auroc_difference_against_the_atlas():
    from slicercad.anomaly.experiment import delta_vs
    rng = np.random.default_rng(3)
    pos = np.r_[np.zeros(30, bool), np.ones(30, bool)]
    noise = rng.normal(size=60)
    groups = [f"p{i % 30}" for i in range(60)]              # each anomalous case shares its background patient
    d = delta_vs("atlas_z", pos, {"atlas_z": noise, "same": noise.copy(), "better": noise + 3.0 * pos,
                                  "worse": noise - 3.0 * pos}, groups, 200, 0)
    assert d["same"]["delta"] == 0 and d["same"]["ci"] == [0.0, 0.0] and d["same"]["p_le_0"] == 1.0
    assert d["better"]["ci"][0] > 0 and d["better"]["p_le_0"] == 0.0
    assert d["worse"]["ci"][1] < 0 and d["worse"]["p_le_0"] == 1.0


def test_population_control_an_atlas_without_atrophic_normals_flags_atrophy():
    from slicercad.anomaly.baselines import AtlasZ
    from slicercad.synth.anomaly_head import population

    young = [s for s in range(2000, 2100) if population(s)["atrophy"] == 0.0][:6]
    x = np.stack([T.phantom_normal(T.HEAD, s)[0] for s in young])
    atlas = AtlasZ(x[:3])
    threshold = atlas.scores(x[3:]).max()                                  # young calibration normals
    atrophic = np.stack([T.phantom_normal(T.HEAD, s, "atrophy")[0] for s in (2200, 2201)])
    assert (atlas.scores(atrophic) > threshold).all()


def test_map_threshold_is_case_level_the_95th_percentile_of_normal_maxima():
    from slicercad.engine.tasks import get_task

    assert T.MAP_THRESHOLD_PCT == 95.0
    spec = get_task("anomaly_glow_cxr2d")
    model = spec.build_model(spec.config({"steps": 1, "hidden": 8}))
    x = torch.from_numpy(np.stack([T.phantom_normal(T.CXR, 700 + i)[0] for i in range(8)]))
    model.glow.initialise(T.model_input(x, torch.Generator().manual_seed(0)))
    T.calibrate(model.eval(), x)
    ref = T.held_out_reference(model, x, set_stats=False)
    maxima = [m[k].max() for m, k in zip(ref["map"], ref["mask"])]
    assert float(model.map_threshold) == pytest.approx(np.percentile(maxima, 95.0), rel=1e-6)
    assert np.mean(np.array(maxima) > float(model.map_threshold)) <= 0.125       # 1 of 8 normals at most


def test_age_conditioned_atlas_fits_a_line_in_age_and_needs_the_true_ages():
    """A voxel whose intensity rises with age: the plain atlas flags the oldest normals, the age-conditioned one
    (``AgeAtlasZ``) does not; with the ages shuffled (the control) it flags them again. Its line is the
    least-squares line in age inside the masks, its residual variance with n - 2 degrees of freedom."""
    from slicercad.anomaly.baselines import AgeAtlasZ, AtlasZ

    rng = np.random.default_rng(3)
    n, shape = 60, (1, 5, 6)
    ages = np.r_[rng.uniform(20, 40, n - 6), rng.uniform(80, 90, 6)]       # the old a tail of the normals
    ch = 0.3 + 0.004 * (ages - 55)[:, None, None, None] + rng.normal(0, 0.01, (n,) + shape)
    mask = np.ones((n, 1) + shape)
    mask[:5, :, 0, 0, 0] = 0                                   # a voxel outside some masks
    x = np.concatenate([ch[:, None], mask], 1)
    atlas = AgeAtlasZ(x, ages)
    sel = mask[:, 0, 0, 0, 0] > 0
    slope, intercept = np.polyfit(ages[sel] - ages.mean(), ch[sel, 0, 0, 0], 1)
    assert np.isclose(atlas.slope[0, 0, 0, 0], slope) and np.isclose(atlas.intercept[0, 0, 0, 0], intercept)
    resid = ch[sel, 0, 0, 0] - (intercept + slope * (ages[sel] - ages.mean()))
    assert np.isclose(atlas.residual_var[0, 0, 0, 0], (resid ** 2).sum() / (sel.sum() - 2))
    assert np.allclose(atlas.slope, 0.004, atol=0.001)
    old_ages = np.full(8, 89.0)
    old = np.concatenate([(0.3 + 0.004 * 34 + rng.normal(0, 0.01, (8,) + shape))[:, None], np.ones((8, 1) + shape)], 1)
    plain, aware = AtlasZ(x).scores(old).mean(), atlas.scores(old, old_ages).mean()
    assert aware < 2.5 < plain
    shuffled = AgeAtlasZ(x, rng.permutation(ages))
    assert shuffled.scores(old, old_ages).mean() > 2.5
