"""One device in this process: packing, launch-ahead, order, out-of-memory back-off, and its bound on work in flight."""

import threading
import time

import pytest

from crossrank import OutOfMemoryError
from crossrank.runtime.device import DeviceRuntime
from fakes import FakeBackend, encoded


def test_oom_splits_and_loses_nothing():
    backend = FakeBackend(fits=3)
    runtime = DeviceRuntime(backend, max_batch_tokens=10_000)
    assert runtime.submit(encoded(10)).result() == [float(i) for i in range(10)]
    assert backend.calls[0] == 10
    assert sum(n for n in backend.calls if n <= 3) == 10, "each pair scored exactly once after the splits"
    runtime.close()


def test_oom_on_a_single_pair_is_a_clear_error_on_the_future_and_the_runtime_goes_on():
    backend = FakeBackend(fits=0)
    runtime = DeviceRuntime(backend, max_batch_tokens=10_000)
    with pytest.raises(OutOfMemoryError, match="does not fit"):
        runtime.submit(encoded(4)).result()
    backend.fits = 10
    assert runtime.submit(encoded(2)).result() == [0.0, 1.0]
    runtime.close()


def test_other_runtime_errors_are_not_mistaken_for_oom():
    backend = FakeBackend(fits=1, error=RuntimeError("shape mismatch"))
    runtime = DeviceRuntime(backend, max_batch_tokens=10_000)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        runtime.submit(encoded(4)).result()
    assert backend.calls == [4]
    runtime.close()


def test_batches_follow_the_budget_and_logits_come_back_in_input_order():
    backend = FakeBackend()
    runtime = DeviceRuntime(backend, max_batch_tokens=15)
    mixed = [*encoded(7), *encoded(5, start=7, length=6)]  # 3-token and 6-token sequences
    assert runtime.submit(mixed).result() == [float(i) for i in range(12)]
    assert backend.calls == [2, 2, 2, 5, 1], "longest first, padded cost within 15 tokens"
    assert runtime.submit(mixed, max_batch_tokens=100).result() == [float(i) for i in range(12)]
    assert backend.calls[5:] == [12], "a per-call budget"
    assert runtime.submit([]).result() == []
    runtime.close()


def test_submit_waits_for_room_only_when_depth_submissions_are_in_flight():
    device_busy = threading.Event()

    class BusyDevice(DeviceRuntime):
        def _collect(self):  # the device finishes nothing until the test says so
            assert device_busy.wait(10)
            super()._collect()

    backend = FakeBackend()
    runtime = BusyDevice(backend, max_batch_tokens=10_000, depth=2)
    futures = [runtime.submit(encoded(1, start=i)) for i in range(2)]
    assert backend.calls == [1, 1] and not any(f.done() for f in futures), "launched at once, not waited for"
    third = threading.Thread(target=lambda: futures.append(runtime.submit(encoded(1, start=2))))
    third.start()
    time.sleep(0.2)
    assert backend.calls == [1, 1], "the third waits for room"
    device_busy.set()
    third.join(5)
    assert [f.result() for f in futures] == [[0.0], [1.0], [2.0]]
    runtime.close()


def test_a_closed_runtime_refuses_work():
    runtime = DeviceRuntime(FakeBackend(), max_batch_tokens=10)
    runtime.close()
    runtime.close()
    with pytest.raises(RuntimeError, match="closed"):
        runtime.submit(encoded(1))
