"""RenalMassCAD speed: one SYNTHETIC mass assessed on CPU (4 phases x 3 ROI slices, 4 per-phase CNNs + the
multi-phase CNN, combined logistic model, Grad-CAM on all 4 phases), as ratios against baselines timed in the same
run: (a) the sample path alone (ROI resampling + HU features: what the ROI-mean-HU baseline needs), (b) a naive
path calling every CNN slice by slice. The model is the bundled ``renal_mass_demo`` (the panel's and the CLI's
default; ``make renal-model``)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import best_of  # noqa: E402


def main() -> int:
    import torch

    from slicercad.renal.constants import PHASES
    from slicercad.renal.dataset import case_mass, mass_sample
    from slicercad.renal.inference import MODELS, assess_masses, load_bundle
    from slicercad.renal.phantom import render_case
    from slicercad.renal.study import model_input

    torch.set_num_threads(2)
    case = render_case(np.random.default_rng(0), "clear_cell_rcc", 25.0)
    mass = case_mass(case)
    bundle, card = load_bundle(None)
    clinical = {mass.lesion_id: {"age_years": 60.0, "male": 1}}

    def product():
        return assess_masses(bundle, card, case.images, [mass], clinical, with_cam=True)[0]

    def sample_only():
        mass_sample(case.images, mass)

    def naive():
        s = mass_sample(case.images, mass)
        with torch.no_grad():
            for m in MODELS:
                for sl in model_input(s.x[None], m):
                    bundle.nets[m](torch.from_numpy(sl[None]))
        from monai.visualize import GradCAM

        for k, p in enumerate(PHASES):
            cam = GradCAM(nn_module=bundle.nets[p], target_layers="last_conv")
            cam(torch.from_numpy(model_input(s.x[None], p)[1:2]).requires_grad_(True), class_idx=1)

    r = product()
    t_prod, t_sample, t_naive = best_of(product), best_of(sample_only), best_of(naive)
    print(f"model {card['name']} (sha256 {card['sha256'][:12]}, SYNTHETIC training): {r['call']}, "
          f"p_combined {r['p_combined']:.3f}")
    print(f"renal assess, one mass, 4 phases + 4 Grad-CAMs (CPU, 2 threads): {t_prod * 1000:.1f} ms")
    print(f"  sample path alone (ROIs + HU features):   {t_sample * 1000:.1f} ms  -> product / sample = "
          f"{t_prod / t_sample:.2f}")
    print(f"  naive (slice-by-slice CNN calls + MONAI CAM): {t_naive * 1000:.1f} ms  -> naive / product = "
          f"{t_naive / t_prod:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
