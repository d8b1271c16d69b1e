"""What the command-line tools share: user errors become one line (not a traceback), argument types."""
import argparse
import math
import sys

from net.errors import AFFError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def run_main(main, *args, **kwargs):
    """Call `main(*args, **kwargs)` and exit with its return value (None → 0).

    An `AFFError` (bad input the user can fix) prints `error: <message>` on stderr and exits 2
    (or the error's own `exit_code`: 3 for a diverged run);
    Ctrl-C prints `interrupted` and exits 130. `SystemExit` (argparse's usage errors, --help) passes
    through untouched. MXNet's error when another Horovod rank stopped is one line too (exit 1). Any
    other exception is a bug and keeps its traceback.
    """
    try:
        rc = main(*args, **kwargs)
    except AFFError as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        _exit(getattr(e, "exit_code", EXIT_USAGE))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        _exit(EXIT_INTERRUPTED)
    except Exception as e:  # noqa: BLE001  (only Horovod's shutdown is ours to word; the rest re-raised)
        if HOROVOD_STOPPED not in str(e):
            raise
        print("error: another Horovod rank stopped (its own output says why), so this one stops too; "
              "the checkpoints written so far are intact: resume the job as docs/distributed.md shows",
              file=sys.stderr)
        _exit(EXIT_PEER_STOPPED)
    raise SystemExit(rc or 0)


#: MXNet's message when Horovod's background loop ended (a rank died or left)
HOROVOD_STOPPED = "Horovod has been shut down"
EXIT_PEER_STOPPED = 1


def _exit(code):
    """Exit with ``code``; once Horovod runs, without the interpreter's atexit hooks: MXNet's
    shutdown hook would print a traceback of Horovod's closed loop after our one line."""
    hvd = sys.modules.get("horovod.mxnet")
    if hvd is not None and getattr(hvd, "is_initialized", lambda: False)():
        import os
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code) from None


def positive_int(text):
    """argparse type: an integer >= 1 (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line (the option and what is wrong,
    then where the options are listed) instead of the usage block, with exit status 2."""

    def error(self, message):
        print(f"error: {message} ({self.prog} --help lists the options)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _number(text, kind):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _at_least(kind, low, strict, what):
    """argparse type: a ``kind`` number above ``low`` (``strict``) or at least ``low``."""
    def check(text):
        value = _number(text, kind)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    check.__name__ = what
    return check


#: argparse types: epochs, counts, indices (>= 0); learning rates, mixup's alpha, decay factors
#: (finite, > 0); momentum, weight decay (finite, >= 0)
nonneg_int = _at_least(int, 0, False, "an integer >= 0")
positive_float = _at_least(float, 0, True, "a finite number above 0")
nonneg_float = _at_least(float, 0, False, "a finite number >= 0")


def seed_int(text):
    """argparse type: a random seed NumPy accepts (0 .. 2**32 - 1)."""
    value = _number(text, int)
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to 4294967295, got {text!r}")
    return value


def epoch_list(text):
    """argparse type: comma-separated epochs (``'300,450'``); kept as the text, as the official
    scripts log it.  :func:`epochs_of` gives the numbers."""
    epochs_of(text)
    return text


def epochs_of(text):
    try:
        epochs = [int(e) for e in str(text).split(",") if e.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated epochs such as 30,60, got {text!r}") from None
    if any(e < 0 for e in epochs) or epochs != sorted(epochs):
        raise argparse.ArgumentTypeError(f"expected increasing epochs >= 0, got {text!r}")
    return epochs


def check_askc_type(askc_type, model):
    """The official scripts' ``--askc-type`` default ``xxx`` names no fusion: one line saying
    which to give (instead of the list of every name)."""
    if askc_type == 'xxx':
        from net.errors import AFFError
        raise AFFError(f"--model {model} needs --askc-type (the official default 'xxx' names no "
                       "fusion): e.g. ASKCFuse (AFF), ResGlobLocaforGlobLocaChaFuse (iAFF) or "
                       "DirectAdd (no fusion); python -m utils.models --fusions lists them all")
