"""One frozen linear layer's forward + input-gradient backward: each int8 backend against fp32.

    .venv/bin/python -m bench.layer --shapes 576x1536,2048x8192 --backends onednn,dequant
    .venv/bin/python -m bench.layer --dtype bf16 --compile --backends int_mm,onednn_s8,dequant

Per shape (K x N, `--rows` rows), an `nn.Linear` in `--dtype` (the peer) with frozen weights and
its Quaff copies (two outlier channels, computing in that dtype; eager unless `--compile`) run
forward and backward to the input, interleaved round-robin; the best time of each is reported as
a speed-up over the peer. The host's CPU class
heads the table. Where a step's time goes per layer; `bench.ladder` measures whole steps.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from quaff_core.quant.capabilities import INT8_BACKENDS, Int8Backend, device_class
from quaff_core.quant.linear import QuaffLinear

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PEER = "peer"


def layer_times(
    k: int,
    n: int,
    rows: int,
    backends: list[Int8Backend],
    rounds: int,
    dtype: torch.dtype = torch.float32,
    compile: bool = False,
) -> dict[str, float]:
    """Best forward + backward seconds of the `dtype` peer (`PEER`) and of each backend at K x N."""
    torch.manual_seed(0)
    ref = nn.Linear(k, n, bias=False).requires_grad_(False)
    x, grad = torch.randn(rows, k, dtype=dtype), torch.randn(rows, n, dtype=dtype)
    layers: dict[str, nn.Module] = {PEER: copy.deepcopy(ref).to(dtype)}
    for backend in backends:
        layers[backend] = QuaffLinear.from_linear(
            copy.deepcopy(ref), [3, k // 2], compute_dtype=dtype, compile=compile,
            backend=backend,
        ).train()  # fmt: skip

    def step(layer: nn.Module) -> Callable[[], None]:
        def run() -> None:
            layer(x.clone().requires_grad_()).backward(grad)

        return run

    runs = {name: step(layer) for name, layer in layers.items()}
    best = dict.fromkeys(runs, float("inf"))
    for run in runs.values():
        run()
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shapes", default="576x1536,896x4864,4864x896,2048x8192,8192x2048")
    p.add_argument("--backends", default="onednn,dequant", help=f"comma list of {INT8_BACKENDS}")
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="the compute dtype")
    p.add_argument("--compile", action="store_true", help="compiled quantize passes")
    args = p.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = [b for b in args.backends if b not in INT8_BACKENDS]
    if unknown:
        p.error(f"unknown backends {unknown}; choose from {INT8_BACKENDS}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Print one row per shape."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{device_class('cpu')}, torch {torch.__version__}, {args.threads} threads, "
          f"{args.rows} rows, best of {args.rounds}, {args.dtype} peer and compute, "
          f"{'compiled' if args.compile else 'eager'} passes")  # fmt: skip
    print(f"| K x N | {args.dtype} ms | " + " | ".join(args.backends) + " |")
    print("|---|---:|" + "---:|" * len(args.backends))
    for shape in args.shapes.split(","):
        k, n = (int(v) for v in shape.split("x"))
        best = layer_times(
            k, n, args.rows, args.backends, args.rounds, DTYPES[args.dtype], args.compile
        )
        ratios = " | ".join(f"{best[PEER] / best[b]:.2f}x" for b in args.backends)
        print(f"| {k} x {n} | {1000 * best[PEER]:.1f} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
