"""Float overlay + segment outline + markups rendered by Slicer's slice logic; pixels checked."""
import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.errors import InputError
from SlicerCADLib.overlays import show_float_overlay
from SlicerCADLib.render import render_slice_png, render_slice_rgb
from SlicerCADLib.segmentations import label_array_to_segment
from SlicerCADLib.volumes import sitk_to_volume_node

SHAPE = (20, 64, 64)          # k, j, i
SPACING = (0.8, 0.8, 2.5)     # i, j, k (mm)
CENTER = (40, 24, 10)         # lesion voxel (i, j, k)
RADIUS_MM = 6.0
SIZE = (128, 128)


@pytest.fixture
def lesion_scene(scene):
    k, j, i = np.indices(SHAPE)
    background = sitk.GetImageFromArray((50 + i + j).astype(np.float32))
    background.SetSpacing(SPACING)
    background.SetOrigin((-25.0, 10.0, -20.0))
    node = sitk_to_volume_node(background, scene, name="T1")
    dist_mm = np.sqrt(sum(((idx - c) * s) ** 2 for idx, c, s in zip((i, j, k), CENTER, SPACING)))
    heat = np.exp(-(dist_mm / RADIUS_MM) ** 2).astype(np.float32)
    overlay = show_float_overlay(heat, node, "attention", colormap="PET-Heat", opacity=0.5)
    segmentation, _ = label_array_to_segment((dist_mm <= RADIUS_MM).astype(np.uint8), node, color=(0, 1, 0))
    fiducials = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    ras = np.array(background.TransformIndexToPhysicalPoint(CENTER)) * [-1, -1, 1]
    fiducials.AddControlPoint(ras.tolist())
    return node, overlay, segmentation, fiducials, ras


def _is_grey(pixels):
    return (pixels.max(axis=-1).astype(int) - pixels.min(axis=-1)) <= 2


def test_overlay_colour_at_the_lesion_only(lesion_scene):
    node, overlay, _, _, ras = lesion_scene
    plain = render_slice_rgb(node, size=SIZE)
    hot = render_slice_rgb(node, overlay, 0.5, center_ras=ras, size=SIZE)
    row, col, distance = hot.pixel_of(ras)
    assert distance < 1e-6
    assert _is_grey(plain.rgb).all()                        # the background alone is grey
    rows, cols = np.indices(hot.rgb.shape[:2])
    radius_px = np.hypot(rows - row, cols - col) * np.linalg.norm(hot.xy_to_ras[:3, 0])  # in mm
    lesion = hot.rgb[radius_px <= RADIUS_MM].astype(int)
    warm = (lesion[:, 0] - lesion[:, 2] > 30) & (lesion[:, 0] >= lesion[:, 1])
    assert warm.mean() > 0.5                                # heat colours on the lesion
    far = radius_px > 3 * RADIUS_MM
    assert far.sum() > 1000 and _is_grey(hot.rgb[far]).all()
    np.testing.assert_array_equal(hot.rgb[far], plain_centered(node, ras).rgb[far])  # untouched there


def plain_centered(node, ras):
    return render_slice_rgb(node, center_ras=ras, size=SIZE)


def test_png_with_outline_and_ring_written_atomically(lesion_scene, tmp_path, scene):
    node, overlay, segmentation, fiducials, ras = lesion_scene
    count = scene.GetNumberOfNodes()
    path = render_slice_png(tmp_path / "view.png", node, overlay, 0.5, segmentation, fiducials,
                            center_ras=ras, size=SIZE)
    assert scene.GetNumberOfNodes() == count                # temporary nodes removed
    assert [p.name for p in tmp_path.iterdir()] == ["view.png"]
    png = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    image = render_slice_rgb(node, overlay, 0.5, segmentation, fiducials, center_ras=ras, size=SIZE)
    np.testing.assert_array_equal(png, image.rgb)
    row, col, _ = image.pixel_of(ras)
    rows, cols = np.indices(png.shape[:2])
    radius_px = np.hypot(rows - row, cols - col)
    green = (png[..., 1] > 200) & (png[..., 0] < 60) & (png[..., 2] < 60)
    pixel_mm = np.linalg.norm(image.xy_to_ras[:3, 0])
    border_px = RADIUS_MM / pixel_mm
    assert green.sum() > 20
    voxel_px = max(SPACING[:2]) / pixel_mm
    # Slicer outlines the border voxels of the voxelised sphere: a band at most ~3 voxels wide
    assert np.all(radius_px[green] <= border_px + voxel_px)
    assert np.all(radius_px[green] >= border_px - 3 * voxel_px)
    assert not green[radius_px < border_px / 2].any()       # an outline, not a filled disc
    angles = np.arctan2(rows - row, cols - col)[green]
    assert all(np.any(np.abs(np.angle(np.exp(1j * (angles - a)))) < 0.3) for a in np.linspace(-3, 3, 7))
    ring = np.all(png == (255, 128, 128), axis=-1)
    assert ring.sum() > 10 and np.all(np.abs(radius_px[ring] - 6.0) <= 1.5)


def test_coronal_view_and_bad_arguments(lesion_scene, tmp_path):
    node, _, _, fiducials, ras = lesion_scene
    image = render_slice_rgb(node, markups=fiducials, orientation="Coronal", center_ras=ras, size=SIZE)
    row, col, distance = image.pixel_of(ras)
    assert distance < 1e-6 and 0 <= row < SIZE[1] and 0 <= col < SIZE[0]
    assert np.all(image.rgb[int(round(row)), int(round(col)) + 6] == (255, 128, 128))
    with pytest.raises(InputError, match="orientation"):
        render_slice_rgb(node, orientation="Oblique")
    with pytest.raises(InputError, match=".png"):
        render_slice_png(tmp_path / "view.jpg", node)


def test_field_of_view_zooms_on_the_lesion(lesion_scene):
    node, overlay, _, _, ras = lesion_scene
    wide = render_slice_rgb(node, center_ras=ras, size=SIZE)
    zoom = render_slice_rgb(node, center_ras=ras, size=SIZE, fov_mm=24.0)
    mm_per_px = np.linalg.norm(zoom.xy_to_ras[:3, 0])
    assert mm_per_px == pytest.approx(24.0 / SIZE[0], rel=1e-6)
    assert mm_per_px < np.linalg.norm(wide.xy_to_ras[:3, 0]) / 2
    row, col, distance = zoom.pixel_of(ras)                 # still centred on the lesion
    assert distance < 1e-6 and abs(row - SIZE[1] / 2) <= 1 and abs(col - SIZE[0] / 2) <= 1
    with pytest.raises(InputError, match="fov_mm"):
        render_slice_rgb(node, fov_mm=0)


def test_rendering_adds_no_node_to_the_scene(lesion_scene, scene):
    node, overlay, segmentation, fiducials, ras = lesion_scene
    slices, total = scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"), scene.GetNumberOfNodes()
    added = []
    tag = scene.AddObserver(scene.NodeAddedEvent, lambda *_: added.append(1))
    try:
        render_slice_rgb(node, overlay, 0.5, segmentation, fiducials, center_ras=ras, size=SIZE)
    finally:
        scene.RemoveObserver(tag)
    assert not added                                        # not even temporarily (no hidden slice widget)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSliceNode") == slices and scene.GetNumberOfNodes() == total
