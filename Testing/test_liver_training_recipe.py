"""LiverLesionCAD training recipe: augmentation and the per-epoch validation history (SYNTHETIC)."""
import torch

from slicercad.liver.dataset import build_dataset
from slicercad.liver.fitting import _augment, fit_network
from slicercad.synth.liver_lesions import CLASSES
from slicercad.synth.liver_lesions_phantom import generate_lesions

torch.set_num_threads(1)


def test_augment_keeps_shape_attention_geometry_and_is_seeded():
    x = torch.rand(4, 3, 16, 16) + 0.5
    x[:, 2] = torch.linspace(0, 1, 16)[None, :, None]          # attention-like channel
    a = _augment(x, torch.Generator().manual_seed(3), 2, quantitative={1})
    b = _augment(x, torch.Generator().manual_seed(3), 2, quantitative={1})
    assert a.shape == x.shape and torch.equal(a, b)
    # the attention channel only undergoes the shared flip/rotation: its values are a permutation
    assert torch.equal(torch.sort(a[:, 2].flatten(1)).values, torch.sort(x[:, 2].flatten(1)).values)
    assert not torch.allclose(a[:, 0], x[:, 0])
    off = _augment(x, torch.Generator().manual_seed(3), 2, {1}, gamma_sd=0.0, noise_max=0.0, shift_px=0)
    assert torch.equal(torch.sort(off[:, 0].flatten(1)).values, torch.sort(x[:, 0].flatten(1)).values)


def test_fit_network_reports_validation_history_and_augmentation_changes_training():
    ds = build_dataset(generate_lesions(40, seed=7), CLASSES)
    model, t, info = fit_network(ds, 0.1, seed=0, epochs=2, channels=(8, 16), val_fraction=0.3)
    assert t > 0 and not model.training and info["n_val"] > 0 and info["n_train"] + info["n_val"] == 40
    assert [h["epoch"] for h in info["history"]] == [1, 2]
    assert all(0 <= h["balanced_accuracy"] <= 1 and h["nll"] > 0 for h in info["history"])
    plain, _, _ = fit_network(ds, 0.1, seed=0, epochs=2, channels=(8, 16), val_fraction=0.3,
                              intensity_augmentation=False)
    again, _, _ = fit_network(ds, 0.1, seed=0, epochs=2, channels=(8, 16), val_fraction=0.3)
    weights = [m.head.weight for m in (model, plain, again)]
    assert torch.equal(weights[0], weights[2]) and not torch.equal(weights[0], weights[1])


def test_breath_hold_shift_augmentation_moves_each_acquisition_not_the_reference_nor_attention():
    from slicercad.liver.phases import PHASES, REFERENCE_PHASE
    from slicercad.liver.fitting import _translate, shift_groups
    from slicercad.liver.task import RECIPE

    assert RECIPE["breath_hold_shift_mm"] == 10.0 and RECIPE["breath_hold_shift_p"] == 0.5   # the phantom's range
    phases = list(PHASES)
    groups = shift_groups(phases)
    flat = [k for g in groups for k in g]
    assert phases.index(REFERENCE_PHASE) not in flat and sorted(flat) == sorted(set(flat))
    assert [phases.index("DWI"), phases.index("ADC")] in groups                  # one acquisition, one shift
    img = torch.arange(36.0).reshape(6, 6)
    moved = _translate(img, 2, -1)
    assert torch.equal(moved[2:, :5], img[:4, 1:]) and torch.equal(moved[0], moved[1])   # edges replicated
    n = len(phases)
    x = torch.rand(3, n + 1, 24, 24)
    kw = dict(gamma_sd=0.0, noise_max=0.0, shift_px=0)
    gen = lambda: torch.Generator().manual_seed(5)                              # noqa: E731
    x[:, phases.index("ADC")] = x[:, phases.index("DWI")]                   # same content: must stay equal
    still = _augment(x, gen(), n, set(), breath_hold_px=torch.zeros(3), breath_hold_p=1.0, shift_groups=groups, **kw)
    shifted = _augment(x, gen(), n, set(), breath_hold_px=torch.full((3,), 8.0), breath_hold_p=1.0,
                       shift_groups=groups, **kw)                               # same draws, magnitude 8 px
    ref, att = phases.index(REFERENCE_PHASE), n
    assert torch.equal(still[:, ref], shifted[:, ref]) and torch.equal(still[:, att], shifted[:, att])
    assert sum(not torch.equal(still[:, k], shifted[:, k]) for k in range(n) if k != ref) >= n - 3
    assert torch.equal(shifted[:, phases.index("DWI")], shifted[:, phases.index("ADC")])
