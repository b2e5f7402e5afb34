"""Errors that vocable reports to users as one line (the CLI prints them and exits with code 2)."""


class VocableError(Exception):
    """Base class: a problem with the user's input, not a bug in vocable."""


class AudioError(VocableError):
    """Audio that cannot be read, is empty, or is not audio at all."""


class ConfigError(VocableError):
    """A malformed config file or option; the message names the file and field."""


class DataError(VocableError):
    """A malformed manifest, dataset folder or transcript."""


class ModelError(VocableError):
    """A model file that is missing, corrupt or of an unknown version."""


class AudioWarning(UserWarning):
    """Audio that can be read but not all of it (a file cut short): transcribed, and the user told."""


def run_script(main, *args) -> None:
    """Run a script's main() (benchmarks/, recipes/, scripts/) as the CLI runs its commands: bad input
    (a VocableError, a missing file) is one line on stderr and exit status 2, never a traceback."""
    import sys
    script = sys.argv[0].rsplit("/", 1)[-1]
    try:
        result = main(*args)
    except VocableError as e:
        message = str(e)
    except OSError as e:
        message = f"{e.filename or ''}: {e.strerror or e}"
    else:
        sys.exit(result if isinstance(result, int) else 0)
    print(f"{script}: error: {message}", file=sys.stderr)
    sys.exit(2)  # as the CLI and argparse: 2 for bad input
