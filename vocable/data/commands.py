"""`vocable data ...` subcommands: each is an `add_*` (arguments) + `cmd_*` (work) pair."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from ..errors import DataError
from ..files import check_not_an_input, check_writable_file, dataset_files

EXIT_LEAK = 1  # `vocable data check` found overlap (2 stays "bad input", as everywhere in the CLI)


def add_data_commands(commands) -> None:
    add_import(commands)
    add_split(commands)
    add_check(commands)
    add_voices(commands)
    add_synth(commands)
    add_prepare(commands)


def add_voices(commands) -> None:
    p = commands.add_parser("voices", help="list installed offline text-to-speech voices and their licences")
    p.add_argument("--piper", action="append", default=[], metavar="VOICE.onnx", help="also list this piper voice")
    p.add_argument("--language", type=language_code, default="en", metavar="CODE",
                   help="voices of this language (ISO 639-1, e.g. es, de; default en)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_voices)


def cmd_voices(args) -> int:
    from .synth import describe_voices, list_voices
    rows = describe_voices(list_voices(args.piper, args.language))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        installed = args.language != "en" and describe_voices(list_voices(args.piper, "en"))
        print(f"no installed voice speaks {args.language!r} (vocable data voices lists the English ones)" if installed
              else "no voices installed; run scripts/install-voices.sh")
        return 0
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        variants = f"{r['variants']} variants" if r["variants"] else ""
        print(f"{r['id']:<{width}}  {variants:<12}  {r['licence']}  [{r['copyright']}]")
    print(f"{len(rows)} voices, {sum(max(1, r['variants']) for r in rows)} speakers (voice+variant)")
    return 0


def language_code(text: str) -> str:
    """"es" → "es"; argparse turns the ValueError into a one-line usage error."""
    if not re.fullmatch(r"[a-z]{2,3}", text):
        raise ValueError(text)
    return text


def add_synth(commands) -> None:
    p = commands.add_parser("synth", help="render sentences with every installed TTS voice into a manifest")
    p.add_argument("--text", action="append", required=True, metavar="FILE",
                   help="sentences, one per line (repeatable)")
    p.add_argument("--hours", type=float, required=True, help="audio to render (measured)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="writes DIR/manifest.jsonl and DIR/audio/")
    p.add_argument("--voices", nargs="+", metavar="VOICE",
                   help="engines, voice ids or globs, e.g. flite festival 'espeak-ng:en-gb*' (default: all)")
    p.add_argument("--piper", action="append", default=[], metavar="VOICE.onnx", help="also use this piper voice")
    p.add_argument("--language", type=language_code, default="en", metavar="CODE",
                   help="language of the sentences and voices (ISO 639-1, e.g. es, de; default en). Other than "
                        "English: espeak-ng's voices of it, transcripts by the basic normaliser (train with "
                        "normalizer = \"basic\"), sentences with digits or symbols skipped")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", default="flac", choices=["flac", "opus"],
                   help="flac (lossless) or Ogg/Opus (~8x smaller)")
    p.add_argument("--accent", type=float, default=0.0, metavar="STRENGTH",
                   help="speak with a Mandarin-L1-style accent of up to this strength, 0-1, drawn per utterance "
                        "(espeak-ng: phonemes rewritten; other engines: words respelled; default 0: native)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_synth)


def check_jobs(jobs: int) -> None:
    """--jobs: 0 or fewer workers would do nothing (or fail inside a pool), before any work."""
    if jobs < 1:
        raise DataError(f"--jobs must be at least 1, got {jobs}")


def cmd_synth(args) -> int:
    from .synth import list_voices, select_voices, synthesize_corpus
    check_jobs(args.jobs)
    voices = select_voices(list_voices(args.piper, args.language), args.voices)
    result = synthesize_corpus(args.text, args.hours, args.out, voices, args.jobs, args.seed, args.format,
                               show_progress=not args.no_progress, accent=args.accent, language=args.language)
    print(f"{args.out}/manifest.jsonl: {result.utterances} utterances, {result.hours:.2f} h "
          f"({result.new} new, {result.failed} failed) from {result.voices} voices")
    if result.skipped_sentences:
        print("sentences skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(result.skipped_sentences.items())))
    for error in result.errors:
        print(f"failed: {error}")
    if result.hours < args.hours * 0.99:  # every sentence has been spoken by every voice
        print(f"vocable: warning: {args.text}: {result.hours:.2f} of the {args.hours:g} h asked for: every sentence "
              f"has been given to every voice; add sentences or voices for more", file=sys.stderr)
    return 0


def add_import(commands) -> None:
    from .importers import READERS
    p = commands.add_parser("import", help="corpus → JSONL manifest (bad rows are counted and skipped)")
    p.add_argument("kind", choices=sorted(READERS), help="corpus format")
    p.add_argument("source", metavar="SRC",
                   help="Common Voice TSV (or its folder), DeepSpeech CSV, LibriSpeech/Kaldi/FSDD/audio folder")
    p.add_argument("-o", "--out", required=True, metavar="OUT.jsonl")
    p.add_argument("--normalizer", default="english", choices=["english", "basic", "none"],
                   help="text normalisation (english: a-z' only; basic: any language)")
    p.add_argument("--jobs", type=int, default=4, help="threads measuring audio")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from .importers import import_corpus
    from .manifest import write_manifest
    check_jobs(args.jobs)
    if os.path.isdir(args.out):  # before the import's work, not after it
        raise DataError(f"-o {args.out}: a folder; give the manifest file to write (OUT.jsonl)")
    check_writable_file(args.out, "-o")
    check_not_an_input(args.out, dataset_files(args.source), "-o", f"part of the corpus {args.source}")
    clips = Path(args.out).with_name(Path(args.out).stem + "-clips")  # where a Kaldi folder's segments are cut to
    report = import_corpus(args.kind, args.source, args.normalizer, args.jobs, not args.no_progress, clips)
    hint = " (for a language other than English use --normalizer basic)" \
        if report.skipped.get("characters outside the alphabet") or report.folded else ""
    if not report.utterances:
        raise DataError(f"{args.source}: no usable utterances; {report.summary()}{hint}")
    write_manifest(args.out, report.utterances)
    print(f"{args.out}: {report.summary()}")
    if report.folded:
        letters = ", ".join(f"{c} in {n} row{'s' * (n > 1)}" for c, n in sorted(report.folded.items()))
        print(f"vocable: warning: the English normaliser folded accented letters into plain ones ({letters} of "
              f"{len(report.utterances)}){hint}", file=sys.stderr)  # a "café" or two in English text is harmless
    elif hint:
        print(f"vocable: warning: transcripts with letters or symbols outside English's a-z were skipped{hint}",
              file=sys.stderr)
    return 0


def add_split(commands) -> None:
    p = commands.add_parser("split", help="train/dev split by speaker, balanced by gender and age band")
    p.add_argument("manifest", metavar="MANIFEST", help="JSONL manifest or Kaldi-style folder")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--dev-speakers", type=int, metavar="N", help="speakers held out for dev")
    size.add_argument("--dev-fraction", type=float, metavar="F", help="fraction of speakers for dev")
    p.add_argument("--by-sentence", action="store_true", help="also drop training utterances whose sentence is in dev")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="writes DIR/train.jsonl and DIR/dev.jsonl")
    p.set_defaults(func=cmd_split)


def cmd_split(args) -> int:
    from .manifest import read_dataset, write_manifest
    from .split import describe_split, split_by_speaker
    out = Path(args.out)
    for name in ("train.jsonl", "dev.jsonl"):
        check_not_an_input(str(out / name), dataset_files(args.manifest), "-o", f"the manifest {args.manifest}")
    utterances = read_dataset(args.manifest)
    if not utterances:
        raise DataError(f"{args.manifest}: no utterances to split")
    split = split_by_speaker(utterances, args.dev_speakers, args.dev_fraction, args.seed, args.by_sentence)
    write_manifest(out / "train.jsonl", split.train)
    write_manifest(out / "dev.jsonl", split.dev)
    print("\n".join([f"wrote {out / 'train.jsonl'} and {out / 'dev.jsonl'}"] + describe_split(split)))
    return 0


def add_check(commands) -> None:
    from .leaks import KINDS
    p = commands.add_parser("check", help="shared speakers, sentences or audio between TRAIN and TEST sets "
                                          "(exit status 1 when any, or when audio files cannot be read to compare)")
    p.add_argument("train", metavar="TRAIN", help="manifest or Kaldi-style folder")
    p.add_argument("tests", nargs="+", metavar="TEST")
    p.add_argument("--ignore", action="append", default=[], choices=KINDS,
                   help="report but accept this kind of overlap (e.g. sentences for a digits corpus)")
    p.add_argument("--no-hash", action="store_true", help="compare audio by path only, not by content")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from .leaks import find_leaks
    from .manifest import read_dataset
    train = read_dataset(args.train)
    leaked = False
    for test in args.tests:
        report = find_leaks(train, read_dataset(test), hash_audio=not args.no_hash, show_progress=True)
        found = report.found(tuple(args.ignore))
        unchecked = bool(report.unreadable) and "audio" not in args.ignore  # "no leak" would be a guess
        verdict = "LEAK: " + ", ".join(found) if found else "audio unchecked" if unchecked else "no leak"
        print(f"{test} vs {args.train}: {verdict}")
        for line in report.describe(tuple(args.ignore)):
            print("  " + line)
        leaked = leaked or bool(found) or unchecked
    return EXIT_LEAK if leaked else 0


def add_prepare(commands) -> None:
    from .shards import DEFAULT_SHARD_SIZE
    p = commands.add_parser("prepare", help="precompute features into fp16 shards that training streams from disk")
    p.add_argument("manifest", metavar="MANIFEST", help="JSONL manifest or Kaldi-style folder")
    p.add_argument("-o", "--out", required=True, metavar="SHARDS/")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, metavar="N", help="utterances per shard")
    p.add_argument("--config", metavar="TRAIN.toml",
                   help="the features this training config will use: its [features], or its init_from model's")
    p.add_argument("--kind", default="logmel", choices=["logmel", "mfcc"])
    p.add_argument("--n-mels", type=int, default=80)
    p.add_argument("--n-mfcc", type=int, default=13)
    p.add_argument("--pitch", action="store_true", help="append voicing and log-F0")
    p.add_argument("--jobs", type=int, default=1, help="processes (one shard each)")
    p.add_argument("--seed", type=int, default=0, help="shuffles utterances across shards")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args) -> int:
    from ..features_np import FeatureConfig
    from .manifest import read_dataset
    from .shards import prepare_shards
    check_jobs(args.jobs)
    if args.config:  # the features training will use: the config's, or its init_from model's
        from ..config import load_config
        features = load_config(args.config).features
    else:
        features = FeatureConfig(kind=args.kind, n_mels=args.n_mels, n_mfcc=args.n_mfcc, pitch=args.pitch)
    index = prepare_shards(read_dataset(args.manifest), args.out, features, args.shard_size, args.jobs, args.seed,
                           source=str(args.manifest), show_progress=not args.no_progress)
    print(f"{args.out}: {index['utterances']} utterances, {index['hours']:.2f} h in {len(index['shards'])} shards "
          f"({features.kind}, {features.dim} dims, {index['dtype']}); {len(index['skipped'])} unreadable skipped"
          + (f"; {index['kept']} shards kept from an earlier run (same utterances, text and features)"
             if index["kept"] else ""))
    for line in index["skipped"][:10]:
        print(f"skipped: {line}")
    return 0
