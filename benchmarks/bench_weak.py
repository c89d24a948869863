"""WeakLabelSegmenter: one lesion segmented on a 64^3 crop at the model's canonical scale (field of view
5 x diameter) on the CPU (goal <= 150 ms) through the product path itself -- ``segment.segment_lesion``,
the call the panel, batch mode and the Segment Editor effect make (canonical crop, one forward pass under
``inference_mode``, back onto the image grid, nearest component) -- against an unoptimised MONAI baseline
timed in the same run: ``monai.inferers.sliding_window_inference`` (32^3 windows, overlap 0.5, Gaussian
blending) with autograd left on, on the same crop, same network -- and the same baseline under
``torch.no_grad`` (the fair comparison: most of a naive path's cost is autograd bookkeeping); and the
product path at the model's own 32^3 crop (what the panel and batch mode run) against sliding-window
inference of that one 32^3 window under ``no_grad`` (``native_32_*``: the pipeline's overhead only).

``dice_product_vs_sliding_window`` says how far the two passes agree: the U-Net uses instance normalisation,
so one pass over 64^3 and 32^3 windows see different statistics -- the panel and batch mode use the
model's own 32^3 canonical crop (``product_native_32_ms_median``), where both are the same single window.

Also the Segment Editor effect's click-to-mask latency as a ratio against the panel path (``click_vs_panel``),
and the effect's *first* click in a fresh process (``first_click``): installer check + torch/MONAI import +
model load + the click itself, each reported separately from the warm click.

Run: ``python benchmarks/bench_weak.py [--threads N] [--repeats R] [--device cpu|cuda]``; prints one JSON
line. Uses the bundled SYNTHETIC model when present (randomly initialised otherwise: speed does not
depend on the values) on a SYNTHETIC phantom lesion.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import subprocess

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slicercad.synth.weak_lesions import generate_weak_lesions  # noqa: E402  (no torch)
from timing import timed_runs  # noqa: E402

CROP = 64
LESION = dict(n=1, seed=0, kind="brain_t1c", diameter_range=(18.0, 20.0))


def _time(fn, repeats):
    times = [1000 * t for t in timed_runs(fn, repeats)]
    return statistics.median(times), float(np.percentile(times, 90))


def _padded(lesion):
    """The phantom lesion padded into a 256 x 256 x 96 volume (a typical CT/MR size)."""
    import SimpleITK as sitk

    size = np.array(lesion.image.GetSize())
    pad_lo = ((np.array([256, 256, 96]) - size) // 2).clip(0)
    pad_hi = (np.array([256, 256, 96]) - size - pad_lo).clip(0)
    fill = float(np.median(sitk.GetArrayViewFromImage(lesion.image)))
    return sitk.ConstantPad(lesion.image, [int(v) for v in pad_lo], [int(v) for v in pad_hi], fill)


def _lesion():
    return generate_weak_lesions(LESION["n"], LESION["seed"], LESION["kind"],
                                 diameter_range=LESION["diameter_range"])[0]


def _click_scene(scene, lesion) -> tuple:
    """The lesion padded into a volume node, an empty segment, Slicer's segment editor logic on it and the
    click prompt: (volume, segmentation, editor logic, effect target, prompt)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "WeakLabelSegmenter"))
    from slicercad.geometry import lps_to_ras
    from SlicerCADLib.volumes import sitk_to_volume_node
    from WeakLabelSegmenterLib import effect_logic as fx

    volume = sitk_to_volume_node(_padded(lesion), scene, name="MR")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seg")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    sid = seg.GetSegmentation().AddEmptySegment("", "Lesion")
    editor = fx.editor_logic(scene, seg, volume, sid, undo_states=2)
    prompt = fx.ClickPrompt(tuple(lps_to_ras(lesion.center_lps)), lesion.diameter_mm)
    return volume, seg, editor, fx.EditorLogicTarget(editor), prompt


