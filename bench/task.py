"""Generate the exact-match fine-tuning task used by the quality-parity benchmark.

The task: rewrite a date written in words ("Tuesday, the 14th of July 2023") as ISO 8601
("2023-07-14"). The answer is a single exact string, so greedy-decoded outputs are scored by
exact match. Generation is deterministic for a given seed; splits never share a date.

    python -m bench.task --out bench/out/task --train 2000 --validation 200 --test 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from collections.abc import Iterator
from pathlib import Path

SYSTEM = "Convert the date to ISO 8601 (YYYY-MM-DD). Answer with the date only."
MONTHS = tuple(dt.date(2000, m, 1).strftime("%B") for m in range(1, 13))
ORDINAL_SUFFIX = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}
START = dt.date(1950, 1, 1)
SPAN_DAYS = (dt.date(2049, 12, 31) - START).days


def ordinal(day: int) -> str:
    """1 -> '1st', 12 -> '12th', 22 -> '22nd'."""
    return f"{day}{ORDINAL_SUFFIX.get(day, 'th')}"


def phrase(date: dt.date, style: int) -> str:
    """The date in one of several English surface forms."""
    weekday = date.strftime("%A")
    month = MONTHS[date.month - 1]
    forms = (
        f"{weekday}, the {ordinal(date.day)} of {month} {date.year}",
        f"{month} {ordinal(date.day)}, {date.year}",
        f"the {ordinal(date.day)} of {month}, {date.year}",
        f"{date.day} {month} {date.year} ({weekday})",
        f"{weekday} {month} {date.day} {date.year}",
    )
    return forms[style % len(forms)]


def examples(n: int, rng: random.Random, used: set[dt.date]) -> Iterator[dict[str, object]]:
    """`n` chat examples on dates not in `used` (which is updated)."""
    made = 0
    while made < n:
        date = START + dt.timedelta(days=rng.randrange(SPAN_DAYS + 1))
        if date in used:
            continue
        used.add(date)
        made += 1
        yield {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": phrase(date, rng.randrange(5))},
                {"role": "assistant", "content": date.isoformat()},
            ]
        }


def write_splits(out: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, Path]:
    """Write `<split>.jsonl` files under `out`; returns split name -> path."""
    rng = random.Random(seed)
    used: set[dt.date] = set()
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in sizes.items():
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for example in examples(n, rng, used):
                fh.write(json.dumps(example) + "\n")
        paths[split] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/task"))
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--validation", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = {"train": args.train, "validation": args.validation, "test": args.test}
    for split, path in write_splits(args.out, sizes, args.seed).items():
        print(f"{split}: {sizes[split]} examples -> {path}")


if __name__ == "__main__":
    main()
