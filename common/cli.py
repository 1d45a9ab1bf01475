"""The flags every train.py shares, argparse types, and one-line usage errors (exit code 2)."""
import argparse
import os
import sys


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2, no traceback."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def lab_parser(lab: str, description: str) -> ArgumentParser:
    """A parser that already holds the shared flags of DESIGN.md."""
    parser = ArgumentParser(prog=f"{lab}/train.py", description=description)
    parser.add_argument("--seed", type=int, default=0, help="seed for torch, numpy and random (default 0)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                        help="auto: CUDA when available, then MPS, else CPU")
    parser.add_argument("--out", help=f"run folder (default runs/{lab}/<timestamp>)")
    parser.add_argument("--data-root", default=os.environ.get("LABS_DATA_ROOT", "data"),
                        help="dataset root (default $LABS_DATA_ROOT, else ./data)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _number(cast, text, ok, what):
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: 0 < v < float("inf"), "a positive number")


def non_negative_float(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < float("inf"), "a number >= 0")


def probability(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def rate(text: str) -> float:
    return _number(float, text, lambda v: 0 < v <= 1, "a number in (0, 1]")


def run(main) -> None:
    """Call a lab's main(); turn a UsageError into one line on stderr and exit code 2."""
    try:
        main()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
