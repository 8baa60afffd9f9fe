"""Training hands the device to a waiting inference request inside a step, in forward and in
backward, soon after the request arrives, and computes the same thing as without the hooks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from store.device_lock import DeviceTurnstile
from worker.device_share import layer_yields

LAYERS = 12
ARRIVES = 4  # the request arrives after this many layers of the pass
SLOW_S = 0.01  # each layer's forward and backward


class Trace:
    """The order of events, and an inference request that arrives during a chosen pass."""

    def __init__(self, inference: DeviceTurnstile, trainer: DeviceTurnstile) -> None:
        self.log: list[str] = []
        self.inference, self.trainer = inference, trainer
        self.arrive_in: str | None = None
        self.thread: threading.Thread | None = None

    def layer(self, what: str) -> None:
        time.sleep(SLOW_S)
        self.log.append(what)
        if what == self.arrive_in and self.log.count(what) == ARRIVES:
            self.thread = threading.Thread(target=self._infer)
            self.thread.start()
            deadline = time.monotonic() + 10
            while not self.trainer.contended() and time.monotonic() < deadline:
                time.sleep(0.001)

    def _infer(self) -> None:
        self.inference.acquire()
        self.log.append("inference")
        self.inference.release()

    def served_after(self, what: str) -> int:
        """How many layers of `what` ran before the request got the device."""
        assert self.thread is not None
        self.thread.join(timeout=10)
        return self.log[: self.log.index("inference")].count(what)


class _SlowBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, trace: Trace) -> torch.Tensor:
        ctx.trace = trace
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.trace.layer("backward")
        return grad, None


class _Layer(nn.Module):
    def __init__(self, trace: Trace) -> None:
        super().__init__()
        self.linear, self.trace = nn.Linear(8, 8), trace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.trace.layer("forward")
        return _SlowBackward.apply(torch.tanh(self.linear(x)), self.trace)


def _step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    model(x).sum().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_a_waiter_gets_the_device_within_a_layer_in_forward_and_in_backward(
    tmp_path: Path,
) -> None:
    trainer = DeviceTurnstile(tmp_path, "cpu")
    trace = Trace(DeviceTurnstile(tmp_path, "cpu"), trainer)
    torch.manual_seed(0)
    model, x = nn.Sequential(*[_Layer(trace) for _ in range(LAYERS)]), torch.randn(4, 8)
    expected = _step(model, x)
    trainer.acquire()
    with layer_yields(trainer) as yielder:
        trace.log.clear()
        trace.arrive_in = "forward"
        total = model(x).sum()
        assert trace.served_after("forward") in (ARRIVES, ARRIVES + 1)

        trace.log.clear()
        trace.arrive_in = "backward"
        total.backward()
        assert trace.served_after("backward") in (ARRIVES, ARRIVES + 1, ARRIVES + 2)
        assert yielder.yields == 2
        trace.arrive_in = None
        assert torch.equal(_step(model, x), expected)
    assert trainer.held
    trainer.release()


def test_no_waiter_no_yield_and_the_hooks_go_with_the_block(tmp_path: Path) -> None:
    trainer = DeviceTurnstile(tmp_path, "cpu")
    trace = Trace(DeviceTurnstile(tmp_path, "cpu"), trainer)
    model = nn.Sequential(*[_Layer(trace) for _ in range(3)])
    before = dict(nn.modules.module._global_forward_pre_hooks)
    trainer.acquire()
    with layer_yields(trainer) as yielder:
        _step(model, torch.randn(2, 8))
    assert yielder.yields == 0
    assert trainer.held
    trainer.release()
    assert dict(nn.modules.module._global_forward_pre_hooks) == before
