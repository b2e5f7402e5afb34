"""The `vocable` command line. Each subcommand is a small function; errors become one line + exit 2."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import select
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path

from . import __version__
from .errors import (EXIT_USAGE, NEEDS_TORCH, AudioWarning, ConfigError, DataError, UnreadableAudio, VocableError,
                     VocableWarning, run_reporting_errors)
from .files import (check_not_an_input, check_writable_file, check_writable_folder, dataset_files, looks_like_text,
                    write_problem)

MAX_LISTED_ERRORS = 10  # per-file errors printed before "... and N more"
MIN_SPEED = 0.01  # listen --speed: slower than 1/100 of real time is a hang, not a test
MAX_BOOTSTRAP = 10_000  # evaluate --bootstrap: more change the intervals by nothing, and take memory
STDIN = "-"  # FILE that means standard input (formats.output_path names its result "stdin.<format>")
STDIN_BLOCK = 1 << 20  # bytes copied from standard input at a time
SIGNAL_POLL_SECONDS = 0.2  # longest wait for standard input before pending signals are handled


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed: its exit code
        return stop.code
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_USAGE
    with warnings.catch_warnings():  # restored on return: main() may run inside another program
        warnings.simplefilter("always", AudioWarning)  # each file cut short is named, not just the first
        warnings.showwarning = show_warning
        return run_command(args)


def run_command(args) -> int:
    """Run the chosen subcommand; a user's mistake becomes one line on stderr and exit code 2."""
    return run_reporting_errors("vocable", args.func, args)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """vocable's own warnings as one line, like its errors; other libraries' as Python prints them."""
    if issubclass(category, VocableWarning):
        print(f"vocable: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other vocable error (argparse prints the
    whole usage block first, eight lines for `transcribe`, burying the one that matters)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"vocable: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vocable", description="Offline speech recognition.")
    parser.add_argument("--version", action="version", version=f"vocable {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_transcribe(commands)
    add_train(commands)
    add_evaluate(commands)
    add_models(commands)
    add_data(commands)
    add_listen(commands)
    add_serve(commands)
    add_export(commands)
    add_lm(commands)
    add_align(commands)
    return parser


def add_transcribe(commands) -> None:
    p = commands.add_parser("transcribe", help="transcribe audio files")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files; - reads one from standard input")
    p.add_argument("--model", default="default", help="bundled model name or model file (default: %(default)s)")
    p.add_argument("--format", default="txt", choices=["txt", "json", "srt", "vtt", "tsv"], help="output format")
    p.add_argument("--output-dir", metavar="DIR", help="write DIR/<file>.<format> instead of printing")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = the engine's default: all cores)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N",
                   help="run the model on N files at a time (zero-padded batch; default: %(default)s)")
    add_decoding_arguments(p)
    p.add_argument("--alternatives", type=int, metavar="N", help="with --format json: up to N other transcripts "
                   "of each segment from the beam search, best first, with their scores (on several frame grids "
                   "they compete with each grid's best, so the first transcript can differ from the one without)")
    p.set_defaults(func=cmd_transcribe)


def cmd_transcribe(args) -> int:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected 1 or more, got {args.batch_size}")
    if args.output_dir == "":  # else it would mean "print", as if not given
        raise ConfigError("--output-dir: an empty path; give a folder")
    if args.output_dir:
        check_output_names(args.files, args.format, args.output_dir)
    elif args.format in ("srt", "vtt", "tsv") and len(args.files) > 1:  # no file column: one file per input
        raise ConfigError(f"--format {args.format} with {len(args.files)} files: give --output-dir to write one "
                          f"file for each (on standard output they would run together)")
    if args.alternatives and args.format != "json":
        warnings.warn(f"--alternatives: shown with --format json only, not {args.format}", VocableWarning)
    options = decoding_options(args)
    # before the model loads: a terminal or a second "-" is refused now
    with spooled_stdin(args.files) as stdin:
        return transcribe_files(args, options, stdin)


