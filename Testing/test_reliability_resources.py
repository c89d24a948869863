"""Resource limits: memory estimate with advice, GPU out-of-memory fallback, CPU thread cap."""
import numpy as np
import pytest
import torch

from slicercad.engine.predict import predict
from slicercad.errors import InputError
from slicercad.resources import check_memory, estimate_bytes, run_with_oom_fallback, set_cpu_threads


def test_estimate_bytes_numpy_and_torch():
    assert estimate_bytes((10, 20, 30), np.float32) == 10 * 20 * 30 * 4
    assert estimate_bytes((10, 20, 30), torch.int16, copies=3) == 10 * 20 * 30 * 2 * 3
    with pytest.raises(InputError, match="negative"):
        estimate_bytes((4, -1), np.uint8)


def test_check_memory_refuses_a_grid_larger_than_memory_with_advice():
    need = check_memory((64, 64, 64), np.float32, "liver ROI", available=10 * 2 ** 20)
    assert need == 64 ** 3 * 4
    with pytest.raises(InputError) as info:
        check_memory((2048, 2048, 2048), np.float32, "CT volume resampled to 0.2 mm", available=8 * 2 ** 30)
    message = str(info.value)
    assert info.value.source == "CT volume resampled to 0.2 mm"
    assert "32.00 GiB" in message and "smaller grid or ROI" in message


def test_check_memory_uses_real_available_memory():
    with pytest.raises(InputError, match="available"):
        check_memory((1 << 20, 1 << 20, 1 << 10), np.float64, "absurd grid")


def _oom_until(limit_device, max_batch):
    calls = []

    def fn(device, batch_size):
        calls.append((device, batch_size))
        if device == limit_device and batch_size > max_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return f"ran on {device} with {batch_size}"
    return fn, calls


def test_oom_fallback_halves_the_batch_on_the_gpu():
    fn, calls = _oom_until("cuda", 8)
    result = run_with_oom_fallback(fn, device="cuda", batch_size=64)
    assert (result.device, result.batch_size, result.value) == ("cuda", 8, "ran on cuda with 8")
    assert calls == [("cuda", 64), ("cuda", 32), ("cuda", 16), ("cuda", 8)]
    assert len(result.attempts) == 3


def test_oom_fallback_moves_to_cpu_when_the_smallest_batch_does_not_fit():
    fn, calls = _oom_until("cuda", 0)
    result = run_with_oom_fallback(fn, device="cuda", batch_size=4, min_batch_size=2)
    assert (result.device, result.batch_size) == ("cpu", 2)
    assert calls[-1] == ("cpu", 2)


def test_oom_without_fallback_raises_typed_error_with_advice():
    fn, _ = _oom_until("cuda", 0)
    with pytest.raises(InputError) as info:
        run_with_oom_fallback(fn, device="cuda", batch_size=2, cpu_fallback=False, what="Grad-CAM")
    assert info.value.source == "Grad-CAM"
    assert "GPU out of memory" in str(info.value) and "run on the CPU" in str(info.value)


def test_cpu_out_of_memory_raises_typed_error_and_other_errors_pass_through():
    def cpu_oom(device, batch_size):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 GB")
    with pytest.raises(InputError, match="smaller batch size"):
        run_with_oom_fallback(cpu_oom, device="cpu", batch_size=1)

    def bug(device, batch_size):
        raise KeyError("not a memory problem")
    with pytest.raises(KeyError):
        run_with_oom_fallback(bug, device="cpu")


class _ThreadProbe(torch.nn.Module):
    """Records the torch thread count seen during forward."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.linear(x.flatten(1))


def test_set_cpu_threads_is_honoured_by_inference():
    model = _ThreadProbe()
    card = {"temperature": 1.0, "classes": ["a", "b"], "input_spec": {}, "name": "probe", "task": "probe"}
    previous = set_cpu_threads(2)
    try:
        predict(model, card, torch.zeros(3, 1, 2, 2), batch_size=2)
        set_cpu_threads(1)
        results = predict(model, card, torch.zeros(3, 1, 2, 2), batch_size=2)
        assert len(results) == 3 and model.seen == [2, 2, 1, 1]
        with pytest.raises(InputError, match="positive integer"):
            set_cpu_threads(0)
    finally:
        set_cpu_threads(previous)
    assert torch.get_num_threads() == previous


def test_set_cpu_threads_caps_blas_and_openmp_pools_already_started():
    """numpy's BLAS and torch's OpenMP are loaded (and their pools sized) before the cap: environment
    variables would not reach them, threadpoolctl does."""
    import SimpleITK as sitk
    from threadpoolctl import threadpool_info

    np.ones((64, 64)) @ np.ones((64, 64))
    torch.ones(64, 64) @ torch.ones(64, 64)
    loaded = {lib["user_api"] for lib in threadpool_info()}
    assert "blas" in loaded, loaded
    previous = set_cpu_threads(1)
    try:
        assert all(lib["num_threads"] == 1 for lib in threadpool_info()), threadpool_info()
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1
    finally:
        set_cpu_threads(previous)
