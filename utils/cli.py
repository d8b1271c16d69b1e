"""What the command-line tools share: user errors become one line (not a traceback), argument types."""
import argparse
import sys

from net.errors import AFFError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def run_main(main, *args, **kwargs):
    """Call `main(*args, **kwargs)` and exit with its return value (None → 0).

    An `AFFError` (bad input the user can fix) prints `error: <message>` on stderr and exits 2;
    Ctrl-C prints `interrupted` and exits 130. `SystemExit` (argparse's usage errors, --help) passes
    through untouched. Any other exception is a bug and keeps its traceback.
    """
    try:
        rc = main(*args, **kwargs)
    except AFFError as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    raise SystemExit(rc or 0)


def positive_int(text):
    """argparse type: an integer >= 1 (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def not_implemented(script, doc, issue):
    """Entry point of a training script that does not exist yet: --help works, anything else
    prints one line saying so and returns 2 (never pretends to train)."""
    parser = argparse.ArgumentParser(prog=script, description=doc.split("\n")[0])
    parser.parse_known_args()
    print(f"{script}: not implemented yet (tracked in the {issue} issue); "
          "build models with net.get_model(...) meanwhile", file=sys.stderr)
    return EXIT_USAGE
