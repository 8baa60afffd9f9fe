"""Each int8 backend of a device against an exact int8 reference, without pytest.

    python -m bench.gpu_kernels --device cuda

`int8_mm` and oneDNN's GEMM (`onednn`, CPU: 8-bit activations, 7-bit weights) must equal the
exact int64 product of their integers; a whole QuaffLinear (forward and input gradient) must stay
within 2% / 3% of the float reference on Gaussian data with planted outliers, the int8 head's
input gradient within 5% on softmax gradients of peaked logits. Prints one row per
check and exits 1 if any fails. Needs torch only (the GPU machine has no pytest).
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch
from torch import nn

from quaff_core.quant.capabilities import (
    INT8_BACKENDS,
    ONEDNN_GRAD_BACKENDS,
    Int8Backend,
    device_class,
    int8_backend,
    onednn_eight_bit_exact,
)
from quaff_core.quant.head import HEAD_BACKENDS, Int8HeadGrad
from quaff_core.quant.kernels import int8_mm
from quaff_core.quant.linear import QuaffLinear
from quaff_core.quant.onednn import OnednnPacks, onednn_available, seven_bit
from quaff_core.quant.primitives import U8_ZERO, quantize_rows_u8

BUDGETS = {
    "int8_mm": 0.0,
    "onednn": 0.0,
    "forward": 0.02,
    "input_grad": 0.03,
    "head_grad": 0.05,
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm())


def check_int8_mm(device: str, backend: Int8Backend) -> float:
    """int8_mm on odd shapes against the exact int64 product."""
    worst = 0.0
    g = torch.Generator().manual_seed(0)
    for m, k, n in [(5, 64, 24), (33, 200, 96), (256, 512, 384)]:
        a = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g)
        b = torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=g)
        exact = a.long() @ b.long()
        got = int8_mm(a.to(device), b.to(device), backend).cpu().double()
        worst = max(worst, rel_err(got, exact))
    return worst


def check_onednn() -> float:
    """oneDNN's GEMM, forward and input-gradient packs, against the exact int64 product."""
    g = torch.Generator().manual_seed(1)
    q_w = torch.randint(-127, 128, (96, 320), dtype=torch.int8, generator=g)
    packs, w7 = OnednnPacks.of(q_w), seven_bit(q_w).long()
    q, _ = quantize_rows_u8(torch.randn(64, 320, generator=g) * 30, None)
    g_q, _ = quantize_rows_u8(torch.randn(64, 96, generator=g), None)
    return max(
        rel_err(packs.forward_mm(q), (q.long() - U8_ZERO) @ w7.t()),
        rel_err(packs.grad_mm(g_q), (g_q.long() - U8_ZERO) @ w7),
    )


def check_layer(device: str, backend: Int8Backend) -> tuple[float, float]:
    """(forward, input-gradient) error of a QuaffLinear on `backend` against float."""
    torch.manual_seed(3)
    ref = nn.Linear(512, 384).to(device)
    channels = list(range(7, 512, 97))
    quaff = QuaffLinear.from_linear(
        copy.deepcopy(ref), channels, compute_dtype=torch.float32, compile=False, backend=backend
    ).train()
    x = torch.randn(96, 512, device=device)
    x[:, channels] *= 100.0
    grad = torch.randn(96, 384, device=device)
    x_ref, x_q = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref = ref(x_ref)
    out_ref.backward(grad)
    out = quaff(x_q)
    out.backward(grad)
    assert x_q.grad is not None
    assert x_ref.grad is not None
    return rel_err(out, out_ref), rel_err(x_q.grad, x_ref.grad)


def check_head(device: str, backend: Int8Backend) -> float:
    """The int8 head's input gradient dlogits @ W against float, at a [8192, 512] head."""
    g = torch.Generator().manual_seed(4)
    weight = (torch.randn(8192, 512, generator=g) * 0.02).to(device)
    probs = torch.softmax(3 * torch.randn(96, 8192, generator=g), dim=-1).to(device)
    probs[torch.arange(96), torch.randint(0, 8192, (96,), generator=g).to(device)] -= 1.0
    got = Int8HeadGrad(weight, backend, compile=False)(probs.clone(), torch.float32)
    return rel_err(got, probs @ weight)


def run(device: str) -> list[tuple[str, float, float]]:
    """(check, error, budget) rows for `device`."""
    backends: list[Int8Backend] = (
        ["int_mm"]
        if device == "cuda"
        else [b for b in INT8_BACKENDS if b not in ONEDNN_GRAD_BACKENDS]
    )
    if device == "cpu" and onednn_available():
        # 8-bit weights only where oneDNN's products cannot saturate (VNNI, AMX)
        eight_bit = onednn_eight_bit_exact()
        backends.extend(b for b in ONEDNN_GRAD_BACKENDS if b != "onednn_s8" or eight_bit)
    rows = []
    for backend in backends:
        if backend in ("int_mm", "fp32"):
            rows.append((f"int8_mm {backend}", check_int8_mm(device, backend), BUDGETS["int8_mm"]))
        if backend in HEAD_BACKENDS:
            head = check_head(device, backend)
            rows.append((f"int8 head input gradient {backend}", head, BUDGETS["head_grad"]))
        if backend == "onednn":
            rows.append(("oneDNN u8 x s7 product", check_onednn(), BUDGETS["onednn"]))
        fwd, bwd = check_layer(device, backend)
        rows.append((f"QuaffLinear {backend} forward", fwd, BUDGETS["forward"]))
        rows.append((f"QuaffLinear {backend} input gradient", bwd, BUDGETS["input_grad"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the checks; 1 if any error is over its budget."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    print(f"{device_class(args.device)}: auto int8 backend {int8_backend(args.device)}")
    print("| check | relative error | budget | |\n|---|---:|---:|---|")
    failed = 0
    for name, err, budget in run(args.device):
        ok = err <= budget
        failed += not ok
        print(f"| {name} | {err:.2e} | {budget:.0e} | {'ok' if ok else 'FAILED'} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
