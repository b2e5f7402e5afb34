"""Errors that vocable reports to users as one line (the CLI prints them and exits with code 2)."""

import contextlib
import contextvars


class VocableError(Exception):
    """Base class: a problem with the user's input, not a bug in vocable."""


class AudioError(VocableError):
    """Audio that cannot be read, is empty, or is not audio at all."""


class EmptyAudio(AudioError):
    """A file of 0 bytes, or audio of no samples (or less than one at the rate asked for)."""


class UnreadableAudio(AudioError):
    """Bytes libsndfile cannot decode: not audio, or a format it lacks (video, AAC/M4A)."""


class ConfigError(VocableError):
    """A malformed config file or option; the message names the file and field."""


class DataError(VocableError):
    """A malformed manifest, dataset folder or transcript."""


class ModelError(VocableError):
    """A model file that is missing, corrupt or of an unknown version."""


def file_problem(path, kind: str = "file") -> str:
    """Why `path` cannot be read as a `kind` ("audio file", "model file"): "no such ...", "a directory, not a
    ...", "permission denied"; "" when it can be opened."""
    import os
    if not os.fspath(path):  # Path("") would be "." and read as the current folder
        return f"an empty name, not a{'n' * (kind[0] in 'aeiou')} {kind}"
    if os.path.isdir(path):
        return f"a directory, not a{'n' * (kind[0] in 'aeiou')} {kind}"
    if not os.path.exists(path):
        return f"no such {kind}"
    if not os.path.isfile(path):  # /dev/null, a pipe (<(cat x.flac)), a socket: "no such file" misled
        return (f"not a regular file (a device or a pipe) and not readable as a{'n' * (kind[0] in 'aeiou')} "
                f"{kind} from there; write it to a file first")
    try:
        with open(path, "rb"):
            return ""
    except OSError as e:  # a decoder's own message for this is "System error." or a bare exception name
        return (e.strerror or str(e)).lower()


class VocableWarning(UserWarning):
    """Something vocable can go on with but the user should know; the CLI prints it as one line."""


class AudioWarning(VocableWarning):
    """Audio that can be read but not all of it (a file cut short): transcribed, and the user told."""


_COLLECTED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("vocable_warnings", default=None)


@contextlib.contextmanager
def collected_warnings():
    """The messages vocable warns with inside this block, in this thread or task only (warned as well):
    how a server thread hands them to its client. warnings.catch_warnings would do it process-wide,
    mixing the warnings of requests served at the same time."""
    notes: list[str] = []
    token = _COLLECTED.set(notes)
    try:
        yield notes
    finally:
        _COLLECTED.reset(token)


_HELD: contextvars.ContextVar[list[tuple[str, type[Warning]]] | None] = contextvars.ContextVar(
    "vocable_held_warnings", default=None)


@contextlib.contextmanager
def held_warnings():
    """The warnings vocable raises inside this block, held back as (message, category) instead of warned:
    what a cached object (a Decoder) says when it is built, for warn() to say again to every caller that
    uses it, not only to the first."""
    held: list[tuple[str, type[Warning]]] = []
    token = _HELD.set(held)
    try:
        yield held
    finally:
        _HELD.reset(token)


def warn(message: str, category: type[Warning] = VocableWarning) -> None:
    """warnings.warn pointing at the first caller outside vocable (the user's line), however deep the
    call came from, so a warnings filter or a traceback of it shows the user's code."""
    import os
    import sys
    import warnings
    held = _HELD.get()
    if held is not None:
        held.append((message, category))
        return
    notes = _COLLECTED.get()
    if notes is not None:
        notes.append(message)
    package, level, frame = os.path.dirname(os.path.abspath(__file__)), 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


NEEDS_TORCH = ("needs PyTorch, which is not installed: pip install 'vocable[torch]' (an exported .onnx model "
               "transcribes without it: --model MODEL.onnx)")
NEEDS_ONNXRUNTIME = "needs onnxruntime, which is not installed: pip install 'vocable[runtime]'"
EXIT_USAGE = 2  # bad input, as argparse exits for a bad option
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program killed by it


def run_reporting_errors(program: str, main, *args) -> int:
    """main(*args)'s exit status, with a user's mistake (a VocableError, a file that cannot be opened, text
    that is not UTF-8) as one line `program: error: ...` on stderr and EXIT_USAGE, never a traceback."""
    import os
    import sys
    try:
        result = main(*args)
        return result if isinstance(result, int) else 0
    except VocableError as e:
        message = str(e)
    except ModuleNotFoundError as e:
        needs = {"torch": NEEDS_TORCH, "onnxruntime": NEEDS_ONNXRUNTIME}.get((e.name or "").split(".")[0])
        if needs is None:
            raise
        message = "this " + needs
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader stopped early (`... | head`): quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return EXIT_BROKEN_PIPE
    except OSError as e:  # a file the command could not open or write, where no check named it first
        message = f"{e.filename or 'a file'}: {e.strerror or e}"
    except UnicodeDecodeError as e:
        message = f"a text input is not UTF-8 ({e.reason} at byte {e.start})"
    print(f"{program}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_script(main, *args) -> None:
    """Run a script's main() (benchmarks/, recipes/, scripts/) as the CLI runs its commands and exit."""
    import sys
    sys.exit(run_reporting_errors(sys.argv[0].rsplit("/", 1)[-1], main, *args))
