"""How often llama.cpp answers a GGUF export with our server's greedy text.

    .venv/bin/python -m bench.gguf_agreement --json bench/results/gguf_agreement.json

The tuned SmolLM2 of the GGUF round-trip test (`tests/infer/gguf_roundtrip.py`: a random LoRA,
scaled down) answers ten chat prompts greedily (16 tokens) on our inference path (merged,
float32); `llama-server` answers the same prompt ids from each export: F16, Q8_0 as the export
writes it (convert_hf_to_gguf.py), and Q8_0 with the token embedding and output head kept F16
(`llama-quantize --token-embedding-type f16 --output-tensor-type f16`). Per variant: prompts
answered identically, the mean identical prefix (characters, as a fraction of our answer) and
the file size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import command_line, environment, write_json
from quaff_core.models.llama_cpp import llama_server, llama_tool
from tests.infer.gguf_roundtrip import build_tuned, export, llama_answers, our_answers

MB = 2**20


def common_prefix(a: str, b: str) -> int:
    """Characters `a` and `b` share from the start."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def agreement(ours: list[str], theirs: list[str]) -> dict[str, Any]:
    """Identical answers, and the mean identical prefix as a fraction of ours."""
    prefixes = [common_prefix(a, b) / max(len(a), 1) for a, b in zip(ours, theirs, strict=True)]
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    return {"same": same, "prompts": len(ours), "mean_prefix": sum(prefixes) / len(prefixes)}


def variants(tuned: dict[str, Any], root: Path) -> dict[str, Path]:
    """The GGUF files compared: the F16 and Q8_0 exports, and Q8_0 with F16 embedding/output."""
    f16 = export(tuned, "gguf_f16") / "model-f16.gguf"
    q8 = export(tuned, "gguf_q8_0") / "model-q8_0.gguf"
    mixed = root / "model-q8_0-f16-embedding-output.gguf"
    argv = [str(llama_tool("llama-quantize")), "--token-embedding-type", "f16",
            "--output-tensor-type", "f16", str(f16), str(mixed), "q8_0"]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True)
    return {"f16": f16, "q8_0": q8, "q8_0 (f16 embedding/output)": mixed}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build, answer, compare; print the table and save the JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quaff-bench-gguf-") as tmp:
        tuned = build_tuned(Path(tmp))
        prompts, ours = our_answers(tuned)
        rows: dict[str, Any] = {}
        for name, path in variants(tuned, Path(tmp)).items():
            theirs = llama_answers(llama_server(), path, prompts)
            rows[name] = {**agreement(ours, theirs), "size_mb": round(path.stat().st_size / MB, 1),
                          "answers": theirs}  # fmt: skip
    result: dict[str, Any] = {
        "command": command_line("bench.gguf_agreement", argv),
        "environment": environment(os.cpu_count() or 1),
        "ours": ours,
        "variants": rows,
    }
    print(f"host: {result['environment']['device']}")
    print("| GGUF | identical answers | mean identical prefix | MB |\n|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['same']}/{row['prompts']} | {row['mean_prefix']:.0%} | "
              f"{row['size_mb']} |")  # fmt: skip
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
