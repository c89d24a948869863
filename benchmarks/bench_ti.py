"""CardiacTICorrector speed: one 20-frame SYNTHETIC scout corrected on CPU (bundled CNN on all
frames in one batch + the physics fit with the automatic ROI + fusion), against a naive per-frame
baseline timed in the same run (the CNN called frame by frame, and a brute-force T1*/A/B grid fit
without variable projection). Goal: <= 30 ms for the default model and its physics fit. The
VGG-style variant (model.VGG_VARIANT, 128 px) is timed beside it at its input size."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import best_of  # noqa: E402


def main() -> int:
    import torch

    from slicercad.ti.cli import load_default_model
    from slicercad.ti.correct import correct_frames
    from slicercad.ti.features import frame_input
    from slicercad.ti.model import VGG_VARIANT, TINet
    from slicercad.ti.phantom import make_scout
    from slicercad.ti.physics import find_myocardium, ir_signal, roi_curve

    torch.set_num_threads(2)
    model, card = load_default_model("bundled")
    ph = make_scout(5, snr=40, n_frames=20)

    def product():
        correct_frames(ph.frames, ph.ti_ms, ph.pixel_spacing_mm, model, card, meta=ph.meta)

    def naive():
        with torch.no_grad():
            for f in ph.frames:
                model(torch.from_numpy(frame_input(f)[None, None]))
        roi = find_myocardium(ph.frames, ph.ti_ms, ph.pixel_spacing_mm)
        y = roi_curve(ph.frames, roi.myocardium)
        best = np.inf
        for t1 in np.geomspace(30, 3000, 120):
            for a in np.linspace(0.05, 1.0, 40) * y.max():
                for ratio in np.linspace(1.2, 3.5, 40):
                    r = ((ir_signal(ph.ti_ms, a, a * ratio, t1) - y) ** 2).sum()
                    best = min(best, r)

    product()
    t_prod, t_naive = best_of(product), best_of(naive, 2)
    vgg = TINet(6, tuple(VGG_VARIANT["channels"])).eval()
    x = torch.from_numpy(np.stack([frame_input(f, VGG_VARIANT["input_px"]) for f in ph.frames])[:, None])
    with torch.no_grad():
        t_vgg = best_of(lambda: vgg(x), 3)
    print(f"one 20-frame scout, CPU: product {1000 * t_prod:.1f} ms (goal <= 30 ms), naive per-frame "
          f"{1000 * t_naive:.0f} ms, ratio {t_naive / t_prod:.1f}x; VGG-style variant "
          f"{VGG_VARIANT['channels']} at {VGG_VARIANT['input_px']} px: CNN alone {1000 * t_vgg:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
