"""The attention study's controls can fail (issue 9 item 5): the occlusion test on oracle models that read
only the lesion or only its surroundings, and the paired patient-cluster bootstrap with Holm correction."""
import numpy as np
import pytest
import torch

from slicercad.liver.controls import occlusion_test
from slicercad.liver.study import holm, paired_cluster_bootstrap

P, H = 3, 32


class Oracle(torch.nn.Module):
    """Logits from the mean of the phase channels inside (``inside=True``) or outside the lesion disk,
    which it finds from the attention channel (G >= exp(-1/2): within the measured radius)."""

    def __init__(self, inside: bool):
        super().__init__()
        self.inside = inside
        self.w = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])

    def forward(self, x):
        region = (x[:, P:] >= np.exp(-0.5) - 1e-6).float()
        if not self.inside:
            region = 1.0 - region
        means = (x[:, :P] * region).sum((-1, -2)) / region.sum((-1, -2))
        return (means - 1.0) @ self.w


def _inputs(n=12, seed=0):
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:H, 0:H]
    c = (H - 1) / 2
    x = 1.0 + 0.02 * rng.standard_normal((n, P + 1, H, H))
    masks = np.zeros((n, H, H), bool)
    labels = rng.integers(0, P, n)
    for i in range(n):
        radius = rng.uniform(2.5, 4.0)
        m = (rr - c) ** 2 + (cc - c) ** 2 <= radius ** 2
        masks[i] = m
        x[i, labels[i]][m] += 0.8                                  # the lesion is bright in its class's channel
        x[i, P] = np.exp(-0.5 * ((rr - c) ** 2 + (cc - c) ** 2) / radius ** 2)
    return torch.tensor(x, dtype=torch.float32), labels, masks


def test_control_moves_only_for_a_model_that_reads_the_surroundings():
    x, labels, masks = _inputs()
    lesion_reader = occlusion_test(Oracle(True), 1.0, x, labels, masks)
    assert lesion_reader["n_occluded"] == len(x)
    assert np.mean(lesion_reader["change_lesion"]) > 0.2 and np.max(lesion_reader["change_control"]) < 1e-6
    assert np.mean(lesion_reader["drop_lesion"]) > 0.2
    surround_reader = occlusion_test(Oracle(False), 1.0, x, labels, masks)
    assert np.mean(surround_reader["change_control"]) > 0.01 > np.max(surround_reader["change_lesion"])


def test_paired_cluster_bootstrap_and_holm():
    rng = np.random.default_rng(1)
    n, seeds = 120, 5
    labels = rng.integers(0, 3, n)
    groups = [f"p{i // 4}" for i in range(n)]
    good = np.stack([np.where(rng.random(n) < 0.9, labels, (labels + 1) % 3) for _ in range(seeds)])
    bad = np.stack([np.where(rng.random(n) < 0.5, labels, (labels + 1) % 3) for _ in range(seeds)])
    same = paired_cluster_bootstrap({"pred": good}, {"pred": good}, labels, groups, 3, n_boot=400)
    assert same["balanced_accuracy"]["mean_difference"] == 0.0 and same["balanced_accuracy"]["p_bootstrap"] == 1.0
    worse = paired_cluster_bootstrap({"pred": bad}, {"pred": good}, labels, groups, 3, n_boot=400)
    lo, hi = worse["balanced_accuracy"]["ci95"]
    assert worse["balanced_accuracy"]["mean_difference"] < -0.3 and hi < 0 and worse["balanced_accuracy"]["p_bootstrap"] < 0.01
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})


def test_a_seed_without_defined_focus_does_not_erase_the_point_estimate():
    """A randomised null whose CAM is empty gives NaN focus for a whole seed: the observed difference is the
    mean over the seeds that have one (as the bootstrap draws are), not NaN."""
    rng = np.random.default_rng(2)
    n, seeds = 60, 5
    labels = rng.integers(0, 3, n)
    groups = [f"p{i // 3}" for i in range(n)]
    pred = np.tile(labels, (seeds, 1))
    ref = {"pred": pred, "focus_over_null": rng.normal(1.0, 0.1, (seeds, n))}
    arm = {"pred": pred, "focus_over_null": ref["focus_over_null"] + 2.0}
    arm["focus_over_null"][3] = np.nan
    out = paired_cluster_bootstrap(arm, ref, labels, groups, 3, n_boot=200, measures=("focus_over_null",))
    assert out["focus_over_null"]["mean_difference"] == pytest.approx(2.0)
    assert out["focus_over_null"]["ci95"][0] == pytest.approx(2.0, abs=1e-6)
