"""The device turnstile: one holder at a time, and a holder yields to a waiter between steps."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from store.device_lock import DeviceTurnstile, lock_name


def test_lock_name_is_the_physical_device() -> None:
    assert lock_name("auto", False) == "cpu"
    assert lock_name("cpu", True) == "cpu"
    assert lock_name("auto", True) == "cuda:0"
    assert lock_name("cuda:1", True) == "cuda:1"


def test_a_holder_hands_the_device_to_a_waiter_between_steps(tmp_path: Path) -> None:
    trainer, inference = DeviceTurnstile(tmp_path, "cpu"), DeviceTurnstile(tmp_path, "cpu")
    order: list[str] = []
    trainer.acquire()
    assert not trainer.contended()

    def infer_step() -> None:
        inference.acquire()  # waits at the gate for the trainer's next yield
        order.append("inference")
        inference.release()

    thread = threading.Thread(target=infer_step)
    thread.start()
    deadline = time.monotonic() + 10
    while not trainer.contended() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert trainer.contended()
    order.append("training step")
    trainer.yield_if_wanted()  # lets the waiting inference step run, then takes the device back
    thread.join(timeout=10)
    assert trainer.held
    assert order == ["training step", "inference"]
    trainer.release()
    assert not trainer.held
