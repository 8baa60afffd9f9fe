"""`quaff info`: what this machine offers Quaff (torch, devices, a live int8 GEMM check)."""

from __future__ import annotations

import argparse
import json
import platform
from typing import Any

from cli.common import package_version


def register(subparsers: Any) -> None:
    """Add the `info` subcommand."""
    parser = subparsers.add_parser(
        "info", help="show the runtime Quaff would use and check the int8 GEMM on each device"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def int8_gemm_check(device: str) -> dict[str, Any]:
    """Run one `torch._int_mm` on `device` and compare it with an exact integer matmul."""
    import torch  # loads only when `quaff info` runs

    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (32, 64), dtype=torch.int8, generator=gen)
    b = torch.randint(-128, 128, (64, 32), dtype=torch.int8, generator=gen)
    expected = a.to(torch.int64) @ b.to(torch.int64)
    try:
        got = torch._int_mm(a.to(device), b.to(device)).cpu().to(torch.int64)
    except RuntimeError as exc:
        return {"device": device, "int8_gemm": False, "error": str(exc).splitlines()[0]}
    return {"device": device, "int8_gemm": bool(torch.equal(got, expected))}


def collect() -> dict[str, Any]:
    """Gather version and device facts."""
    import torch  # loads only when `quaff info` runs

    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return {
        "quaff": package_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "devices": [int8_gemm_check(d) for d in devices],
    }


def run(args: argparse.Namespace) -> int:
    """Print the facts; exit 1 when no device can run the int8 GEMM."""
    facts = collect()
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        print(f"quaff {facts['quaff']} (python {facts['python']}, torch {facts['torch']})")
        print(f"cpu threads: {facts['cpu_threads']}; cuda available: {facts['cuda_available']}")
        for dev in facts["devices"]:
            status = "ok" if dev["int8_gemm"] else f"FAILED {dev.get('error', 'wrong result')}"
            print(f"  {dev['device']}: int8 GEMM (torch._int_mm) {status}")
    return 0 if any(d["int8_gemm"] for d in facts["devices"]) else 1
