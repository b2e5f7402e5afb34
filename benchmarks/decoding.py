"""Decoding: WER of greedy vs LM beam search, and speed against pyctcdecode and flashlight-text.

    python benchmarks/decoding.py                          # a real English model if one is bundled
    python benchmarks/decoding.py --model M.vocable --manifest dev.jsonl
    python benchmarks/decoding.py --simulate               # simulated acoustic model (see below)

All decoders get the same log-probabilities and the same LM (vocable/assets/en-3gram.lm.npz, given to KenLM as ARPA):
- greedy, and vocable's prefix beam search (vocable.decoding.BeamSearchDecoder) at several beams;
- pyctcdecode (KenLM inside), run in a throwaway venv (it pins numpy<2; never a vocable dependency):
      python -m venv /tmp/pyctc && /tmp/pyctc/bin/pip install pyctcdecode 'numpy<2' kenlm-ex
  with the same LM weight, word bonus, unknown-word penalty and pruning, so outputs can be compared;
- flashlight-text's LexiconDecoder (KenLM inside, C++): a lexicon decoder, so it can only output the
  LM's words — different by design; reported for speed.

Data: speechocean762 dev speakers (recipes/en_default/data/so762-dev.jsonl) when a model is given;
their prompts are excluded from the LM's text. Without an English model, --simulate stands in: the
same prompts "spoken" by a simulated peaky CTC model that confuses similar letters (~8 % of
characters) — it measures the decoders, not a real acoustic model, and the table says so.
Times: one thread, wall clock per utterance, median of REPEATS runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vocable.errors import run_script  # noqa: E402
from compare_peers import ROOT, SHARED, describe_machine, machine_info

DEV_MANIFEST = ROOT / "recipes" / "en_default" / "data" / "so762-dev.jsonl"
LM_PATH = ROOT / "vocable" / "assets" / "en-3gram.lm.npz"  # written out as ARPA for the KenLM-based peers
PYCTC_PYTHON = Path("/tmp/pyctc/bin/python")
BEAMS = (8, 16, 32)
REPEATS = 3
CONFUSABLE = dict(zip("aeiouckszdtpbmnfvgjwvyhrl", "eiyuakcztdpbbnmvfjgvwiehlr"))  # letter → a similar one

PYCTC_WORKER = r"""
import json, sys, time, numpy as np
from pyctcdecode import build_ctcdecoder
cfg = json.load(open(sys.argv[1]))
data = np.load(cfg["logits"])
decoder = build_ctcdecoder(cfg["labels"], kenlm_model_path=cfg["lm"], alpha=cfg["alpha"], beta=cfg["beta"],
                           unk_score_offset=cfg["unk"])
