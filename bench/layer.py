"""One frozen linear layer's forward + input-gradient backward: each int8 backend against fp32.

    .venv/bin/python -m bench.layer --shapes 576x1536,2048x8192 --backends onednn,dequant

Per shape (K x N, `--rows` rows), a float32 `nn.Linear` with frozen weights and its Quaff copies
(two outlier channels, float32 compute, eager) run forward and backward to the input, interleaved
round-robin; the best time of each is reported as a speed-up over fp32. The host's CPU class
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


def layer_times(
    k: int, n: int, rows: int, backends: list[Int8Backend], rounds: int
) -> dict[str, float]:
    """Best forward + backward seconds of fp32 and of each backend at K x N."""
    torch.manual_seed(0)
    ref = nn.Linear(k, n, bias=False).requires_grad_(False)
    x, grad = torch.randn(rows, k), torch.randn(rows, n)
    layers: dict[str, nn.Module] = {"fp32": ref}
    for backend in backends:
        layers[backend] = QuaffLinear.from_linear(
            copy.deepcopy(ref), [3, k // 2], compute_dtype=torch.float32, compile=False,
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
          f"{args.rows} rows, best of {args.rounds}")  # fmt: skip
    print("| K x N | fp32 ms | " + " | ".join(args.backends) + " |")
    print("|---|---:|" + "---:|" * len(args.backends))
    for shape in args.shapes.split(","):
        k, n = (int(v) for v in shape.split("x"))
        best = layer_times(k, n, args.rows, args.backends, args.rounds)
        ratios = " | ".join(f"{best['fp32'] / best[b]:.2f}x" for b in args.backends)
        print(f"| {k} x {n} | {1000 * best['fp32']:.1f} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
