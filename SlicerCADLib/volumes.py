"""Volume node <-> SimpleITK image with exact geometry (oblique, anisotropic); SimpleITK is LPS."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import slicer.util
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from slicercad.errors import GeometryError, InputError
from slicercad.geometry import geometry_from_ijk_to_ras, ijk_to_ras_matrix

from .app import ensure_scene

_SCALAR_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLVectorVolumeNode")


def _vtk_to_numpy(matrix: vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_vtk(array) -> vtkMatrix4x4:
    matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def _check_volume_node(node, what: str = "volume node"):
    if node is None or not any(node.IsA(c) for c in _SCALAR_CLASSES):
        name = node.GetClassName() if node is not None else None
        raise InputError(f"expected a scalar, labelmap or vector volume node, got {name}", what)
    if node.GetImageData() is None:
        raise InputError("volume node has no image data", node.GetName())


def world_ijk_to_ras(node) -> np.ndarray:
    """4x4 IJK -> world RAS of ``node``, including a linear parent transform (GeometryError if warped)."""
    local = vtkMatrix4x4()
    node.GetIJKToRASMatrix(local)
    matrix = _vtk_to_numpy(local)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise GeometryError("volume is under a non-linear transform; harden it first", node.GetName())
        to_world = vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        matrix = _vtk_to_numpy(to_world) @ matrix
    return matrix


def _world_to_local(node) -> np.ndarray:
    """4x4 world -> node-local RAS (identity when the node has no parent transform)."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise GeometryError("volume is under a non-linear transform; harden it first", node.GetName())
    from_world = vtkMatrix4x4()
    parent.GetMatrixTransformFromWorld(from_world)
    return _vtk_to_numpy(from_world)


def reference_image(node, pixel_type=sitk.sitkUInt8) -> sitk.Image:
    """An empty SimpleITK image on the voxel grid of volume ``node`` (world LPS geometry)."""
    _check_volume_node(node)
    dims = node.GetImageData().GetDimensions()
    image = sitk.Image([int(d) for d in dims], pixel_type)
    _apply_geometry(image, world_ijk_to_ras(node), node.GetName())
    return image


def _apply_geometry(image: sitk.Image, ijk_to_ras, source: str) -> None:
    geometry = geometry_from_ijk_to_ras(ijk_to_ras)
    try:
        image.SetOrigin(geometry["origin"])
        image.SetSpacing(geometry["spacing"])
        image.SetDirection(geometry["direction"])
    except RuntimeError as exc:
        raise GeometryError(f"IJKToRAS matrix is not a valid image geometry ({exc})", source) from None


def volume_node_to_sitk(node) -> sitk.Image:
    """A SimpleITK copy of volume ``node``: voxel values, origin, spacing and direction (LPS).

    A linear parent transform is applied to the geometry (the image sits where Slicer shows it).
    Vector volumes become multi-component images.
    """
    _check_volume_node(node)
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    is_vector = node.IsA("vtkMRMLVectorVolumeNode") or array.ndim == 4
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    _apply_geometry(image, world_ijk_to_ras(node), node.GetName())
    return image


def _as_3d(image: sitk.Image) -> sitk.Image:
    if image.GetDimension() == 3:
        return image
    if image.GetDimension() == 2:
        return sitk.JoinSeries(image)
    raise GeometryError(f"expected a 2D or 3D image, got {image.GetDimension()}D", "image")


def sitk_to_volume_node(image: sitk.Image, scene=None, name: str = "Volume", node=None, labelmap: bool = False):
    """Put ``image`` into a volume node (new, or ``node`` replaced in place) with its exact geometry.

    The image's geometry is world LPS: under a linear parent transform the node's own IJKToRAS is set so
    that the volume appears at that world position.

    ``labelmap=True`` makes a ``vtkMRMLLabelMapVolumeNode`` and requires an integer pixel type.
    Multi-component images become ``vtkMRMLVectorVolumeNode``. A 2D image becomes one slice.
    """
    if not isinstance(image, sitk.Image):
        raise InputError(f"expected a SimpleITK image, got {type(image).__name__}", name)
    image = _as_3d(image)
    components = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)
    if labelmap and (components > 1 or not np.issubdtype(array.dtype, np.integer)):
        raise InputError(f"a labelmap needs a single-component integer image, got {image.GetPixelIDTypeAsString()}",
                         name)
    if array.dtype == np.int64:
        array = _narrow_int64(array, name)
    class_name = ("vtkMRMLLabelMapVolumeNode" if labelmap
                  else "vtkMRMLVectorVolumeNode" if components > 1 else "vtkMRMLScalarVolumeNode")
    scene = ensure_scene(scene if node is None else node.GetScene())
    if node is None:
        node = scene.AddNewNodeByClass(class_name, name)
    elif not node.IsA(class_name):
        raise InputError(f"node is a {node.GetClassName()}, this image needs a {class_name}", node.GetName())
    node.SetIJKToRASMatrix(_numpy_to_vtk(_world_to_local(node) @ ijk_to_ras_matrix(image)))
    slicer.util.updateVolumeFromArray(node, array)
    node.CreateDefaultDisplayNodes()
    return node


def _narrow_int64(array: np.ndarray, source: str) -> np.ndarray:
    """VTK volumes cannot hold 64-bit integers for display: use int32 when the values fit."""
    info = np.iinfo(np.int32)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise InputError("64-bit integer values do not fit in int32", source)
    return array.astype(np.int32)
