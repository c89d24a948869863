"""LiverLesionCAD training recipe: augmentation and the per-epoch validation history (SYNTHETIC)."""
import torch

from slicercad.liver.dataset import build_dataset
from slicercad.liver.study import _augment, fit_network
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