def transcribe_files(args, options, stdin: str | None) -> int:
    """Transcribe args.files ("-": the file `stdin` holds standard input in), a batch at a time; a file that
    fails is reported on stderr and the others go on. Returns the exit status."""
    from dataclasses import replace

    from .audio import audio_info, load_audio
    from .transcribe import check_one_pass, load, split_at_pauses
    recognizer = load(args.model, threads=args.threads)  # a .onnx model runs on onnxruntime, without torch
    split = replace(options, vad=True)  # for files this loop found long: transcribe need not read the header again
    failed, size, batch = 0, args.batch_size, []  # cmd_transcribe refused a size below 1
    progress = files_progress(args)

    def report(error: VocableError) -> None:  # keep going: one bad file must not lose the others' results
        nonlocal failed
        progress.write(file_error(error), file=sys.stderr)  # below the bar
        failed += 1

    def flush() -> None:
        """Decode the short files waiting, as one batch, and print them (in the order they were given). A
        failure of the decoding itself (an unreadable LM) is not one file's: it stops the command."""
        pending = list(batch)
        batch.clear()
        results = recognizer.transcribe_batch([a for _, a in pending], batch_size=size, options=options) if pending else []
        for (path, _), result in zip(pending, results):
            try:
                print_result(args, path, result)
            except VocableError as e:
                report(e)
            progress.update(1)

    for path in args.files:
        source, label = (stdin, "standard input") if path == STDIN else (path, path)
        try:
            # the header is read only where it decides: the VAD path (auto) and its progress bar
            seconds = audio_info(source, label)[0] if options.vad is not False and os.path.isfile(source) else 0.0
            streamed = split_at_pauses(options.vad, seconds)
            if not streamed:
                audio = load_audio(source, name=label)
                check_one_pass(audio, label)
        except VocableError as e:
            report(e)
            progress.update(1)
            continue
        if not streamed:
            batch.append((path, audio))
            if len(batch) == size:
                flush()
            continue
        flush()  # the short files before it are printed first
        try:
            with audio_progress(label, seconds) as done:
                print_result(args, path, recognizer.transcribe(source, options=split, name=label, progress=done))
        except VocableError as e:
            report(e)
        progress.update(1)
    flush()
    progress.close()
    return EXIT_USAGE if failed else 0


def file_error(error: VocableError) -> str:
    """One file's error line; for a format libsndfile lacks, how to get it read anyway."""
    hint = "; for video or AAC/M4A: ffmpeg -i IN -f wav - | vocable transcribe -" \
        if isinstance(error, UnreadableAudio) else ""
    return f"vocable: error: {error}{hint}"


@contextlib.contextmanager
def audio_progress(path: str, seconds: float):
    """A bar over one long file's audio seconds on a terminal's stderr (none when piped or under a
    minute); yields the callback that Recognizer.transcribe's `progress` calls with the seconds done."""
    from tqdm import tqdm
    bar = tqdm(total=round(seconds), unit="s", desc=os.path.basename(path), leave=False, mininterval=0,
               disable=None if seconds >= 60 else True)  # drawn at every update: one per minute of speech
    try:
        yield lambda done: bar.update(min(round(done), bar.total) - bar.n)
    finally:
        bar.close()


def files_progress(args):
    """A progress bar over the files on a terminal's stderr, when results go to --output-dir (on standard
    output, the results themselves show the progress)."""
    from tqdm import tqdm
    wanted = bool(args.output_dir) and len(args.files) > 1
    return tqdm(total=len(args.files), unit="file", desc="transcribing", disable=None if wanted else True)


@contextlib.contextmanager
def spooled_stdin(files: list[str]):
    """When FILE is "-" (`ffmpeg -i talk.mp4 -f wav - | vocable transcribe -`), the audio file piped in,
    copied to a temporary file: read from there block by block like any file, hours of it are not held in
    memory. Yields its path (None without "-"); the file is removed at the end."""
    if STDIN not in files:
        yield None
        return
    if files.count(STDIN) > 1:
        raise ConfigError("FILE: '-' (standard input) given more than once")
    if sys.stdin is None or sys.stdin.isatty():
        raise ConfigError("FILE '-': standard input is a terminal; pipe an audio file into it "
                          "(e.g. ffmpeg -i in.mp4 -f wav - | vocable transcribe -)")
    with terminated_as_exit(), tempfile.TemporaryDirectory(prefix="vocable-stdin-") as folder:
        path = os.path.join(folder, "stdin")
        try:
            with open(path, "wb") as spool:
                copy_stdin(sys.stdin.buffer, spool)
        except OSError as e:  # a full disk: say where, rather than lose the audio silently
            raise ConfigError(f"FILE '-': could not keep standard input in {folder} ({e.strerror or e}); "
                              f"set TMPDIR to a folder with room") from None
        if os.path.getsize(path) == 0:
            raise ConfigError("FILE '-': nothing was piped into standard input")
        yield path


def copy_stdin(source, spool) -> None:
    """`source` (standard input, binary) into `spool`, STDIN_BLOCK at a time. Where it has a file descriptor,
    the wait for data is a select() with a timeout: the kernel may hand a SIGTERM to another thread (numpy's
    BLAS threads), and a plain read() then stayed blocked, the handler unrun, until more data came (a test
    hung 1 time in 4 on a busy machine)."""
    try:
        fd = source.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        fd = None
    while True:
        if fd is not None:
            while not select.select([fd], [], [], SIGNAL_POLL_SECONDS)[0]:
                pass  # Python runs a pending signal's handler here, whichever thread the kernel chose
        block = os.read(fd, STDIN_BLOCK) if fd is not None else source.read(STDIN_BLOCK)
        if not block:
            return
        spool.write(block)


