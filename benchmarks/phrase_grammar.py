"""Phrase grammars: how often a listed phrase is accepted, and an unlisted one let through, per threshold.

    python benchmarks/phrase_grammar.py [--model default] [--dataset NAME=MANIFEST ...] [--limit 160]

For each utterance of a dataset three grammars of GRAMMAR_SIZE phrases are matched (vocable.decoding.
match_phrases, exact CTC scores): "listed" = its own transcript among other transcripts of the same
set; "unlisted" = other transcripts only (the speaker said something else); "one word off" = other
transcripts plus its own with one word swapped for a word of the set (a near miss). A threshold should
accept the first and reject the other two. Defaults: the recipe's held-out speechocean762 speakers,
librivox-clips and alsa-prompts (recipes/en_default/data; `prepare.py` writes them).

The table is printed and written to benchmarks/results/phrase_grammar-<model>.md (--out); it names the
machine.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vocable.errors import DataError, run_script  # noqa: E402

from vocable.audio import load_audio  # noqa: E402
from vocable.data.manifest import read_dataset  # noqa: E402
from vocable.decoding import BeamSearchDecoder, DecodingOptions, match_phrases  # noqa: E402
from vocable.transcribe import load  # noqa: E402
from compare_peers import describe_machine, machine_info  # noqa: E402

RECIPE_DATA = ROOT / "recipes" / "en_default" / "data"
DEFAULT_DATASETS = [f"so762-dev={RECIPE_DATA / 'so762-dev.jsonl'}", f"librivox-clips={RECIPE_DATA / 'librivox.jsonl'}",
                    f"alsa-prompts={RECIPE_DATA / 'alsa.jsonl'}"]
GRAMMAR_SIZE = 15  # phrases per grammar
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def grammars(text: str, texts: list[str], rng: random.Random) -> dict[str, list[str]]:
    """The three grammars for an utterance whose transcript is `text` (see the module docstring); `text`
    and `texts` normalised as the model's tokenizer does, so no other phrase is the said one in disguise."""
    others = rng.sample([t for t in texts if t != text], min(GRAMMAR_SIZE, len(texts) - 1))
    words = text.split()
    k = rng.randrange(len(words))
    vocabulary = sorted({w for t in texts for w in t.split()})
    near_misses = [" ".join(words[:k] + [w] + words[k + 1:]) for w in vocabulary if w != words[k]]
    near_misses = [t for t in near_misses if t not in texts] or near_misses  # not another listed transcript
    return {"listed": [text] + others[:-1], "unlisted": others, "one word off": others[:-1] + [rng.choice(near_misses)]}


def distinct_texts(utterances, normalize) -> list[str]:
    """The set's transcripts as the model reads them: "Seven." and "seven" are one phrase."""
    texts = sorted({normalize(u.text) for u in utterances} - {""})
    if len(texts) < 3 or len({w for t in texts for w in t.split()}) < 2:  # a near miss swaps in another word
        raise DataError("a phrase benchmark needs at least 3 different transcripts and 2 different words")
    return texts


def measure(recognizer, utterances, rng: random.Random) -> dict[str, list]:
    """{grammar kind: [(confidence, matched the spoken text)]} over `utterances`."""
    normalize = recognizer.tokenizer.normalize
    texts = distinct_texts(utterances, normalize)
    out = {"listed": [], "unlisted": [], "one word off": []}
    for u in utterances:
        spoken = normalize(u.text)
        if not spoken:
            continue
        log_probs = recognizer.log_probs(load_audio(u.audio))
        for kind, phrases in grammars(spoken, texts, rng).items():
            options = DecodingOptions(phrases=phrases)
            m = match_phrases(log_probs, recognizer.tokenizer, options,
                              BeamSearchDecoder(recognizer.tokenizer, None, options))
            out[kind].append((m.confidence, m.phrase == spoken))
    return out


def table(results: dict[str, dict[str, list]], current: float) -> list[str]:
    lines = ["| dataset | utterances | threshold | listed: accepted as itself | listed: accepted as another "
             "| unlisted: accepted | one word off: accepted |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        conf = {kind: np.array([c for c, _ in rows]) for kind, rows in r.items()}
        right = np.array([ok for _, ok in r["listed"]])
        for th in THRESHOLDS:
            mark = " (the model's)" if abs(th - current) < 1e-9 else ""
            lines.append(f"| {name} | {len(right)} | {th:g}{mark} | {np.mean((conf['listed'] >= th) & right):.1%} "
                         f"| {np.mean((conf['listed'] >= th) & ~right):.1%} | {np.mean(conf['unlisted'] >= th):.1%} "
                         f"| {np.mean(conf['one word off'] >= th):.1%} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--dataset", action="append", metavar="NAME=MANIFEST", help="default: " + " ".join(
        d.split("=")[0] for d in DEFAULT_DATASETS))
    parser.add_argument("--limit", type=int, default=160, help="utterances per dataset, drawn with a fixed seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="table file (default: benchmarks/results/phrase_grammar-<model>.md)")
    args = parser.parse_args()
    recognizer = load(args.model, threads=1)
    current = DecodingOptions().min_phrase_confidence
    current = recognizer.decoder().options.min_phrase_confidence if current is None else current
    results = {}
    for spec in args.dataset or DEFAULT_DATASETS:
        name, sep, path = spec.partition("=")
        if not sep:
            raise DataError(f"--dataset {spec!r}: expected NAME=MANIFEST")
        utterances = read_dataset(path)
        rng = random.Random(args.seed)
        utterances = rng.sample(utterances, min(args.limit, len(utterances)))
        print(f"{name}: {len(utterances)} utterances", file=sys.stderr)
        results[name] = measure(recognizer, utterances, rng)
    lines = [f"Phrase grammars of {GRAMMAR_SIZE} phrases, model {recognizer.name}, "
             f"`benchmarks/phrase_grammar.py` (seed {args.seed}); machine: {describe_machine(machine_info())}",
             ""] + table(results, current)
    print("\n".join(lines))
    out = args.out or ROOT / "benchmarks" / "results" / f"phrase_grammar-{Path(recognizer.name).stem}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_script(main)
