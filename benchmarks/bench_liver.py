"""Classify + Grad-CAM of one liver lesion (issue 4 "Checked by"), on SYNTHETIC phantom lesions.

Times, per lesion, from the normalised 8-phase ROI stack + lesion diameter to calibrated
probabilities + a Grad-CAM map of the predicted class:

- ``naive``: our LiverLesionNet, Gaussian built per call, ``model.eval()`` per call, a separate
  no-grad forward for the probabilities, then ``engine.grad_cam`` (MONAI GradCAM, full hooks, its
  own forward + backward);
- ``optimised``: the product path, ``slicercad.liver.fast_cam.FastLiverCam`` (what
  ``classify_lesions`` runs) on the same weights: squared-distance grid precomputed (only the exp
  per lesion), eval once, channels-last, the trunk up to ``last_conv`` under ``inference_mode``
  and ONE forward + backward through the head only (Grad-CAM needs d logit / d last_conv
  activation, so nothing before that layer needs a graph);
- ``resnet18``: reference ``monai.networks.nets.resnet18(spatial_dims=2, n_input_channels=8,
  num_classes=3)`` trained briefly on the same phantom (attended ROIs), probabilities by a
  forward + MONAI GradCAM on ``layer4``.

Every path reads the stacks the one sample path builds (``dataset.lesion_sample`` through
``build_dataset``: ROI per phase grid with offsets, ADC units, normalisation, attention from the ROI
centre + measured diameter -- what ``classify_lesions`` feeds the network); the optimised path's
precomputed attention is checked equal to that sample path's map before timing.

Prints JSON lines: median ms per lesion (of ``--repeats`` timed lesions), ratios, each path's
accuracy / balanced accuracy on the phantom test set, and the optimised vs naive CAM agreement.
Goal: <= 30 ms per lesion on CPU. Run: ``python benchmarks/bench_liver.py [--device cuda]``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import resnet18

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slicercad.engine.calibration import apply_temperature  # noqa: E402
from slicercad.engine.gradcam import grad_cam  # noqa: E402
from slicercad.engine.registry import BUNDLED_DIR, load_model  # noqa: E402
from slicercad.liver import task  # noqa: E402,F401  (registers the liver tasks)
from slicercad.liver.attention import attend, attention_from_diameter  # noqa: E402
from slicercad.liver.dataset import build_dataset  # noqa: E402
from slicercad.liver.fast_cam import FastLiverCam  # noqa: E402
from slicercad.liver.model import GRADCAM_LAYER, model_input  # noqa: E402
from slicercad.liver.roi import RoiSpec  # noqa: E402
from slicercad.synth.liver_lesions import CLASSES  # noqa: E402
from slicercad.synth.liver_lesions_phantom import generate_lesions  # noqa: E402

GOAL_MS = 30.0
SPEC = RoiSpec()


def roi_spacing_mm(diameter_mm: float) -> float:
    return SPEC.field_of_view(diameter_mm) / SPEC.size_px


def naive(model, temperature, stack, diameter_mm, device):
    """Probabilities + CAM the straightforward way (see module doc)."""
    G = attention_from_diameter(stack.shape[-2:], diameter_mm, roi_spacing_mm(diameter_mm))
    x = model_input(stack, G).to(device)
    model.eval()
    with torch.no_grad():
        proba = apply_temperature(model(x), temperature)[0]
    cam = grad_cam(model, x, GRADCAM_LAYER)[0]
    return proba.cpu().numpy(), cam


def optimised(fast, stack, diameter_mm):
    """The product path (``slicercad.liver.fast_cam.FastLiverCam``, as ``classify_lesions`` runs it)."""
    return fast(stack, fast.attention(diameter_mm, roi_spacing_mm(diameter_mm)))


def train_resnet(ds, epochs, seed, alpha, device):
    """Reference MONAI ResNet-18 on attended ROIs (class-weighted cross-entropy, AdamW), briefly."""
    torch.manual_seed(seed)
    net = resnet18(spatial_dims=2, n_input_channels=len(ds.phases), num_classes=len(ds.classes)).to(device)
    x = attend(torch.from_numpy(ds.x), torch.from_numpy(ds.attention)[:, None], alpha)
    y = torch.from_numpy(ds.labels)
    counts = torch.bincount(y, minlength=len(ds.classes)).float().clamp_min(1)
    loss_fn = torch.nn.CrossEntropyLoss(weight=(counts.sum() / counts / len(counts)).to(device))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=gen)
        for s in range(0, len(y) - 1, 32):
            idx = order[s:s + 32]
            loss = loss_fn(net(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def resnet_path(net, stack, diameter_mm, alpha, device):
    G = attention_from_diameter(stack.shape[-2:], diameter_mm, roi_spacing_mm(diameter_mm))
    x = attend(torch.as_tensor(stack)[None], torch.as_tensor(G), alpha).to(device)
    with torch.no_grad():
        proba = torch.softmax(net(x), 1)[0]
    return proba.cpu().numpy(), grad_cam(net, x, "layer4")[0]


def timed(fn, lesions, repeats, device):
    """Median ms per lesion over ``repeats`` calls cycling through ``lesions`` (2 warm-up calls)."""
    for stack, d in lesions[:2]:
        fn(stack, d)
    times = []
    for i in range(repeats):
        stack, d = lesions[i % len(lesions)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(stack, d)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def accuracy(fn, lesions, labels):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    pred = np.array([fn(s, d)[0].argmax() for s, d in lesions])
    return {"accuracy": round(float(accuracy_score(labels, pred)), 3),
            "balanced_accuracy": round(float(balanced_accuracy_score(labels, pred)), 3)}, pred


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--n-test", type=int, default=120)
    parser.add_argument("--n-train", type=int, default=200, help="phantom lesions for the ResNet-18 reference")
    parser.add_argument("--resnet-epochs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=BUNDLED_DIR / "liver_lesion_demo.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    model, card = load_model(args.model, task="liver_lesion")
    model.to(device)
    t, alpha = card["temperature"], model.alpha if model.alpha is not None else 0.0
    test = build_dataset(generate_lesions(args.n_test, seed=2, split="test"), CLASSES, seed=1)
    lesions = [(test.x[i], float(test.diameters_mm[i])) for i in range(len(test.labels))]
    fast = FastLiverCam(model, t, test.x.shape[-1], GRADCAM_LAYER, device)
    for i in range(min(10, len(lesions))):                 # the timed attention is the sample path's
        d = float(test.diameters_mm[i])
        same = np.abs(fast.attention(d, roi_spacing_mm(d)).cpu().numpy() - test.attention[i]).max()
        if same > 1e-5:
            raise SystemExit(f"optimised attention differs from the sample path's by {same}")
    t0 = time.time()
    net = train_resnet(build_dataset(generate_lesions(args.n_train, seed=1), CLASSES, seed=1), args.resnet_epochs,
                       0, alpha, device)
    train_s = time.time() - t0
    torch.set_num_threads(args.threads)                   # training used every core; timing uses --threads
    paths = {"naive": lambda s, d: naive(model, t, s, d, device), "optimised": lambda s, d: optimised(fast, s, d),
             "resnet18": lambda s, d: resnet_path(net, s, d, alpha, device)}
    common = {"device": str(device), "threads": args.threads, "synthetic": True, "n_test": len(lesions)}
    ms, preds = {}, {}
    for name, fn in paths.items():
        ms[name] = timed(fn, lesions, args.repeats, device)
        acc, preds[name] = accuracy(fn, lesions, test.labels)
        print(json.dumps({"path": name, "median_ms_per_lesion": round(ms[name], 2), **acc, **common}))
    cam_diff = max(float(np.abs(naive(model, t, s, d, device)[1] - optimised(fast, s, d)[1]).max())
                   for s, d in lesions[:20])
    print(json.dumps({"optimised_vs_naive_speedup": round(ms["naive"] / ms["optimised"], 2),
                      "optimised_vs_resnet18_speedup": round(ms["resnet18"] / ms["optimised"], 2),
                      "same_predictions_optimised_naive": bool((preds["naive"] == preds["optimised"]).all()),
                      "max_cam_difference_first_20": round(cam_diff, 5),
                      "goal_ms": GOAL_MS, "optimised_meets_goal": ms["optimised"] <= GOAL_MS,
                      "resnet18_train_s": round(train_s, 1), **common}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
