"""The fast product path computes what the plain one does: the BN-folded channels-last inference copy
gives the plain model's probabilities and is rebuilt when the weights change (the stale copy is shown
to differ); the vectorised variable-projection start and the shared-FFT kernel sums equal their
straightforward references (numpy lstsq per grid value, scipy fftconvolve per kernel)."""
import numpy as np
import pytest
import torch
from scipy.signal import fftconvolve

from slicercad.ti import constants as C
from slicercad.ti.correct import frame_probabilities, inference_model
from slicercad.ti.features import frames_input
from slicercad.ti.model import TINet
from slicercad.ti.physics import _annulus, _disk, _kernel_sums, _varpro_start, ir_signal


def _plain(model, card, frames):
    with torch.no_grad():
        return torch.softmax(model.eval()(torch.from_numpy(frames_input(frames))) / card["temperature"], 1).numpy()


def test_inference_copy_matches_the_model_and_follows_weight_changes():
    torch.manual_seed(0)
    model = TINet(6, (8, 16, 32)).eval()
    with torch.no_grad():                        # non-trivial BatchNorm statistics to fold
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    card = {"classes": list(C.OFFSET_CLASSES), "temperature": 1.5,
            "input_spec": {"roi_px": [64, 64], "crop_fraction": C.CNN_CROP_FRACTION}}
    frames = np.random.default_rng(1).gamma(2.0, 100.0, (5, 80, 80)).astype(np.float32)
    assert np.abs(frame_probabilities(model, card, frames) - _plain(model, card, frames)).max() < 1e-5
    stale = inference_model(model)
    assert inference_model(model) is stale       # cached
    with torch.no_grad():
        model.head.weight.mul_(3.0)              # an in-place update, as an optimiser step makes
    assert inference_model(model) is not stale
    assert np.abs(frame_probabilities(model, card, frames) - _plain(model, card, frames)).max() < 1e-5
    x = torch.from_numpy(frames_input(frames))
    with torch.inference_mode():                 # CONTROL: the stale copy no longer matches
        old = torch.softmax(stale(x) / card["temperature"], 1).numpy()
    assert np.abs(old - _plain(model, card, frames)).max() > 1e-3


def _varpro_reference(ti, y):
    lo, hi, n = C.T1STAR_GRID_MS
    m, best = len(ti), (np.inf, None)
    signs = np.where(np.arange(m)[None, :] < np.arange(m + 1)[:, None], -1.0, 1.0)
    for g in np.geomspace(lo, hi, int(n)):
        X = np.stack([np.ones(m), -np.exp(-ti / g)], 1)
        for s in signs:
            coef = np.linalg.lstsq(X, s * y, rcond=None)[0]
            r = float(((X @ coef - s * y) ** 2).sum())
            if coef[0] > 0 and coef[1] > coef[0] and r < best[0]:
                best = (r, (coef[0], coef[1], g))
    return best[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_varpro_start_equals_the_loop(seed):
    rng = np.random.default_rng(seed)
    ti = np.sort(rng.uniform(80, 700, 14))
    y = ir_signal(ti, 1.0, rng.uniform(1.6, 2.6), rng.uniform(200, 500)) + rng.normal(0, 0.02, ti.size)
    got, ref = _varpro_start(ti, np.abs(y)), _varpro_reference(ti, np.abs(y))
    assert np.allclose(got, ref, rtol=1e-6)


def test_shared_fft_kernel_sums_equal_fftconvolve():
    rng = np.random.default_rng(3)
    images = rng.normal(0, 50, (3, 40, 52))
    radii, wall = (3, 6), 3
    kernels = [_disk(3), _annulus(4, 7), _disk(6), _annulus(7, 10)]
    got = _kernel_sums(images, radii, wall)
    assert got.shape == (4, 3, 40, 52)
    for i, k in enumerate(kernels):
        for c in range(3):
            ref = fftconvolve(images[c], k, mode="same")
            assert np.abs(got[i, c] - ref).max() < 1e-3 * np.abs(ref).max()
    assert np.abs(got[0, 0] - fftconvolve(images[0], kernels[1], mode="same")).max() > 1.0   # CONTROL
