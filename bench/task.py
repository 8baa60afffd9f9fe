"""Generate the exact-match fine-tuning task used by the quality-parity benchmark.

The task: rewrite a date written in words ("Tuesday, the 14th of July 2023") as ISO 8601
("2023-07-14"). With `shift_max` > 0, half of the questions ask for a date a few days later
("5 days after July 14th, 2023" -> "2023-07-19"), which needs day arithmetic across month ends:
the validation loss then has a floor well above zero instead of collapsing after a few steps.
The answer is a single exact string, so greedy-decoded outputs are scored by exact match.
With `worked`, the answer instead walks through the conversion step by step (about 150 tokens)
and ends with the date: the long-answer variant of the whole-job benchmark (bench/job.py).
Generation is deterministic for a given seed; splits never share an answer date.

    python -m bench.task --out bench/out/task --train 2000 --validation 200 --test 200 --shift-max 9
    python -m bench.task --out bench/out/task_worked --train 200 --worked
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from collections.abc import Iterator
from pathlib import Path

SYSTEM = "Convert the date to ISO 8601 (YYYY-MM-DD). Answer with the date only."
SHIFT_SYSTEM = "Give the date described in ISO 8601 (YYYY-MM-DD). Answer with the date only."
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


def question(date: dt.date, style: int, shift: int) -> str:
    """The user turn: the date in words, or `shift` days after it."""
    if shift <= 0:
        return phrase(date, style)
    unit = "day" if shift == 1 else "days"
    return f"{shift} {unit} after {phrase(date, style)}"


def worked_answer(date: dt.date, shift: int, answer: dt.date) -> str:
    """A step-by-step answer (about 150 tokens) that ends with the ISO date of `answer`."""
    month = MONTHS[date.month - 1]
    steps = [
        f"Let me work through this one part at a time. The question names {date.strftime('%A')}, "
        "which is the day of the week; ISO 8601 does not write the weekday, so I leave it out.",
        f"The day of the month is the {ordinal(date.day)}. ISO 8601 writes the day with two "
        f"digits, so it becomes {date.day:02d}.",
        f"The month is {month}, month number {date.month} of the twelve, written with two "
        f"digits as {date.month:02d}.",
        f"The year is {date.year}, written with all four digits.",
    ]
    if shift > 0:
        steps.append(
            f"The question asks for the date {shift} {'day' if shift == 1 else 'days'} later: "
            f"counting forward from {date.isoformat()}, and carrying into the next month if "
            f"{month} ends on the way, gives {answer.isoformat()}."
        )
    steps.append(f"Putting the year, the month and the day together: {answer.isoformat()}")
    return " ".join(steps)


def examples(
    n: int, rng: random.Random, used: set[dt.date], shift_max: int = 0, worked: bool = False
) -> Iterator[dict[str, object]]:
    """`n` chat examples whose answer dates are not in `used` (which is updated).

    With `shift_max` > 0, each question asks for the date 1..shift_max days later with
    probability 1/2. With `worked`, answers are step-by-step (`worked_answer`).
    """
    made = 0
    while made < n:
        date = START + dt.timedelta(days=rng.randrange(SPAN_DAYS + 1))
        style = rng.randrange(5)
        shift = rng.randint(1, shift_max) if shift_max > 0 and rng.random() < 0.5 else 0
        answer = date + dt.timedelta(days=shift)
        if answer in used:
            continue
        used.add(answer)
        made += 1
        yield {
            "messages": [
                {"role": "system", "content": SHIFT_SYSTEM if shift_max > 0 else SYSTEM},
                {"role": "user", "content": question(date, style, shift)},
                {
                    "role": "assistant",
                    "content": worked_answer(date, shift, answer) if worked else answer.isoformat(),
                },
            ]
        }


def write_splits(
    out: Path, sizes: dict[str, int], seed: int = 0, shift_max: int = 0, worked: bool = False
) -> dict[str, Path]:
    """Write `<split>.jsonl` files under `out`; returns split name -> path."""
    if shift_max < 0:
        raise ValueError(f"shift_max must be >= 0, got {shift_max}")
    rng = random.Random(seed)
    used: set[dt.date] = set()
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in sizes.items():
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for example in examples(n, rng, used, shift_max, worked):
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
    parser.add_argument("--shift-max", type=int, default=0, help="0 = plain conversion only")
    parser.add_argument("--worked", action="store_true", help="step-by-step answers (~150 tokens)")
    args = parser.parse_args()
    sizes = {"train": args.train, "validation": args.validation, "test": args.test}
    for split, path in write_splits(
        args.out, sizes, args.seed, args.shift_max, args.worked
    ).items():
        print(f"{split}: {sizes[split]} examples -> {path}")


if __name__ == "__main__":
    main()
