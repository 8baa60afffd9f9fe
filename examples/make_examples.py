"""Write examples/chat.jsonl and examples/chat_valid.jsonl: a small deterministic chat dataset."""

from __future__ import annotations

import json
from pathlib import Path

SYSTEM = "You convert dates to ISO 8601 (YYYY-MM-DD). Answer with the date only."
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def example(i: int) -> dict[str, object]:
    """The i-th example: a spelled-out date and its ISO form."""
    year, month, day = 1990 + (i * 7) % 35, (i * 5) % 12 + 1, (i * 11) % 28 + 1
    question = f"Convert: {MONTHS[month - 1]} {day}, {year}"
    answer = f"{year:04d}-{month:02d}-{day:02d}"
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def main() -> None:
    """Write 40 training and 8 validation examples next to this script."""
    here = Path(__file__).parent
    for name, indices in (("chat.jsonl", range(40)), ("chat_valid.jsonl", range(40, 48))):
        lines = [json.dumps(example(i)) for i in indices]
        (here / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
