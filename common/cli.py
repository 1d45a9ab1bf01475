"""The flags every train.py shares, argparse types, and one-line usage errors (exit code 2)."""
import argparse
import os
import signal
import sys
import traceback

from common import distributed
from common.errors import UsageError
from common.runs import abandon_active_runs


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def lab_parser(lab: str, description: str) -> ArgumentParser:
    """A parser that already holds the shared flags of CONTRIBUTING.md."""
    parser = ArgumentParser(prog=f"{lab}/train.py", description=description)
    parser.add_argument("--seed", type=seed, default=0, help="seed for torch, numpy and random, 0 <= S < 2**63 (0)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                        help="auto: CUDA when available, then MPS, else CPU")
    parser.add_argument("--out", type=folder, help=f"run folder (default runs/{lab}/<timestamp>)")
    parser.add_argument("--data-root", default=os.environ.get("LABS_DATA_ROOT", "data"),
                        help="dataset root (default $LABS_DATA_ROOT, else ./data)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def add_patience(parser: argparse.ArgumentParser, default: int | None, metric: str, unit: str = "epochs",
                 wait_alias: bool = False) -> None:
    """--patience P, the same rule in every lab (the report's `wait`): stop once the best `metric` has not
    improved for P+1 consecutive epochs. wait_alias also accepts --wait, the report's own name."""
    names = ["--patience", "--wait"] if wait_alias else ["--patience"]
    parser.add_argument(*names, dest="patience", type=non_negative_int, default=default, metavar="P",
                        help=f"stop once the best {metric} has not improved for P+1 consecutive {unit} "
                             f"({'off' if default is None else default})")


def add_schedule_flags(parser: argparse.ArgumentParser, default: str | None = "none",
                       warmup: float | None = 0.0, kinds=None) -> None:
    """--lr-schedule and --warmup (common.schedules). A default of None lets the lab choose after parsing."""
    from common.schedules import KINDS
    kinds = [k for k in KINDS if k != "exponential"] if kinds is None else kinds
    parser.add_argument("--lr-schedule", choices=kinds, default=default,
                        help=f"learning rate over training: {', '.join(kinds)} (common/schedules.py; "
                             f"{default or 'see below'})")
    parser.add_argument("--warmup", type=probability, default=warmup,
                        help=f"share of the training steps with a linear warmup of the rate "
                             f"({'see below' if warmup is None else warmup})")


def add_label_smoothing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-smoothing", type=probability, default=0.0,
                        help="training targets (1-e) one-hot + e/classes (torch's cross_entropy; the "
                             "validation and test losses stay plain) (0)")


def add_ema(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ema", type=probability, default=0.0, metavar="DECAY",
                        help="evaluate, select and save an exponential moving average of the weights, "
                             "updated after every step with this decay, e.g. 0.999 (common/ema.py; 0 = off)")


def add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=["auto", "bf16", "float32"], default="auto",
                        help="bf16: bfloat16 autocast (on a CPU too, where recent ones run it faster); float32: "
                             "none; auto: bf16 on CUDA, else float32 (common.device.autocast) (auto)")


def _number(cast, text, ok, what):
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def seed(text: str) -> int:
    return _number(int, text, lambda v: 0 <= v < 2**63, "an integer in [0, 2**63)")


def folder(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty string")
    return text


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


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends a run like Ctrl-C: one line, the folder left unfinished


_terminate.raises_keyboard_interrupt = True  # a checkpointing Run may defer it to the end of an epoch


def add_checkpointing(parser: argparse.ArgumentParser, every: int) -> None:
    """--resume and --checkpoint-every: last.pt every N epochs and on Ctrl-C/SIGTERM (common.runs.Run)."""
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --out from its last.pt (same flags)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=every, metavar="N",
                        help=f"write last.pt every N epochs, and on Ctrl-C or SIGTERM ({every})")


def run(main) -> None:
    """Call a lab's (or a tool's) main() and turn every way it can end badly into one line on stderr:
    bad input (UsageError) exit 2; Ctrl-C or SIGTERM exit 130, the run's folder left unfinished (a message the
    interrupted code gave the KeyboardInterrupt is added to the line); anything else exit 1 (the traceback too
    when LABS_DEBUG=1)."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
        distributed.shutdown()
    except UsageError as error:
        abandon_active_runs()
        if distributed.is_main():  # every DDP process parses the same flags: one line, not one per process
            print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not turn the cleanup into a traceback
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        notes = abandon_active_runs() + ([str(interrupt)] if str(interrupt) else [])  # e.g. a download's .part
        print("interrupted" + "".join(f": {note}" for note in notes), file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # anything unexpected: one line, the traceback only when asked for
        abandon_active_runs()
        if os.environ.get("LABS_DEBUG") == "1":
            traceback.print_exc()
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"error: {type(error).__name__}: {first} (LABS_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)