def _first_click_child(threads: int) -> dict:
    """In a fresh process (torch not yet imported): the effect's first U-Net click, split into the
    installer check (requirements met: a version check; outside Slicer there is no pip prompt), the
    torch / MONAI import, the model load, the first click, then the warm click for comparison."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "WeakLabelSegmenter"))
    import slicer
    from SlicerCADLib import dependencies
    from SlicerCADLib.app import close_scene, ensure_scene
    from WeakLabelSegmenterLib import effect_logic as fx

    lesion = _lesion()
    scene = ensure_scene(slicer.vtkMRMLScene())
    try:
        _volume, _seg, editor, target, prompt = _click_scene(scene, lesion)
        torch_was_loaded = "torch" in sys.modules
        t0 = time.perf_counter()
        missing = dependencies.unmet(dependencies.requirements())
        t1 = time.perf_counter()
        import monai  # noqa: F401
        import torch

        torch.set_num_threads(threads)
        import slicercad.weak.segment  # noqa: F401
        t2 = time.perf_counter()
        model, card = fx.load_model()
        t3 = time.perf_counter()
        fx.click_to_segment(target, prompt, "unet", model, card)
        t4 = time.perf_counter()
        editor.Undo()
        t5 = time.perf_counter()
        fx.click_to_segment(target, prompt, "unet", model, card)
        t6 = time.perf_counter()
    finally:
        close_scene(scene)
    ms = lambda a, b: round((b - a) * 1000, 2)  # noqa: E731
    return {"first_click_installer_check_ms": ms(t0, t1), "first_click_import_ms": ms(t1, t2),
            "first_click_model_load_ms": ms(t2, t3), "first_click_click_ms": ms(t3, t4),
            "first_click_total_ms": ms(t0, t4), "first_click_warm_click_ms": ms(t5, t6),
            "first_click_unmet_requirements": missing, "first_click_torch_preloaded": torch_was_loaded}


def first_click(threads: int) -> dict:
    """``_first_click_child`` in a fresh interpreter (so the imports are really cold)."""
    try:
        out = subprocess.run([sys.executable, __file__, "--first-click-child", "--threads", str(threads)],
                             capture_output=True, text=True, timeout=600, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"first_click": f"skipped: {exc}"}


def click_vs_panel(lesion, model, card, repeats: int) -> dict:
    """Segment Editor "Lesion (click)": click-to-mask latency (``effect_logic.click_to_segment`` through
    Slicer's ``vtkSlicerSegmentEditorLogic``: aligned source volume, label, masked undoable write) against
    the panel path (``logic.segment_lesions``: whole volume to SimpleITK, label, new segment), same click,
    on the phantom lesion padded into a 256 x 256 x 96 volume (a typical CT/MR size). Needs slicer-core."""
    try:
        import slicer

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "WeakLabelSegmenter"))
        from slicercad.geometry import lps_to_ras
        from SlicerCADLib.app import close_scene, ensure_scene
        from WeakLabelSegmenterLib import effect_logic as fx
        from WeakLabelSegmenterLib import logic as weak
    except ImportError as exc:
        return {"click_to_mask": f"skipped: {exc}"}
    if card is None:
        return {"click_to_mask": "skipped: no bundled model card"}
    scene = ensure_scene(slicer.vtkMRMLScene())
    try:
        volume, seg, editor, target, prompt = _click_scene(scene, lesion)
        points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
        points.AddControlPoint(list(lps_to_ras(lesion.center_lps)), "L1")
        marks = weak.lesion_marks(points, default_diameter_mm=lesion.diameter_mm)

        def panel():
            _node, ids, _ = weak.segment_lesions(volume, marks, seg, model=model, card=card)
            seg.GetSegmentation().RemoveSegment(ids[0])

        def effect():
            fx.click_to_segment(target, prompt, "unet", model, card)
            editor.Undo()

        panel_ms, _ = _time(panel, repeats)
        click_ms, click_p90 = _time(effect, repeats)
    finally:
        close_scene(scene)
    return {"click_volume_size": [256, 256, 96], "click_to_mask_ms_median": round(click_ms, 2),
            "click_to_mask_ms_p90": round(click_p90, 2), "panel_ms_median": round(panel_ms, 2),
            "click_vs_panel_ratio": round(click_ms / panel_ms, 3), "click_goal_ms": 1000,
            "click_goal_met": click_ms < 1000}


def at_crop(card: dict, crop_px: int) -> dict:
    """``card`` with a ``crop_px``^3 canonical crop at the model's own scale (field of view scaled with it)."""
    spec = dict(card["input_spec"])
    native = int(spec["roi_px"][0])
    spec.update(roi_px=[crop_px] * 3, fov_factor=float(spec["fov_factor"]) * crop_px / native)
    return dict(card, input_spec=spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--first-click-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.first_click_child:
        print(json.dumps(_first_click_child(args.threads or 1)))
        return 0
    import torch
    from slicercad.weak.crop import canonical_crop, crop_to_image
    from slicercad.weak.segment import demo_model_path, load_segmenter, segment_lesion, spec_of_card
    from slicercad.weak.task import WEAK_LESION, build_model, model_card

    if args.threads is None:
        args.threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if demo_model_path().is_file():
        model, card = load_segmenter()
        source = "bundled weak_lesion_demo (SYNTHETIC)"
    else:
        torch.manual_seed(0)
        cfg = WEAK_LESION.config()
        model, card, source = build_model(cfg).eval(), model_card(cfg, "random", {}), "random init"
    model = model.to(dev).eval()
    lesion = _lesion()
    card64 = at_crop(card, CROP)          # 64^3 at the model's scale: the lesion still spans the same voxels
    spec = spec_of_card(card64)

    def product(card=card64):
        """The product path itself (panel, batch, effect): canonical crop, one forward, back onto the image."""
        return segment_lesion(model, card, lesion.image, lesion.center_lps, lesion.diameter_mm, device=args.device).mask

    def baseline(crop_spec=spec):
        """Unoptimised: MONAI sliding-window inference (32^3 windows, overlap 0.5, Gaussian), autograd on."""
        from monai.inferers import sliding_window_inference

        crop = canonical_crop(lesion.image, lesion.center_lps, lesion.diameter_mm, crop_spec)
        logits = sliding_window_inference(torch.from_numpy(crop.x[None]).to(dev), (32, 32, 32), 4, model,
                                          overlap=0.5, mode="gaussian")
        prob = torch.sigmoid(logits)[0, 0].detach().cpu().numpy()
        return (crop_to_image(prob, crop.grid, lesion.image) >= 0.5).astype(np.uint8)

    def baseline_no_grad(crop_spec=spec):
        with torch.no_grad():
            return baseline(crop_spec)

    fast_ms, fast_p90 = _time(product, args.repeats)
    slow_ms, slow_p90 = _time(baseline, args.repeats)
    nograd_ms, _ = _time(baseline_no_grad, args.repeats)
    native_ms, native_p90 = _time(lambda: product(card), args.repeats)
    native_ref_ms, _ = _time(lambda: baseline_no_grad(spec_of_card(card)), args.repeats)
    a, b = product() > 0, baseline() > 0
    agreement = float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))
    click = click_vs_panel(lesion, model, card if demo_model_path().is_file() else None, args.repeats)
    if args.device == "cpu" and "click_to_mask_ms_median" in click:
        click.update(first_click(args.threads))
    net = {k: card["model_config"][k] for k in ("channels", "num_res_units")}
    print(json.dumps({"bench": "weak_segment_64", "device": str(dev), "threads": args.threads, "model": source,
                      "network": net,
                      "product_ms_median": round(fast_ms, 2), "product_ms_p90": round(fast_p90, 2),
                      "sliding_window_ms_median": round(slow_ms, 2), "sliding_window_ms_p90": round(slow_p90, 2),
                      "speedup": round(slow_ms / fast_ms, 2),
                      "sliding_window_no_grad_ms_median": round(nograd_ms, 2),
                      "speedup_vs_no_grad": round(nograd_ms / fast_ms, 2),
                      "product_native_32_ms_median": round(native_ms, 2),
                      "product_native_32_ms_p90": round(native_p90, 2),
                      "native_32_sliding_window_no_grad_ms_median": round(native_ref_ms, 2),
                      "native_32_speedup_vs_no_grad": round(native_ref_ms / native_ms, 2),
                      "goal_ms": 150, "goal_met": fast_ms <= 150,
                      "dice_product_vs_sliding_window": round(agreement, 4), **click, "synthetic": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