@contextlib.contextmanager
def terminated_as_exit():
    """Within the block, SIGTERM (`kill`, a container stopping) raises SystemExit(143), so the `with` blocks
    inside it still clean up (Python's default ends the process on the spot: a spooled hour of standard
    input would stay in the temporary folder). Only in the main thread; the handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_output_names(files: list[str], fmt: str, output_dir: str) -> None:
    """Before any work: --output-dir must be a folder (or not exist yet), and no two inputs may write the
    same DIR/<stem>.<format> (the second would overwrite the first's result)."""
    from .formats import output_path
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f"--output-dir {output_dir}: exists and is not a folder")
    writers: dict[str, str] = {}
    for path in files:
        name = output_path(output_dir, path, fmt).name
        if name in writers and writers[name] != path:
            raise ConfigError(f"--output-dir: {writers[name]} and {path} would both write {name}; "
                              f"transcribe them in separate runs or rename one")
        writers[name] = path
    try:  # made now: a folder that cannot be made or written in would lose every result after the work
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--output-dir {output_dir}: cannot write in it ({(e.strerror or str(e)).lower()})") from None
    problem = write_problem(output_dir)
    if problem:
        raise ConfigError(f"--output-dir {output_dir}: cannot write in it ({problem})")


def print_result(args, path: str, result) -> None:
    from .formats import format_result, write_result
    if getattr(args, "output_dir", None):
        try:
            write_result(result, args.format, args.output_dir, path)
        except OSError as e:
            raise VocableError(f"{e.filename or args.output_dir}: cannot write {path}'s result "
                               f"({e.strerror or e})") from None
    elif args.format == "txt":
        print(result.text if len(args.files) == 1 else f"{path}\t{result.text}")
    else:
        print(format_result(result, args.format, path), end="")


def add_decoding_arguments(p, files: bool = True) -> None:
    """Decoding options; `files` adds --vad (splitting files at pauses), which a live stream, cut into
    utterances by its own VAD, has no use for."""
    g = p.add_argument_group("decoding")
    g.add_argument("--beam-size", type=int, metavar="N", help="beam search with N beams (default: the model's "
                   "tuned beam, en-default 32; else greedy, or 8 with an LM or hotwords, 16 with phrases)")
    g.add_argument("--lm", metavar="LM", help="ARPA file, bundled LM name, or 'none' (default: the model's LM)")
    g.add_argument("--lm-weight", type=float, metavar="W",
                   help="LM weight (default: the value tuned with the model's LM, else 0.5)")
    g.add_argument("--word-bonus", type=float, metavar="B",
                   help="score added per word with an LM (default: tuned with the model's LM, else 1.0)")
    g.add_argument("--blank-penalty", type=float, metavar="P",
                   help="score taken from the blank per frame with an LM (default: tuned with the model's LM, else 0)")
    g.add_argument("--hotwords", metavar="LIST", help='boosted words/phrases: "word:boost,phrase" '
                   "(boost in log-score per character, default 2)")
    g.add_argument("--prompt", metavar="TEXT", help="text naming the words to expect (names, terms): those "
                   "the LM lacks are boosted as hotwords")
    g.add_argument("--phrases", metavar="FILE", help="restrict output to one phrase per line of FILE "
                   "(a command grammar); unmatched audio gives empty text")
    g.add_argument("--min-phrase-confidence", type=float, metavar="C", help="with --phrases, reject a best "
                   "phrase whose confidence is below C, 0..1 (default: the model's calibrated value, else 0.4)")
    g.add_argument("--shifts", type=int, metavar="N", help="decode each utterance on N frame grids, each "
                   "moved by 1/N of a 40 ms frame, keeping the transcript that fits them all best; N times "
                   "the work (default: the model's, en-default 2; 1 = once; live: finals only)")
    if files:
        g.add_argument("--vad", choices=["auto", "on", "off"], default="auto",
                       help="split at pauses with a voice-activity detector (auto: audio over 8 s)")


def decoding_options(args):
    from .decoding import DecodingOptions
    for flag, value, what in (("--phrases", args.phrases, "a phrases file"),
                              ("--lm", args.lm, "an LM file, a bundled LM name or 'none'")):
        if value is not None and not value.strip():  # an unset shell variable: it used to turn the option off
            raise ConfigError(f"{flag}: an empty name; give {what}")
    phrases = None
    if args.phrases:
        try:
            lines = Path(args.phrases).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ConfigError(f"--phrases {args.phrases}: cannot read ({e.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--phrases {args.phrases}: not UTF-8 text") from None
        phrases = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not phrases:
            raise ConfigError(f"--phrases {args.phrases}: no phrases in the file")
    given = {"beam_size": args.beam_size, "lm": args.lm, "lm_weight": args.lm_weight, "word_bonus": args.word_bonus,
             "blank_penalty": args.blank_penalty, "min_phrase_confidence": args.min_phrase_confidence,
             "shifts": getattr(args, "shifts", None), "alternatives": getattr(args, "alternatives", None),
             "prompt": args.prompt}
    with options_named_as_flags({**{name: "--" + name.replace("_", "-") for name in given}, "hotwords": "--hotwords",
                                 "phrases": "--phrases"}):
        options = DecodingOptions(**{k: v for k, v in given.items() if v is not None}, hotwords=args.hotwords or (),
                                  phrases=phrases, vad={"on": True, "off": False}.get(getattr(args, "vad", None)))
    if args.min_phrase_confidence is not None and phrases is None:
        warnings.warn("--min-phrase-confidence: has no effect without --phrases", VocableWarning)
    return options


