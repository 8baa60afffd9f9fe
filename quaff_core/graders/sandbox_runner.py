"""The sandboxed side of a python grader: read the source and cases from stdin, block sockets and
new processes, run `grade(sample, item)` per case, and print one JSON list of results."""

import collections
import datetime
import difflib
import itertools
import json
import math
import os
import re
import socket
import statistics
import string
import sys
import traceback

# what graders commonly import, loaded before the runner may lose read access to the stdlib
PRELOADED = (collections, datetime, difflib, itertools, math, re, statistics, string)


def _refuse(*_args: object, **_kwargs: object) -> None:
    raise PermissionError("python graders may not open sockets or start processes")


def _lock_down(user: str) -> None:
    if user != "-":  # started as root: become `nobody` (no capabilities, process limit applies)
        os.setgroups([])
        os.setgid(int(user))
        os.setuid(int(user))
    socket.socket = _refuse  # type: ignore[assignment,misc]
    socket.create_connection = _refuse  # type: ignore[assignment]
    for name in ("fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            setattr(os, name, _refuse)


def main() -> None:
    """Grade every case; a raising case gets its traceback, the others still run."""
    request = json.loads(sys.stdin.read())
    _lock_down(sys.argv[1])
    scope: dict[str, object] = {"__name__": "grader"}
    results: list[dict[str, object]] = []
    try:
        exec(compile(request["source"], "<grader>", "exec"), scope)
        grade = scope["grade"]
    except BaseException:  # -- the user's module failed; report it per case
        error = traceback.format_exc(limit=5)[-2000:]
        sys.stdout.write(json.dumps([{"error": error, "kind": "runtime"}] * len(request["cases"])))
        return
    for case in request["cases"]:
        try:
            score = float(grade(case["sample"], case["item"]))  # type: ignore[operator]
            results.append({"score": score})
        except BaseException:  # -- one sample's failure is that sample's error
            results.append({"error": traceback.format_exc(limit=5)[-2000:], "kind": "runtime"})
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
