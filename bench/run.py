"""`make bench`: speed/memory, then quality over seeds with outlier stability.

    .venv/bin/python -m bench.run            # the full configuration (~45 min on 2 idle CPU cores)
    .venv/bin/python -m bench.run --quick    # about 15 minutes: fewer steps, one shape, one seed

Each stage runs in its own process (so one stage's memory never inflates the next one's
measurements), prints its side-by-side table and writes its JSON under `--results`;
bench/RESULTS.md is written by hand from them. Extra flags for a stage: `--speed-args "..."` and
`--quality-args "..."` (appended last, so they override the defaults).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

QUICK_SPEED = ["--shape", "4x256", "--steps", "2", "--warmup", "1", "--profile", "quaff"]
QUICK_QUALITY = [
    "--seeds", "42", "--steps", "40", "--eval-every", "10",
    "--train-examples", "400", "--valid-examples", "64", "--test", "48",
]  # fmt: skip


def stage_commands(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, argv) of every stage to run, in order."""
    speed = ["-m", "bench.speed", "--json", str(args.results / "speed.json")]
    quality = ["-m", "bench.quality", "--json", str(args.results / "quality.json")]
    if args.quick:
        speed += QUICK_SPEED
        quality += QUICK_QUALITY
    speed += shlex.split(args.speed_args)
    quality += shlex.split(args.quality_args)
    stages = []
    if not args.skip_speed:
        stages.append(("speed", speed))
    if not args.skip_quality:
        stages.append(("quality", quality))
    return stages


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small configuration (about 15 minutes)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--speed-args", default="", help="extra flags for bench.speed")
    p.add_argument("--quality-args", default="", help="extra flags for bench.quality")
    p.add_argument("--results", type=Path, default=Path("bench/results"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the stages; stop at the first failure."""
    args = parse_args(argv)
    start = time.perf_counter()
    for name, cmd in stage_commands(args):
        t0 = time.perf_counter()
        print(f"\n#### {name}: python {shlex.join(cmd)}", flush=True)
        done = subprocess.run([sys.executable, *cmd], check=False)
        if done.returncode != 0:
            raise SystemExit(f"bench stage {name!r} failed with exit code {done.returncode}")
        print(f"#### {name} done in {time.perf_counter() - t0:.0f}s", flush=True)
    print(f"\nbench finished in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
