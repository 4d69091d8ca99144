"""Summarise a py-spy collapsed-stack profile written by ``bench/run.py --profile``.

    .venv/bin/python bench/profile_summary.py bench/results/profile-track-gateway-c50.txt [--top 25]

Prints, per thread, its share of the samples; then, for the busiest thread (the event loop), the
functions with the most samples on top of the stack (self) and anywhere on it (inclusive), and the
share of samples under a few markers (module paths) that locate the hot path's steps.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Each line: "thread;frame;frame;... count", a frame being "function (path:line)".
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")

MARKERS = {
    "ingestion.browser.collect": "ingestion/browser.py",
    "publisher (produce + wait)": "ingestion/publisher.py",
    "envelope": "ingestion/envelope.py",
    "identity (cookies)": "ingestion/identity.py",
    "keystore": "pipelines/keystore.py",
    "ninja operation": "ninja/operation.py",
    "django ASGIRequest / HttpResponse": "django/http/",
    "django.core.handlers.asgi": "django/core/handlers/asgi.py",
    "daphne": "daphne/",
    "twisted": "twisted/",
    "logging": "logging/__init__.py",
    "asyncio": "asyncio/",
}


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group("path")
    for prefix in ("site-packages/", "python3.11/", "/work/main/"):
        if prefix in path:
            path = path.split(prefix, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def _no_line(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def summarise(path: Path, top: int) -> None:
    threads: Counter[str] = Counter()
    stacks: list[tuple[str, list[str], int]] = []
    for raw in path.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        threads[thread] += int(count)
        stacks.append((thread, frames, int(count)))
    total = sum(threads.values())
    print(f"{path}: {total} samples")
    for thread, count in threads.most_common():
        print(f"  {count / total:6.1%}  {thread}")
    busiest = threads.most_common(1)[0][0]
    loop = [(frames, n) for thread, frames, n in stacks if thread == busiest]
    loop_total = sum(n for _, n in loop)
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    for frames, n in loop:
        if frames:
            self_time[_short(_no_line(frames[-1]))] += n
        for frame in {_short(_no_line(f)) for f in frames}:
            inclusive[frame] += n
        joined = ";".join(frames)
        for name, marker in MARKERS.items():
            if marker in joined:
                markers[name] += n
    print(f"\nbusiest thread: {busiest} ({loop_total} samples)")
    print(f"\ntop {top} self (on top of the stack):")
    for frame, n in self_time.most_common(top):
        print(f"  {n / loop_total:6.1%}  {frame}")
    print(f"\ntop {top} inclusive (anywhere on the stack):")
    for frame, n in inclusive.most_common(top):
        print(f"  {n / loop_total:6.1%}  {frame}")
    print("\nunder each marker (inclusive, overlapping):")
    for name, n in markers.most_common():
        print(f"  {n / loop_total:6.1%}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    summarise(args.profile, args.top)


if __name__ == "__main__":
    main()
