"""Resource limits: refuse a grid that will not fit in memory, fall back when a GPU runs out of
memory, and cap the CPU threads inference uses, each failing with advice instead of hanging Slicer."""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from .errors import InputError

GIB = 2 ** 30
_CPU_OOM_TEXT = ("DefaultCPUAllocator: can't allocate memory", "not enough memory")


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def _dtype(dtype) -> tuple[str, int]:
    """(name, bytes per element) of a numpy or torch dtype."""
    if hasattr(dtype, "is_floating_point"):  # torch.dtype
        return str(dtype).replace("torch.", ""), dtype.itemsize
    return np.dtype(dtype).name, np.dtype(dtype).itemsize


def estimate_bytes(shape, dtype, copies: float = 1.0) -> int:
    """Bytes for ``copies`` arrays of ``shape`` and ``dtype`` (numpy or torch dtype)."""
    dims = [int(s) for s in shape]
    if any(s < 0 for s in dims):
        raise InputError(f"grid shape {tuple(dims)} has a negative size", "shape")
    itemsize = _dtype(dtype)[1]
    return int(math.prod(dims) * itemsize * copies)


def _windows_available_memory() -> int | None:
    """Available physical memory from Windows' GlobalMemoryStatusEx (ctypes), or None."""
    import ctypes

    class MemoryStatusEx(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

    status = MemoryStatusEx()
    status.dwLength = ctypes.sizeof(MemoryStatusEx)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None
    return int(status.ullAvailPhys)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or None when this platform does not say.

    psutil when installed (it is not bundled with Slicer), else Linux's ``MemAvailable`` (free memory plus
    the page cache the kernel can reclaim), else POSIX ``sysconf`` (free pages x page size: only free
    memory, so on the safe side), else Windows' ``GlobalMemoryStatusEx``."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, page_size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page_size > 0:
            return int(pages) * int(page_size)
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name (macOS)
        pass
    if os.name == "nt":
        try:
            return _windows_available_memory()
        except (AttributeError, OSError):
            return None
    return None


def check_memory(shape, dtype, what: str, copies: float = 1.0, fraction: float = 0.8,
                 available: int | None = None) -> int:
    """Bytes needed for a ``shape`` grid of ``dtype`` (times ``copies`` working arrays); raises
    InputError naming ``what`` with advice when that exceeds ``fraction`` of the available memory.
    Where the available memory is unknown (``available_memory`` is None) the check is skipped."""
    need = estimate_bytes(shape, dtype, copies)
    free = available_memory() if available is None else int(available)
    if free is None:
        return need
    if need > fraction * free:
        raise InputError(
            f"the requested grid {tuple(int(s) for s in shape)} ({_dtype(dtype)[0]}, x{copies:g}) needs "
            f"{_gib(need)} but only {_gib(free)} of memory is available: choose a smaller grid or ROI "
            "(larger spacing in mm, or crop around the lesion), process fewer cases at once, or close "
            "other applications", what)
    return need


def _is_cuda_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc))


def _is_cpu_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and any(t in str(exc) for t in _CPU_OOM_TEXT))


@dataclasses.dataclass
class FallbackResult:
    """What ``run_with_oom_fallback`` returned and how it got there."""

    value: object
    device: str
    batch_size: int
    attempts: list


def run_with_oom_fallback(fn, device="cuda", batch_size: int = 1, min_batch_size: int = 1,
                          what: str = "inference", cpu_fallback: bool = True) -> FallbackResult:
    """Call ``fn(device, batch_size)``. On a CUDA out-of-memory error halve the batch (down to
    ``min_batch_size``), then retry on the CPU; a CPU out-of-memory error, or a GPU one with no
    fallback left, raises InputError naming ``what`` with advice."""
    import torch

    if batch_size < 1 or min_batch_size < 1:
        raise InputError(f"batch sizes must be >= 1, got {batch_size} (minimum {min_batch_size})", what)
    device, attempts = str(device), []
    while True:
        try:
            value = fn(device, batch_size)
            return FallbackResult(value, device, batch_size, attempts)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled, others re-raised
            if _is_cuda_oom(exc):
                attempts.append(f"{device} batch {batch_size}: CUDA out of memory")
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if batch_size > min_batch_size:
                    batch_size = max(min_batch_size, batch_size // 2)
                    continue
                if cpu_fallback and device != "cpu":
                    device = "cpu"
                    continue
                raise InputError(f"GPU out of memory even at batch size {batch_size}: use a smaller grid or ROI, "
                                 "run on the CPU, or free GPU memory (close other GPU programs)", what) from None
            if _is_cpu_oom(exc):
                attempts.append(f"{device} batch {batch_size}: out of memory")
                raise InputError(f"out of memory on {device} at batch size {batch_size} (tried: "
                                 f"{'; '.join(attempts)}): use a smaller grid or ROI, a smaller batch size, or a "
                                 "machine with more memory", what) from None
            raise


def set_cpu_threads(n: int) -> int:
    """Cap the CPU threads of torch, SimpleITK and the BLAS/OpenMP pools at ``n``; returns the old torch count.

    The environment variables only reach child processes (a pool already started ignores them), so the
    pools loaded in this process are capped through threadpoolctl.
    """
    import SimpleITK as sitk
    import torch
    from threadpoolctl import threadpool_limits

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"thread count must be a positive integer, got {n!r}", "threads")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    threadpool_limits(limits=n)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(n)
    return previous