def add_train(commands) -> None:
    p = commands.add_parser("train", help="train a model from a TOML config")
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.ckpt")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (TOML syntax), e.g. --set optim.epochs=3; paths given "
                        "this way are relative to the current folder (the file's to the config's)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="accept dev speakers/audio that also occur in train (same as --set data.allow_overlap=true)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from .config import load_config
    from .train import train
    overrides = parse_overrides(args.set) | ({"data.allow_overlap": True} if args.allow_overlap else {})
    config = load_config(args.config, overrides)
    try:
        train(config, resume=args.resume, show_progress=not args.no_progress)
    except KeyboardInterrupt:
        if os.path.exists(os.path.join(config.run.out_dir, "last.ckpt")):  # said before run_script's "interrupted"
            print(f"vocable: the last checkpoint is in {config.run.out_dir}: the same command with --resume "
                  f"continues from it", file=sys.stderr)
        raise
    return 0


def parse_overrides(items: list[str]) -> dict:
    import tomllib

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = value  # a bare string
    return overrides


def add_evaluate(commands) -> None:
    p = commands.add_parser("evaluate", help="WER/CER of a model on a manifest or Kaldi-style folder, by group, "
                            "under noise, with confidence intervals; or compare two results")
    p.add_argument("dataset", metavar="DATASET", nargs="?", help="JSONL manifest or Kaldi-style folder")
    p.add_argument("--model", default="default")
    p.add_argument("--by", action="append", default=[], metavar="FIELD[,FIELD...]",
                   help="WER per group of these fields: any manifest field, speaker, length (numeric age → bands)")
    p.add_argument("--age-bands", default="13,18,60", metavar="Y1,Y2,...",
                   help="age band edges in years (default: %(default)s → child, teen, adult, 60+)")
    p.add_argument("--noise", type=float, nargs="+", default=[], metavar="SNR",
                   help="also evaluate with added noise at these SNRs in dB (e.g. --noise 20 10 5 0)")
    p.add_argument("--noise-color", default="white", choices=["white", "pink", "brown"])
    p.add_argument("--reverb", action="store_true", help="also evaluate in simulated rooms")
    p.add_argument("--report", metavar="DIR", help="write an HTML report with plots and audio clips here")
    p.add_argument("--clips", type=int, default=50, help="utterances in the report's listening table")
    p.add_argument("--json", action="store_true", help="print everything (with per-utterance rows) as JSON")
    p.add_argument("--output", metavar="FILE.jsonl", help="write per-utterance results here")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="paired comparison of two saved results (--json output or --output rows)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N utterances (0: all)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = the engine's default: all cores)")
    add_decoding_arguments(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from .evaluate import (StatsOptions, SweepOptions, check_group_fields, compare_results, format_comparison,
                           format_summary, load_rows, run_evaluation, write_rows)
    try:
        edges = tuple(int(x) for x in args.age_bands.split(","))
    except ValueError:
        raise ConfigError(f"--age-bands {args.age_bands!r}: expected increasing whole years, e.g. 13,18,60") from None
    if not edges or list(edges) != sorted(set(edges)) or edges[0] <= 0:
        raise ConfigError(f"--age-bands {args.age_bands!r}: expected increasing whole years, e.g. 13,18,60")
    if not 10 <= args.bootstrap <= MAX_BOOTSTRAP:  # 10**12 ran out of memory after all the decoding
        raise ConfigError(f"--bootstrap: expected 10 to {MAX_BOOTSTRAP} replicates (1000 is a good default), "
                          f"got {args.bootstrap}")
    for name in ("limit", "seed", "clips"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name}: expected a whole number >= 0, got {getattr(args, name)}")
    for snr in args.noise:
        if not -30 <= snr <= 100:  # also refuses nan
            raise ConfigError(f"--noise: expected SNRs from -30 to 100 dB, got {snr}")
    stats = StatsOptions(resamples=args.bootstrap, seed=args.seed, age_edges=edges)
    if args.compare:
        if args.dataset:
            raise ConfigError(f"evaluate: give a DATASET or --compare A B, not both ({args.dataset} was given too)")
        comparison = compare_results(load_rows(args.compare[0]), load_rows(args.compare[1]), stats,
                                     names=tuple(args.compare))
        print(json.dumps(comparison, ensure_ascii=False) if args.json else format_comparison(comparison))
        return 0
    if not args.dataset:
        raise ConfigError("evaluate: give a DATASET (or --compare A.json B.json)")
    check_writable_file(args.output, "--output")
    check_not_an_input(args.output, dataset_files(args.dataset), "--output", f"part of the dataset {args.dataset}")
    check_writable_folder(args.report, "--report")
    from .data.manifest import read_dataset
    from .transcribe import load
    recognizer = load(args.model, threads=args.threads)
    utterances = read_dataset(args.dataset)
    if args.limit:
        utterances = utterances[: args.limit]
    check_references(args.dataset, utterances, recognizer.tokenizer.normalizer)
    check_unique_ids(args.dataset, utterances)
    by = [f.strip() for item in args.by for f in item.split(",") if f.strip()]
    check_group_fields(by, [u.meta for u in utterances])  # before hours of decoding
    sweep = SweepOptions(snrs=args.noise, reverb=args.reverb, color=args.noise_color, seed=args.seed)
    options = decoding_options(args)
    scored = []
    try:
        result = {**run_evaluation(recognizer, utterances, by, sweep, stats, show_progress=True,
                                   transcribe=lambda audio: recognizer.transcribe(audio, options=options).text,
                                   dataset=args.dataset, on_row=scored.append), "decoding": repr(options)}
    except KeyboardInterrupt:
        keep_interrupted_rows(args.output, scored, len(utterances))
        raise
    # The figures first: a destination that fails now (a full disk) must not take them with it.
    print(json.dumps(result, ensure_ascii=False) if args.json else format_summary(result))
    try:
        if args.output:
            write_rows(args.output, result["rows"])
        if args.report:
            from .report import write_report
            page = write_report(result, args.report, max_clips=args.clips)
            if not args.json:
                print(f"\nreport      {page}")
    except OSError as e:
        raise VocableError(f"{e.filename or args.report}: cannot write ({e.strerror or e})") from None
    # The figures above leave out unreadable utterances: name them, and fail, so none goes unnoticed.
    errors = [row["error"] for row in result["rows"] if "error" in row]
    for message in errors[:MAX_LISTED_ERRORS]:
        print(f"vocable: error: {message}", file=sys.stderr)
    if len(errors) > MAX_LISTED_ERRORS:
        print(f"vocable: error: ... and {len(errors) - MAX_LISTED_ERRORS} more unreadable utterances", file=sys.stderr)
    return EXIT_USAGE if errors else 0


def keep_interrupted_rows(output: str | None, rows: list[dict], total: int) -> None:
    """Ctrl-C during evaluate: the utterances scored so far are written to --output (else only counted)."""
    if output and rows:
        from .evaluate import write_rows
        write_rows(output, rows)
        print(f"vocable: {len(rows)} of {total} utterances were scored; their rows are in {output}", file=sys.stderr)
    else:
        print(f"vocable: {len(rows)} of {total} utterances were scored (give --output to keep an interrupted "
              f"run's rows)", file=sys.stderr)


def check_unique_ids(dataset: str, utterances: list) -> None:
    """Results are paired by utterance id (--compare), so a dataset must not repeat one."""
    from .evaluate import repeated_ids
    repeated = repeated_ids(u.id for u in utterances)
    if repeated:
        raise DataError(f"{dataset}: {repeated}: ids must be unique, since results are compared by id")


def check_references(dataset: str, utterances: list, normalizer: str) -> None:
    """Refuse a dataset without reference words (no WER exists), and name utterances without any."""
    from .evaluate import unscorable_references
    empty = unscorable_references(utterances, normalizer)
    if utterances and len(empty) == len(utterances):
        raise DataError(f"{dataset}: no utterance has reference text: evaluation needs transcripts")
    if empty:
        print(f"vocable: warning: {dataset}: {len(empty)} utterance(s) without reference words (first: {empty[0]}); "
              f"words recognised in them count as insertions", file=sys.stderr)


def add_models(commands) -> None:
    p = commands.add_parser("models", help="list bundled models")
    p.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    from .bundled import DEFAULT_MODEL, bundled_models
    for name in bundled_models():
        print(name + ("  (default)" if name == DEFAULT_MODEL else ""))
    if importlib.util.find_spec("torch") is None:  # the runtime install lists them too, and says what they need
        print(f"vocable models: note: these are .vocable models; each {NEEDS_TORCH}", file=sys.stderr)
    return 0


def add_data(commands) -> None:
    """`vocable data import|split|check|synth|voices|prepare`: the subcommands live in vocable/data/commands.py."""
    from .data.commands import add_data_commands
    p = commands.add_parser("data", help="import, split, check, synthesise and cache datasets")
    add_data_commands(p.add_subparsers(title="data commands", metavar="COMMAND"))
    p.set_defaults(func=lambda args: p.print_help() or EXIT_USAGE)


def add_listen(commands) -> None:
    p = commands.add_parser("listen", help="live transcription from the microphone (or a file played in real time)")
    p.add_argument("--model", default="default", help="bundled model name or model file (default: %(default)s)")
    p.add_argument("--input", metavar="FILE", help="play this audio file instead of the microphone")
    p.add_argument("--speed", type=float, default=1.0, help="with --input: times real time (0 = no waiting)")
    p.add_argument("--json", action="store_true", help="one JSON event per line, with timestamps")
    p.add_argument("--chunk-ms", type=int, default=100, help="audio per chunk (default: %(default)s ms)")
    p.add_argument("--device", default=None, help="input device number or name (see python -m sounddevice)")
    p.add_argument("--vad", choices=["auto", "silero", "webrtc", "energy", "none"],
                   help="voice-activity detector (default: the model's stream setting, else auto)")
    p.add_argument("--endpoint", type=float, help="seconds of silence that end an utterance (default: the "
                   "model's stream setting, else 0.6)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: %(default)s)")
    add_decoding_arguments(p, files=False)
    p.set_defaults(func=cmd_listen)


def cmd_listen(args) -> int:
    import time

    from .stream import Microphone, StreamOptions, Streamer, default_options, file_chunks
    from .transcribe import load
    if not 10 <= args.chunk_ms <= 10_000:  # 0 played one-sample chunks
        raise ConfigError(f"--chunk-ms: expected 10 to 10000 ms of audio per chunk, got {args.chunk_ms}")
    if not (args.speed == 0 or MIN_SPEED <= args.speed <= 1000):  # also refuses nan
        raise ConfigError(f"--speed: expected 0 (no waiting) or {MIN_SPEED} to 1000 times real time, got {args.speed}")
    decoding = decoding_options(args)  # a malformed option or grammar fails before the model loads
    given = {k: v for k, v in {"vad": args.vad, "endpoint_silence": args.endpoint}.items() if v is not None}
    with options_named_as_flags({"vad": "--vad", "endpoint_silence": "--endpoint"}):
        StreamOptions(**given).validate()  # else the model's own (meta "stream"), as served
    device = int(args.device) if args.device and args.device.isdigit() else args.device
    mic = None if args.input else Microphone(args.chunk_ms / 1000, device)  # no microphone: said before loading
    recognizer = load(args.model, threads=args.threads)  # checked there (-5 became 1, unsaid)
    recognizer.decoder(decoding)  # and a missing LM before any audio
    options = default_options(recognizer, **given)
    live = sys.stdout.isatty() and not args.json
    started = time.monotonic()

    def show(events) -> None:
        for event in events:
            if args.json:
                print(json.dumps({**event.to_dict(), "time": round(time.monotonic() - started, 3)}), flush=True)
            elif event.type == "final":
                line = f"[{event.start:7.2f} -> {event.end:7.2f}] {event.text}"
                print("\r\x1b[K" + line if live else line, flush=True)
            elif live:  # a partial replaces the line in place
                print("\r\x1b[K" + event.text, end="", flush=True)

    def run(streamer, chunks) -> None:
        try:
            for chunk in chunks:
                show(streamer.accept(chunk))
        except KeyboardInterrupt:  # Ctrl-C ends the audio: the utterance under way still gets its final
            pass
        show(streamer.flush())

    if args.input:
        run(Streamer(recognizer, options=options, decoding=decoding),
            file_chunks(args.input, args.chunk_ms / 1000, args.speed))
        return 0
    with mic:
        if not args.json:
            print(f"listening with {recognizer.name} (Ctrl-C to stop)", file=sys.stderr)
        run(Streamer(recognizer, mic.sample_rate, options=options, decoding=decoding), mic)
    if mic.dropped:
        print(f"vocable: warning: {mic.dropped} chunks of audio ({mic.dropped * args.chunk_ms / 1000:.1f} s) were "
              f"lost because decoding fell behind; try a smaller model or more --threads", file=sys.stderr)
    return 0


def add_serve(commands) -> None:
    p = commands.add_parser("serve", help="OpenAI-compatible transcription server with WebSocket streaming and a page")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: $VOCABLE_API_KEY)")
    p.add_argument("--model", default="default", help="model for requests (default: %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload (default: %(default)s MB)")
    p.add_argument("--max-audio-seconds", type=float, default=1800.0, help="longest upload (default: %(default)s s)")
    p.add_argument("--max-streams", type=int, default=4, help="concurrent WebSocket streams (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="inference calls at once (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per inference call (default: %(default)s)")
    add_decoding_arguments(p)  # for the server's own model, uploads and streams alike
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from .server import ServerOptions, serve
    if args.api_key is not None and not args.api_key.strip():  # --api-key "$UNSET": not a server open to all
        raise ConfigError("--api-key: empty; give the key clients must send, or leave --api-key out")
    api_key = args.api_key or os.environ.get("VOCABLE_API_KEY") or None
    if not args.host.strip():  # "" binds every address (0.0.0.0) while saying "http://:PORT"
        raise ConfigError("--host: an empty address; give one (127.0.0.1 for this machine, 0.0.0.0 for all)")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        print(f"vocable: warning: serving on {args.host} without --api-key: anyone who can reach it may use it",
              file=sys.stderr)
    serve(ServerOptions(model=args.model, api_key=api_key, max_upload_mb=args.max_upload_mb,
                        max_audio_seconds=args.max_audio_seconds, max_streams=args.max_streams,
                        workers=args.workers, threads=args.threads, decoding=decoding_options(args)),
          host=args.host, port=args.port)
    return 0


def add_export(commands) -> None:
    p = commands.add_parser("export", help="export a model to ONNX (fp32 or int8) for the torch-free runtime")
    p.add_argument("model", metavar="MODEL", help="bundled model name or .vocable file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.add_argument("--int8", action="store_true", help="quantise MatMul/Gemm weights to int8 (dynamic)")
    p.add_argument("--per-tensor", action="store_true", help="int8 with one scale per tensor (default: per channel)")
    p.add_argument("--check", metavar="DATASET", help="also print WER and speed of both models on this dataset")
    p.add_argument("--limit", type=int, default=0, help="--check: only the first N utterances (0: all)")
    p.add_argument("--audio", nargs="+", default=[], metavar="FILE",
                   help="speech to compare torch and ONNX on (default: --check's first utterances, "
                        "else espeak-ng sentences)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest posterior difference accepted (default: 0.001 fp32, 0.2 int8)")
    p.add_argument("--threads", type=int, default=1, help="--check: CPU threads (default: %(default)s)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from .export import CHECK_UTTERANCES, ExportOptions, check_dataset, export_model
    if not args.output.lower().endswith(".onnx"):
        raise ConfigError(f"-o {args.output}: the exported file must end in .onnx")
    if args.per_tensor and not args.int8:
        warnings.warn("--per-tensor: has no effect without --int8", VocableWarning)
    for flag, value, default in (("--limit", args.limit, 0), ("--threads", args.threads, 1)):
        if value != default and not args.check:
            warnings.warn(f"{flag}: has no effect without --check", VocableWarning)
    check_writable_file(args.output, "-o")
    if args.tolerance is not None and not 0 < args.tolerance <= 1:  # also refuses nan, which passes any check
        raise ConfigError(f"--tolerance: expected a posterior difference above 0 and at most 1, got {args.tolerance}")
    from .transcribe import MAX_THREADS
    if args.limit < 0:  # checked before the export: it used to cut utterances off the end, or fail after writing
        raise ConfigError(f"--limit: expected a count of utterances (0 = all), got {args.limit}")
    if not 1 <= args.threads <= MAX_THREADS:
        raise ConfigError(f"--threads: expected 1 to {MAX_THREADS}, got {args.threads}")
    audio = list(args.audio)
    if args.check and not audio:
        from .data.manifest import read_dataset
        audio = [u.audio for u in read_dataset(args.check)[:CHECK_UTTERANCES]]
    options = ExportOptions(int8=args.int8, per_channel=not args.per_tensor, tolerance=args.tolerance, audio=audio)
    c = export_model(args.model, args.output, options)
    print(f"wrote {args.output}: posteriors within {max(c.max_prob_diff, c.batch_max_prob_diff):.2e} of torch, "
          f"best token agrees on {c.frame_agreement:.1%} of frames, same text on {c.same_text:.0%} "
          f"of {c.utterances} utterances")
    if args.check:
        print(f"\n{'model':32} {'WER':>7} {'RTF':>8} {'MB':>7}   ({args.threads} thread(s), batch 1)")
        for row in check_dataset(args.model, args.output, args.check, args.limit, args.threads):
            print(f"{row.name:32} {row.wer:7.2%} {row.rtf:8.4f} {row.size_mb:7.2f}")
    return 0


def add_lm(commands) -> None:
    p = commands.add_parser("lm", help="word n-gram language models")
    sub = p.add_subparsers(title="lm commands", metavar="LM_COMMAND")
    b = sub.add_parser("build", help="build a modified Kneser-Ney n-gram LM (ARPA) from text")
    b.add_argument("texts", nargs="+", metavar="TEXT", help="text files, one sentence per line "
                   "(Kaldi 'ID<TAB>text' lines too)")
    b.add_argument("-o", "--output", required=True, metavar="LM",
                   help="ARPA file to write (.gz compresses), or .lm.npz: binary, loads 10x faster")
    b.add_argument("--order", type=int, default=3)
    b.add_argument("--exclude", nargs="*", default=[], metavar="FILE",
                   help="drop text lines containing any sentence of these files (evaluation text)")
    b.add_argument("--prune", default="", metavar="C1,C2,..", help="per order: drop n-grams seen at most "
                   "this many times, e.g. 0,1,1 (unigrams are kept; a shorter list repeats its last count)")
    b.add_argument("--min-count", type=int, default=1, help="rarer words become <unk>")
    b.add_argument("--normalizer", default="english", choices=["english", "basic", "none"])
    b.set_defaults(func=cmd_lm_build)
    p.set_defaults(func=lambda args: p.print_help() or EXIT_USAGE)


def cmd_lm_build(args) -> int:
    from .data.manifest import plural
    from .lm import BuildOptions, build_lm, excluded_texts, read_sentences, write_lm
    from .tokenizer import NORMALIZERS
    normalize = NORMALIZERS[args.normalizer]
    try:  # an empty field would move the counts after it down an order
        prune = tuple(int(x) for x in args.prune.split(",")) if args.prune.strip() else ()
    except ValueError:
        raise ConfigError(f"--prune: expected comma-separated counts, got {args.prune!r}") from None
    flags = {"order": "--order", "prune": "--prune", "min_word_count": "--min-count"}
    with options_named_as_flags(flags):
        options = BuildOptions(order=args.order, prune=prune, min_word_count=args.min_count)  # before reading text
    for path in args.texts + args.exclude:
        if os.path.isdir(path):
            raise ConfigError(f"{path}: a folder; give the text files in it")
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: no such text file")
        if not looks_like_text(path):
            raise ConfigError(f"{path}: not UTF-8 text (an LM built from it would be garbage)")
    check_lm_output(args.output, args.texts + args.exclude)
    excluded = {normalize(text) for path in args.exclude
                for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
                for text in excluded_texts(line)}
    sentences, n_excluded = read_sentences(args.texts, normalize, excluded - {""})
    if not any(sentences):
        raise DataError(f"{', '.join(args.texts)}: no words left after the {args.normalizer} normaliser (empty, "
                        f"or all excluded, or in letters it drops: try --normalizer basic)")
    with options_named_as_flags(flags):
        lm = build_lm(sentences, options)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)  # as check_writable_file allows
    write_lm(lm, args.output)
    sizes = ", ".join(f"{len(o.keys)} {n}-grams" for n, o in enumerate(lm.orders, start=1))
    dropped = f" ({plural(n_excluded, 'line')} excluded)" if args.exclude else ""
    print(f"{args.output}: {len(sentences)} sentences{dropped}, {sum(map(len, sentences))} words; {sizes}",
          file=sys.stderr)
    return 0


def check_lm_output(output: str, inputs: list[str]) -> None:
    """`lm build -o`: refused before any work when it is no file name, one of the texts read (it was
    overwritten with the LM), or where no file can be written (check_writable_file)."""
    if not output.strip():
        raise ConfigError("-o: an empty name; give the LM file to write")
    check_not_an_input(output, inputs, "-o", "one of the texts the LM is built from")
    check_writable_file(output, "-o")


@contextlib.contextmanager
def options_named_as_flags(flags: dict[str, str]):
    """Errors of an options dataclass made from command-line flags name the flag, not the Python field:
    "order: expected ..." becomes "--order: expected ..."."""
    try:
        yield
    except VocableError as e:
        field, sep, rest = re.sub(r"^(decoding option|stream) ", "", str(e)).partition(":")
        if not sep or field not in flags:
            raise
        raise type(e)(f"{flags[field]}:{rest}") from None


def add_align(commands) -> None:
    p = commands.add_parser("align", help="forced alignment: word times of a known transcript")
    p.add_argument("audio", metavar="AUDIO")
    p.add_argument("text", metavar="TEXT", help="the transcript, or a file holding it")
    p.add_argument("--model", default="default")
    p.add_argument("--format", default="tsv", choices=["json", "srt", "vtt", "tsv"])
    p.set_defaults(func=cmd_align)


def cmd_align(args) -> int:
    from .formats import format_result
    from .transcribe import load
    if os.path.isdir(args.text):
        raise ConfigError(f"TEXT {args.text}: a folder; give the transcript, or a file holding it")
    is_file = os.path.isfile(args.text)
    if not is_file and " " not in args.text.strip() and re.search(r"[/\\]|\.txt$", args.text):
        # one "word" shaped like a path: a mistyped file name, which would be aligned as the words "notes txt"
        raise ConfigError(f"TEXT {args.text}: no such file")
    if is_file and not looks_like_text(args.text):
        raise ConfigError(f"{args.text}: not UTF-8 text (give the transcript as a text file or a quoted string)")
    text = Path(args.text).read_text(encoding="utf-8") if is_file else args.text
    named = f"TEXT {args.text}" if is_file else "TEXT"
    if not text.strip():
        raise ConfigError(f"{named}: empty; give the words spoken in {args.audio}")
    try:
        result = load(args.model).align(args.audio, text)
    except DataError as e:
        if str(e).startswith("transcript"):  # the text's problem (force_align): say which text
            raise DataError(f"{named}: {e}") from None
        raise
    print(format_result(result, args.format, args.audio), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