out = {}
for beam in cfg["beams"]:
    texts, times = [], []
    for i in range(len(data.files)):
        lp = data[f"u{i}"]
        decoder.decode(lp, beam_width=beam, beam_prune_logp=-cfg["prune"], token_min_logp=cfg["min_logp"])
        best = []
        for _ in range(cfg["repeats"]):
            t = time.perf_counter()
            text = decoder.decode(lp, beam_width=beam, beam_prune_logp=-cfg["prune"], token_min_logp=cfg["min_logp"])
            best.append(time.perf_counter() - t)
        texts.append(text)
        times.append(sorted(best)[len(best) // 2])
    out[str(beam)] = {"texts": texts, "times": times}
json.dump(out, open(cfg["out"], "w"))
"""


def load_references() -> list[str]:
    from vocable.data.manifest import read_dataset
    from vocable.tokenizer import normalize_english
    if DEV_MANIFEST.exists():
        return [normalize_english(u.text) for u in read_dataset(DEV_MANIFEST)]
    return ["the cat sat on the mat", "we call it bear", "my friend likes the orange one"]


def simulate(text: str, tokenizer, rng) -> np.ndarray:
    """(T, V) log-probs of a simulated peaky CTC model saying `text`: each character a spike of 1-2
    frames followed by 0-2 blank frames; ~10 % of letters compete with a similar letter (log-odds
    N(0.3, 1), so about 6 % come out wrong), background log-probs around -12."""
    ids = tokenizer.encode(text)
    frames = []
    for token in ids:
        char = tokenizer.token_text(token)
        for _ in range(rng.integers(1, 3)):
            row = rng.normal(-12, 2, tokenizer.vocab_size)
            row[0] = rng.normal(0, 1)
            row[token] = 4 + rng.normal(0, 1)
            if char in CONFUSABLE and rng.random() < 0.10:
                row[tokenizer.encode(CONFUSABLE[char])[0]] = row[token] + rng.normal(0.3, 1.0)
            frames.append(row)
        for _ in range(rng.integers(0, 3)):
            row = rng.normal(-12, 2, tokenizer.vocab_size)
            row[0] = 4 + rng.normal(0, 1)
            frames.append(row)
    logits = np.array(frames)
    return (logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)).astype(np.float32)


def model_log_probs(model: str, manifest: Path, limit: int):
    import torch

    import vocable
    from vocable.audio import load_audio
    from vocable.data.manifest import read_dataset
    from vocable.tokenizer import normalize_english
    torch.set_num_threads(1)
    recognizer = vocable.load(model)
    utterances = read_dataset(manifest)[:limit or None]
    log_probs, refs, seconds = [], [], 0.0
    for u in utterances:
        audio = load_audio(u.audio)
        t = time.perf_counter()
        log_probs.append(recognizer.log_probs(audio))
        seconds += time.perf_counter() - t
        refs.append(normalize_english(u.text))
    return recognizer.tokenizer, log_probs, refs, seconds / max(len(utterances), 1), recognizer.loaded.path


def time_decoder(decode, log_probs) -> tuple[list[str], list[float]]:
    texts, times = [], []
    for lp in log_probs:
        decode(lp)
        runs = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            text = decode(lp)
            runs.append(time.perf_counter() - t)
        texts.append(text)
        times.append(statistics.median(runs))
    return texts, times


def flashlight_decoder(tokenizer, lm, arpa: Path, options):
    """flashlight-text LexiconDecoder over the LM's words spelt in the model's characters.
    Its KenLM scores are log10, so the LM weight is scaled to natural-log units like the others'."""
    from flashlight.lib.text.decoder import (
        CriterionType,
        KenLM,
        LexiconDecoder,
        LexiconDecoderOptions,
        SmearingMode,
        Trie,
    )
    from flashlight.lib.text.dictionary import Dictionary
    words = Dictionary()
    for w in lm.vocab:
        words.add_entry(w)
    kenlm = KenLM(str(arpa), words)
    sil = tokenizer.encode("a b")[1]  # the space token separates words
    trie = Trie(tokenizer.vocab_size, sil)
    start = kenlm.start(False)
    for w in lm.vocab:
        if w.startswith("<") or tokenizer.unknown_chars(w):
            continue
        trie.insert(tokenizer.encode(w), words.get_index(w), kenlm.score(start, words.get_index(w))[1])
    trie.smear(SmearingMode.MAX)
    opts = LexiconDecoderOptions(beam_size=options["beam"], beam_size_token=tokenizer.vocab_size,
                                 beam_threshold=options["prune"], lm_weight=options["alpha"] * math.log(10),
                                 word_score=options["beta"], unk_score=float("-inf"), sil_score=0.0,
                                 log_add=True, criterion_type=CriterionType.CTC)
    decoder = LexiconDecoder(opts, trie, kenlm, sil, 0, words.get_index("<unk>"), [], False)

    def decode(lp):
        lp = np.ascontiguousarray(lp, dtype=np.float32)
        best = decoder.decode(lp.ctypes.data, lp.shape[0], lp.shape[1])[0]
        return " ".join(words.get_entry(i) for i in best.words if i >= 0)
    return decode


def run_pyctcdecode(python: Path, tokenizer, log_probs, options, beams, workdir: Path) -> dict | None:
    if not python.exists():
        print(f"pyctcdecode: {python} not found; skipped (see the module docstring)", file=sys.stderr)
        return None
    from vocable.lm import load_lm, write_arpa
    arpa = workdir / "lm.arpa"
    write_arpa(load_lm(LM_PATH), arpa)
    np.savez(workdir / "logits.npz", **{f"u{i}": lp for i, lp in enumerate(log_probs)})
    labels = [""] + [tokenizer.token_text(i) for i in range(1, tokenizer.vocab_size)]
    cfg = {"logits": str(workdir / "logits.npz"), "labels": labels, "lm": str(arpa), "beams": list(beams),
           "repeats": REPEATS, "out": str(workdir / "pyctc.json"), **options}
    (workdir / "cfg.json").write_text(json.dumps(cfg))
    (workdir / "worker.py").write_text(PYCTC_WORKER)
    done = subprocess.run([str(python), str(workdir / "worker.py"), str(workdir / "cfg.json")],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        print("pyctcdecode failed:\n" + done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads((workdir / "pyctc.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="an English .vocable/.onnx model (default: the bundled one if English)")
    parser.add_argument("--manifest", type=Path, default=DEV_MANIFEST)
    parser.add_argument("--simulate", action="store_true", help="simulated acoustic model (no audio)")
    parser.add_argument("--limit", type=int, default=200, help="utterances (0 = all)")
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--word-bonus", type=float, default=1.0)
    parser.add_argument("--flashlight-word-score", type=float, default=-1.0,
                        help="flashlight's word score (best of 1, -1, -3, -5 on the simulated data)")
    parser.add_argument("--timestamps-model", help="also measure word-time errors and the phrase grammar "
                        "with this digits model (e.g. fsdd-digits)")
    parser.add_argument("--grid", action="store_true", help="also try LM weights and word bonuses (beam 16)")
    parser.add_argument("--pyctcdecode-python", type=Path, default=PYCTC_PYTHON)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "decoding.json")
    args = parser.parse_args()
    if args.simulate and (args.model or args.manifest != DEV_MANIFEST):
        parser.error("--simulate spells the dev prompts with a simulated model: --model and --manifest are not used")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from vocable.decoding import (
        BEAM_PRUNE,
        TOKEN_MIN_LOGP,
        UNK_PENALTY,
        BeamSearchDecoder,
        DecodingOptions,
        greedy_decode,
    )
    from vocable.evaluate import wer
    from vocable.lm import load_lm, write_arpa
    from vocable.tokenizer import CharTokenizer

    info = machine_info()
    model_ms = None
    if not args.simulate and (args.model or _bundled_english()):
        tokenizer, log_probs, refs, model_s, model_path = model_log_probs(args.model or "default", args.manifest,
                                                                        args.limit)
        model_ms = model_s * 1000
        source = f"model {model_path} on {args.manifest.name} ({len(refs)} utterances)"
    else:
        tokenizer = CharTokenizer(list(" 'abcdefghijklmnopqrstuvwxyz"))
        rng = np.random.default_rng(0)
        refs = load_references()[:args.limit or None]
        log_probs = [simulate(r, tokenizer, rng) for r in refs]
        source = (f"SIMULATED acoustic model (~8 % letters confused) spelling the {len(refs)} prompts of "
                  f"{DEV_MANIFEST.name if DEV_MANIFEST.exists() else 'built-in sentences'}")
    audio_s = sum(len(lp) for lp in log_probs) * 0.04
    lm = load_lm(LM_PATH)
    opts = {"alpha": args.lm_weight, "beta": args.word_bonus, "unk": UNK_PENALTY, "prune": BEAM_PRUNE,
            "min_logp": TOKEN_MIN_LOGP}
    rows = {}

    def record(name, texts, times):
        rows[name] = {"wer": wer(refs, texts), "ms_per_utt": 1000 * statistics.mean(times),
                      "rtf": sum(times) / audio_s, "texts": texts}
        print(f"{name:28s} WER {rows[name]['wer']:6.2%}  {rows[name]['ms_per_utt']:7.2f} ms/utt", file=sys.stderr)

    record("greedy", *time_decoder(lambda lp: greedy_decode(lp, tokenizer, 0.04).text, log_probs))
    for beam in BEAMS:
        decoder = BeamSearchDecoder(tokenizer, lm, DecodingOptions(beam_size=beam, lm_weight=args.lm_weight,
                                                                    word_bonus=args.word_bonus))
        record(f"vocable beam {beam}", *time_decoder(lambda lp, d=decoder: d.decode(lp, 0.04).text, log_probs))
    if args.grid:
        for weight in (0.3, 0.5, 0.8, 1.2):
            for bonus in (0.0, 1.0, 2.0):
                decoder = BeamSearchDecoder(tokenizer, lm, DecodingOptions(beam_size=16, lm_weight=weight,
                                                                            word_bonus=bonus))
                texts = [decoder.decode(lp, 0.04).text for lp in log_probs]
                print(f"grid: LM weight {weight} word bonus {bonus}: WER {wer(refs, texts):.2%}", file=sys.stderr)
    no_lm = BeamSearchDecoder(tokenizer, None, DecodingOptions(beam_size=16))
    record("vocable beam 16, no LM", *time_decoder(lambda lp: no_lm.decode(lp, 0.04).text, log_probs))
    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "lm.arpa"
        write_arpa(lm, arpa)
        for beam in BEAMS:
            try:
                decode = flashlight_decoder(tokenizer, lm, arpa, {**opts, "beam": beam,
                                                                  "beta": args.flashlight_word_score})
            except ImportError:
                print("flashlight-text not installed; skipped", file=sys.stderr)
                break
            record(f"flashlight lexicon beam {beam}", *time_decoder(decode, log_probs))
        pyctc = run_pyctcdecode(args.pyctcdecode_python, tokenizer, log_probs, opts, BEAMS, Path(tmp))
    if pyctc:
        for beam in BEAMS:
            record(f"pyctcdecode beam {beam}", pyctc[str(beam)]["texts"], pyctc[str(beam)]["times"])
            ours = rows[f"vocable beam {beam}"]["texts"]
            same = sum(a == b for a, b in zip(ours, pyctc[str(beam)]["texts"]))
            rows[f"pyctcdecode beam {beam}"]["same_as_vocable"] = same / len(refs)

    lines = ["# Decoding benchmark\n", f"Machine: {describe_machine(info)}; one thread.  ",
             f"Data: {source}; {audio_s / 60:.1f} min of audio.  ",
             f"LM: {LM_PATH.name} ({len(lm)} n-grams), LM weight {args.lm_weight}, word bonus {args.word_bonus}.  "]
    if model_ms is not None:
        lines.append(f"Acoustic model: {model_ms:.1f} ms per utterance (one thread) for comparison.  ")
    lines += ["", "| decoder | WER | ms / utterance | RTF | same text as vocable |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        same = f"{row['same_as_vocable']:.1%}" if "same_as_vocable" in row else ""
        lines.append(f"| {name} | {row['wer']:.2%} | {row['ms_per_utt']:.2f} | {row['rtf']:.4f} | {same} |")
    if args.timestamps_model:
        lines += ["", f"Word times (model {args.timestamps_model}, FSDD fixtures, machine as above):", ""]
        lines += timestamp_table(args.timestamps_model)
        lines += [""] + phrase_table(args.timestamps_model)
    table = "\n".join(lines)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": info, "data": source, "rows": rows}, indent=1))
    args.output.with_suffix(".md").write_text(table + "\n")


def timestamp_table(model: str) -> list[str]:
    """Word-edge error on FSDD fixture digits concatenated with 0.5 s gaps (clip edges = truth),
    with the VAD path of Recognizer.transcribe; CTC spike times vs refined by the signal level."""
    import vocable
    from vocable import decoding
    from vocable.audio import load_audio
    from vocable.decoding import DecodingOptions
    fixtures = ROOT / "tests" / "fixtures" / "fsdd"
    recognizer = vocable.load(model)
    rng = np.random.default_rng(0)
    lines = ["| clips | word edges | words found | mean abs start error | mean abs end error | max error |",
             "|---|---|---|---|---|---|"]
    for speakers in (("theo", "nicolas"), ("theo", "nicolas", "jackson")):
        names = [f"{d}_{s}_0" for s in speakers for d in range(10)]
        parts, truth, t = [], [], 0.0
        for name in names:
            audio = load_audio(fixtures / f"{name}.flac")
            parts += [audio, (rng.standard_normal(8000) * 1e-4).astype(np.float32)]
            truth.append((t, t + len(audio) / 16000))
            t += len(audio) / 16000 + 0.5
        audio = np.concatenate(parts)
        refine = decoding.refine_word_times
        for label, refiner in (("CTC spikes", lambda words, *a, **k: words), ("refined by level", refine)):
            decoding.refine_word_times = refiner
            recognizer._decoders.clear()
            words = recognizer.transcribe(audio, options=DecodingOptions(vad=True)).words
            decoding.refine_word_times = refine
            errors = np.array([(w.start - a, w.end - b) for a, b in truth for w in words if w.start < b and w.end > a])
            lines.append(f"| {len(names)} ({', '.join(speakers)}) | {label} | {len(errors)} | "
                         f"{np.abs(errors[:, 0]).mean() * 1000:.0f} ms | {np.abs(errors[:, 1]).mean() * 1000:.0f} ms | "
                         f"{np.abs(errors).max() * 1000:.0f} ms |")
    recognizer._decoders.clear()
    return lines


def phrase_table(model: str) -> list[str]:
    """Phrase grammar on FSDD test (every 2nd clip): phrases "zero".."four"; clips of 0-4 should be
    accepted as themselves, clips of 5-9 rejected. Acceptance at several confidence thresholds."""
    import vocable
    from vocable.audio import load_audio
    from vocable.data.manifest import read_dataset
    from vocable.decoding import DecodingOptions, match_phrases
    if not (SHARED / "fsdd" / "test").exists():
        return ["(FSDD test data not available)"]
    recognizer = vocable.load(model)
    phrases = ["zero", "one", "two", "three", "four"]
    matches = []
    for u in read_dataset(SHARED / "fsdd" / "test")[::2]:
        m = match_phrases(recognizer.log_probs(load_audio(u.audio)), recognizer.tokenizer,
                          DecodingOptions(phrases=phrases))
        matches.append((u.text.lower(), m))
    listed = [(ref, m) for ref, m in matches if ref in phrases]
    other = [m for ref, m in matches if ref not in phrases]
    lines = [f"Phrase grammar (model {model}, FSDD test every 2nd clip: {len(listed)} listed, {len(other)} not):",
             "", "| min confidence | listed words accepted as themselves | listed accepted wrongly | "
             "unlisted words accepted |", "|---|---|---|---|"]
    for threshold in (0.2, 0.4, 0.6, 0.8):
        right = np.mean([m.confidence >= threshold and m.phrase == ref for ref, m in listed])
        wrong = np.mean([m.confidence >= threshold and m.phrase != ref for ref, m in listed])
        lines.append(f"| {threshold} | {right:.1%} | {wrong:.1%} | {np.mean([m.confidence >= threshold for m in other]):.1%} |")
    return lines


def _bundled_english() -> bool:
    """True when the bundled default model spells English (it has all 26 letters)."""
    try:
        import vocable
        tokenizer = vocable.load("default").tokenizer
    except Exception:
        return False
    return not tokenizer.unknown_chars("the quick brown fox jumps over a lazy dog")


if __name__ == "__main__":
    run_script(main)
