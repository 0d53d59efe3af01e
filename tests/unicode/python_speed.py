#!/usr/bin/env python3
"""Times Python's definition of `--transform unicode` on the bytes that
`cargo bench --bench unicode` times ("mixed-script text"): tests/unicode/mixed.txt
repeated and cut to at most 64 KiB at a character boundary. Also times it on
ASCII-only text of the same size, for reference.

Usage: python3 tests/unicode/python_speed.py
Prints GB/s (10^9 bytes of input per second), best of several runs.
"""

import pathlib
import random
import sys
import timeit

CHUNK = 64 * 1024


def mixed_text() -> bytes:
    sample = (pathlib.Path(__file__).parent / "mixed.txt").read_bytes()
    text = sample * -(-CHUNK // len(sample))
    end = CHUNK
    while (text[end] & 0xC0) == 0x80:  # not a character boundary
        end -= 1
    return text[:end]


def upper(b: bytes) -> bytes:
    return b.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


def gb_per_s(data: bytes) -> float:
    timer = timeit.Timer(lambda: upper(data))
    number, _ = timer.autorange()
    best = min(timer.repeat(repeat=7, number=number)) / number
    return len(data) / best / 1e9


def main() -> None:
    mixed = mixed_text()
    rng = random.Random(CHUNK)
    ascii_only = bytes(rng.randint(0x20, 0x7E) for _ in range(CHUNK))
    print(f"python {sys.version.split()[0]}")
    print(f"mixed-script text ({len(mixed)} bytes): {gb_per_s(mixed):.3f} GB/s")
    print(f"ascii-only text ({len(ascii_only)} bytes): {gb_per_s(ascii_only):.3f} GB/s")


if __name__ == "__main__":
    main()
