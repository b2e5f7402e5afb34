"""Synthetic speech: render sentences with every installed offline text-to-speech voice.

`vocable data synth --text FILE --hours H -o OUT` writes OUT/audio/NNNN/ID.flac (16 kHz; .ogg with
--format opus) and OUT/manifest.jsonl, one row per utterance with speaker = voice + variant and the
voice's engine and licence. Each utterance draws its own speaking rate, pitch and level. The transcript is the
normalised sentence, and the engine is given that same normalised text (numbers spelt out,
abbreviations expanded, punctuation that shapes prosody kept), so what is said matches the text.

The work is a fixed, seeded sequence of (sentence, voice, prosody) items; rendering stops when
the measured audio reaches H hours. Re-running skips items already in the manifest (resumable).
"""

from __future__ import annotations

import fnmatch
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unicodedata
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..audio import SAMPLE_RATE, load_audio
from ..errors import DataError, VocableError, VocableWarning, warn
from ..files import looks_like_text, parse_json, written_atomically
from ..tokenizer import normalize_basic, normalize_english
from .accent import accent_phonemes, accent_spelling

SPEED_RANGE = (0.85, 1.2)  # speaking-rate multiplier drawn per utterance
PITCH_RANGE = (0.85, 1.2)  # mean-F0 multiplier drawn per utterance
PEAK_DBFS = (-20.0, -1.0)  # output peak level drawn per utterance
MAX_WORDS = 35  # longer sentences (> ~15 s of speech) are skipped
SILENCE_DB = 45.0  # frames this far below the loudest frame count as silence when trimming
SILENCE_MARGIN_S = 0.15  # silence kept before and after the speech
SYNTH_TIMEOUT_S = 120  # one engine call
CHUNK_ITEMS = 8  # items of one voice rendered by one worker task (festival: one process per chunk)
ROUND_ITEMS = 512  # most items scheduled before re-checking the hours rendered
GUESS_SECONDS = 4.0  # mean utterance duration assumed before any is measured
ESPEAK_RATE_WPM = 175  # espeak-ng default speaking rate (words per minute)
ESPEAK_PITCH = 50  # espeak-ng default pitch (0-99)
FLITE_DIPHONE_F0_HZ = 95.0  # mean F0 of flite's kal voices
FESTIVAL_DIPHONE_F0_HZ = 105.0  # mean F0 of festival's kal/ked diphone voices
# Characters a sentence may have before normalisation; others (symbols, foreign letters) would
# be spoken in ways the transcript cannot follow, so such sentences are skipped.
SPEAKABLE = re.compile(r"[a-z0-9 .,;:!?'\"()\-]*")
PROSODY_MARK = "qzxpause"  # stands for a comma through normalisation, then becomes "," again
# espeak-ng variants that are effects rather than voices (robots, whispers, croaks).
ESPEAK_NOVELTY = re.compile(r"robo|demonic|croak|whisper|announcer|tweaky|^fast$|\s", re.IGNORECASE)
FLITE_LIMITED_DOMAIN = {"awb_time"}  # says the time only
FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices",)

ESPEAK_LICENCE = "GPL-3.0-or-later (espeak-ng engine and voice data)"
FLITE_LICENCE = "CMU Flite licence (BSD-like: use, modify, redistribute with notice)"
FESTIVAL_LICENCES = {  # voice → (licence, Debian package whose copyright file says so)
    "kal_diphone": ("Festvox/CSTR licence (BSD-like, Black & Lenzo 1998)", "festvox-kallpc16k"),
    "ked_diphone": ("Festvox/CSTR licence (BSD-like)", "festvox-kdlpc16k"),
    "cmu_us_slt_arctic_hts": ("EST-2000/EST-2003 (CMU, BSD-like) + BSD-3-Clause (HTS)", "festvox-us-slt-hts"),
}
PIPER_LICENCE = "piper engine GPL-3.0; voice: see the model card next to the .onnx file"


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak-ng" | "flite" | "festival" | "piper"
    name: str  # the engine's voice name (piper: path of the .onnx voice)
    licence: str
    copyright: str = ""  # file that states the licence
    variants: tuple[str, ...] = ()  # espeak-ng variants, one drawn per utterance

    @property
    def id(self) -> str:
        return f"{self.engine}:{Path(self.name).stem if self.engine == 'piper' else self.name}"


@dataclass
class Item:
    """One utterance to render."""
    index: int
    id: str
    voice: Voice
    variant: str
    spoken: str  # what the engine is given
    text: str  # the transcript
    speed: float
    pitch: float
    peak_db: float
    audio: str  # output path relative to the output folder
    accent: float = 0.0  # non-native pronunciation strength, 0-1 (see accent.py)

    @property
    def speaker(self) -> str:
        return self.voice.id + (f"+{self.variant}" if self.variant else "")


# ---------------------------------------------------------------------------------------------
# Voices


def list_voices(piper_models: list[str] = (), language: str = "en") -> list[Voice]:
    """Every usable voice installed for `language` (an ISO 639-1 code): for English espeak-ng's accents,
    flite and festival; for other languages espeak-ng's voices of it (flite and festival speak English
    only); and the piper models given, which are taken to speak it."""
    english = flite_voices() + festival_voices() if language == "en" else []
    return espeak_voices(language) + english + [piper_voice(p) for p in piper_models]


def espeak_voices(language: str = "en") -> list[Voice]:
    if not shutil.which("espeak-ng"):
        return []
    listing = _run(["espeak-ng", f"--voices={language}"])
    data = re.search(r"Data at:\s*(\S+)", _run(["espeak-ng", "--version"]))
    variant_dir = Path(data.group(1) if data else "/usr/share/espeak-ng-data") / "voices" / "!v"
    variants = tuple(sorted(p.name for p in variant_dir.glob("*") if p.is_file() and not ESPEAK_NOVELTY.search(p.name)))
    names = []
    for line in listing.splitlines()[1:]:
        parts = line.split()
        # Columns: Pty Language Age/Gender VoiceName File [Other languages]; mbrola ("mb/") voices need
        # the non-free mbrola program and are left out.
        if len(parts) >= 5 and parts[1].split("-")[0] == language and not parts[4].startswith("mb/") \
                and parts[1] not in names:
            names.append(parts[1])
    return [Voice("espeak-ng", n, ESPEAK_LICENCE, "/usr/share/doc/espeak-ng-data/copyright", variants) for n in names]


def flite_voices() -> list[Voice]:
    if not shutil.which("flite"):
        return []
    listing = _run(["flite", "-lv"]).split(":", 1)[-1].split()
    return [Voice("flite", n, FLITE_LICENCE, "/usr/share/doc/libflite1/copyright")
            for n in listing if n not in FLITE_LIMITED_DOMAIN]


def festival_voices() -> list[Voice]:
    if not shutil.which("festival"):
        return []
    found = sorted({p.name for d in FESTIVAL_VOICE_DIRS for p in Path(d).glob("*/*") if (p / "festvox").is_dir()})
    voices = []
    for name in found:
        licence, package = FESTIVAL_LICENCES.get(name, ("see the voice's COPYING file", "festival"))
        voices.append(Voice("festival", name, licence, f"/usr/share/doc/{package}/copyright"))
    return voices


def piper_voice(model: str) -> Voice:
    if not Path(model).is_file():
        raise DataError(f"{model}: piper voice file not found")
    if not shutil.which("piper"):
        raise DataError("piper voices need the piper program (pip install piper-tts)")
    card = Path(model).with_name("MODEL_CARD")
    return Voice("piper", str(Path(model).resolve()), PIPER_LICENCE, str(card) if card.exists() else "")


def select_voices(voices: list[Voice], patterns: list[str] | None) -> list[Voice]:
    """Voices matching any pattern: an engine ("flite"), an id ("flite:slt") or a glob ("espeak-ng:en-gb*")."""
    if not patterns:
        return voices
    chosen = [v for v in voices if any(p == v.engine or fnmatch.fnmatch(v.id, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(p == v.engine or fnmatch.fnmatch(v.id, p) for v in voices)]
    if unmatched:
        raise DataError(f"no installed voice matches {unmatched}; see `vocable data voices` "
                        f"(installed: {', '.join(v.id for v in voices) or 'none'})")
    return chosen


# ---------------------------------------------------------------------------------------------
# Text


def speakable(sentence: str, language: str = "en") -> tuple[str, str] | str:
    """(text for the engine, transcript), or the reason the sentence is skipped.

    The engine gets the normalised words with commas and the final ?/!/. restored, so it
    phrases naturally but cannot expand anything differently from the transcript. English is
    normalised by normalize_english (numbers spelt out); other languages by normalize_basic, which
    cannot spell numbers or symbols, so sentences with them are skipped.
    """
    folded = unicodedata.normalize("NFKC", sentence)
    folded = folded.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    folded = folded.replace("—", ", ").replace("–", "-").strip()
    if not folded:
        return "empty"
    if language != "en":
        if any(c.isdigit() or unicodedata.category(c).startswith("S") or c in "%#@&*" for c in folded):
            return "digits or symbols"  # spoken as words the basic normaliser cannot write
    elif not SPEAKABLE.fullmatch(folded.lower()):
        return "other characters"
    if re.search(r"\b[A-Z]{2,}\b", folded) and re.search(r"[a-z]", folded):
        return "acronym"  # an engine may spell "DNA" out or read it as a word; the transcript cannot know
    marked = re.sub(r"[,;:]+(?=\s|$)", f" {PROSODY_MARK} ", folded)
    words = (normalize_english if language == "en" else normalize_basic)(marked).split()
    text_words = [w for w in words if w != PROSODY_MARK]
    if not text_words:
        return "empty"
    if len(text_words) > MAX_WORDS:
        return "too long"
    spoken = " ".join(words).replace(f" {PROSODY_MARK}", ",").replace(PROSODY_MARK, "").strip(" ,")
    end = folded.rstrip("\"')")[-1:]
    return spoken + (end if end in "?!." else "."), " ".join(text_words)


def read_sentences(paths: list[str], language: str = "en") -> tuple[list[tuple[str, str]], Counter]:
    """Unique speakable sentences from text files (one sentence per line), and skip counts by reason."""
    sentences, seen, skipped = [], set(), Counter()
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such text file")
        if not looks_like_text(path):
            raise DataError(f"{path}: not UTF-8 text (one sentence per line)")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                result = speakable(line, language)
                if isinstance(result, str):
                    skipped[result] += 1
                elif result[1] in seen:
                    skipped["duplicate"] += 1
                else:
                    seen.add(result[1])
                    sentences.append(result)
    return sentences, skipped


# ---------------------------------------------------------------------------------------------
# The plan: item i of an endless, seeded sequence


def plan_item(index: int, sentences: list[tuple[str, str]], order: np.ndarray, voices: list[Voice],
              seed: int, fmt: str, accent: float = 0.0) -> Item:
    """Item `index`: sentences in a seeded order, cycling; voices in turn, shifted each cycle.

    With `accent` > 0 each item draws a strength in [0, accent] (espeak-ng is given accented
    phonemes, the other engines respelled words); without it the plan, ids included, is what it
    always was.
    """
    cycle, position = divmod(index, len(sentences))
    spoken, text = sentences[order[position]]
    voice = voices[(index + cycle) % len(voices)]
    rng = np.random.default_rng([seed, index])
    variant = str(rng.choice(voice.variants)) if voice.variants else ""
    speed, pitch, peak = rng.uniform(*SPEED_RANGE), rng.uniform(*PITCH_RANGE), rng.uniform(*PEAK_DBFS)
    strength = round(rng.uniform(0, accent), 2) if accent > 0 else 0.0
    slug = re.sub(r"[^A-Za-z0-9]+", "-", voice.id + ("-" + variant if variant else "")).strip("-")
    check = zlib.crc32(f"{voice.id}|{variant}|{spoken}{f'|{strength}' if strength else ''}".encode()) & 0xFFFF
    uid = f"{index:07d}-{slug}-{check:04x}"
    return Item(index, uid, voice, variant, spoken, text, round(speed, 3), round(pitch, 3), round(peak, 1),
                f"audio/{index // 1000:04d}/{uid}.{'ogg' if fmt == 'opus' else 'flac'}", strength)


# ---------------------------------------------------------------------------------------------
# Rendering (runs in worker processes)


def render_chunk(items: list[Item], out_dir: str, fmt: str) -> list[dict]:
    """Render items of one voice; returns manifest rows (or {"id", "error"} for failures)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="vocable-synth-") as tmp:
        raw = [os.path.join(tmp, f"{i}.wav") for i in range(len(items))]
        batch_error = ""
        if items[0].voice.engine == "festival":
            try:
                festival_render(items, raw)
            except VocableError as e:  # utterances it did write before failing are kept
                batch_error = str(e)
        for item, wav in zip(items, raw):
            try:
                if item.voice.engine != "festival":
                    said = synthesize(item, wav)
                elif batch_error and not os.path.isfile(wav):
                    raise DataError(batch_error)
                else:
                    said = engine_input(item)  # what festival_render gave festival (seeded; no engine call)
                rows.append(finish(item, wav, out_dir, fmt, said))
            except VocableError as e:
                rows.append({"id": item.id, "error": f"{item.speaker}: {e}"})
    return rows


def synthesize(item: Item, wav: str) -> str:
    """One engine call writing `wav` (espeak-ng, flite, piper); returns what the engine was given."""
    v, said = item.voice, engine_input(item)
    if v.engine == "espeak-ng":
        pitch = int(np.clip(round(ESPEAK_PITCH * item.pitch), 0, 99))
        _run(["espeak-ng", "-v", f"{v.name}+{item.variant}" if item.variant else v.name,
              "-s", str(round(ESPEAK_RATE_WPM * item.speed)), "-p", str(pitch), "-w", wav, said])
    elif v.engine == "flite":
        # Diphone voices (kal, kal16) take a target mean F0; clustergen voices take an F0 multiplier.
        f0 = (f"int_f0_target_mean={FLITE_DIPHONE_F0_HZ * item.pitch:.1f}" if v.name.startswith("kal")
              else f"f0_shift={item.pitch:.3f}")
        _run(["flite", "-voice", v.name, "--setf", f"duration_stretch={1 / item.speed:.3f}", "--setf", f0,
              "-t", said, "-o", wav])
    elif v.engine == "piper":
        _run(["piper", "--model", v.name, "--output_file", wav, "--length_scale", f"{1 / item.speed:.3f}"],
             stdin=said)
    else:
        raise DataError(f"unknown engine {v.engine!r}")
    return said


def engine_input(item: Item) -> str:
    """What the engine reads: the sentence, or with an accent (accent.py) espeak-ng's phonemes for it
    rewritten, inside espeak-ng's [[ ]], or for the other engines its words respelled."""
    if not item.accent:
        return item.spoken
    rng = np.random.default_rng([item.index, zlib.crc32(item.id.encode())])
    if item.voice.engine != "espeak-ng":
        return accent_spelling(item.spoken, item.accent, rng)
    phonemes = _run(["espeak-ng", "-q", "-x", "-v", item.voice.name, item.spoken])
    return f"[[{accent_phonemes(phonemes, item.accent, rng)}]]"


def festival_render(items: list[Item], wavs: list[str]) -> None:
    """All items (one festival voice) in one festival process: its start-up costs ~0.5-1 s."""
    name = items[0].voice.name
    lines = [f"(voice_{name})"] + (["(set! vocable_hts_params hts_engine_params)"] if name.endswith("_hts") else [])
    for item, wav in zip(items, wavs):
        spoken = engine_input(item).replace("\\", " ").replace('"', " ")
        if name.endswith("_hts"):  # HTS voices: rate via the engine's -r option; pitch stays the voice's own
            lines.append(f"(set! hts_engine_params (append vocable_hts_params (list '(\"-r\" {item.speed:.3f}))))")
        else:
            lines += [f"(Parameter.set 'Duration_Stretch {1 / item.speed:.3f})",
                      f"(set! int_lr_params '((target_f0_mean {FESTIVAL_DIPHONE_F0_HZ * item.pitch:.1f}) "
                      "(target_f0_std 14) (model_f0_mean 170) (model_f0_std 34)))"]
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{spoken}")) "{wav}" \'riff)')
    script = Path(wavs[0]).with_name("synth.scm")
    script.write_text("\n".join(lines) + "\n")
    _run(["festival", "-b", str(script)], timeout=SYNTH_TIMEOUT_S * len(items))


def finish(item: Item, wav: str, out_dir: str, fmt: str, said: str) -> dict:
    """Engine output → trimmed, levelled 16 kHz file in OUT; returns its manifest row.

    An accented row also records what the engine said (accent_fields).
    """
    if not os.path.isfile(wav):
        raise DataError("the engine wrote no audio")
    audio = trim_silence(load_audio(wav))
    peak = float(np.abs(audio).max())
    if peak <= 0:
        raise DataError("the engine wrote silence")
    audio = audio * (10 ** (item.peak_db / 20) / peak)
    path = Path(out_dir) / item.audio
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path) as tmp:  # a killed run never leaves a half-written file under the final name
        if fmt == "opus":
            sf.write(tmp, audio, SAMPLE_RATE, format="OGG", subtype="OPUS")
        else:
            sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return {"id": item.id, "audio": item.audio, "text": item.text, "duration": round(len(audio) / SAMPLE_RATE, 3),
            "speaker": item.speaker, "voice": item.voice.id, "engine": item.voice.engine,
            "licence": item.voice.licence, "spoken": item.spoken, "speed": item.speed, "pitch": item.pitch,
            **(accent_fields(item, said) if item.accent else {})}


def accent_fields(item: Item, said: str) -> dict:
    """An accented row records its strength and what the engine said, so it can be re-heard without
    re-running the seeded rules: espeak-ng's phonemes, or the other engines' respelled words."""
    if item.voice.engine == "espeak-ng":
        return {"accent": item.accent, "phonemes": said.removeprefix("[[").removesuffix("]]")}
    return {"accent": item.accent, "respelled": said}


def trim_silence(audio: np.ndarray, frame: int = SAMPLE_RATE // 100) -> np.ndarray:
    """Cut leading and trailing silence, keeping SILENCE_MARGIN_S of it."""
    frames = len(audio) // frame
    if frames == 0:
        return audio
    energy = np.square(audio[: frames * frame].reshape(frames, frame)).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (-SILENCE_DB / 10))
    if loud.size == 0:  # all silence: kept as it is, for the caller to refuse
        return audio
    margin = int(SILENCE_MARGIN_S * SAMPLE_RATE)
    start = max(0, loud[0] * frame - margin)
    end = min(len(audio), (loud[-1] + 1) * frame + margin)
    return audio[start:end]


def _run(command: list[str], stdin: str | None = None, timeout: float = SYNTH_TIMEOUT_S) -> str:
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataError(f"{command[0]} failed: {e}") from None
    if done.returncode != 0:
        raise DataError(f"{command[0]} exited with {done.returncode}: {' '.join(done.stderr.split())[:200]}")
    return done.stdout


# ---------------------------------------------------------------------------------------------
# Driver


@dataclass
class SynthResult:
    utterances: int  # in the manifest now
    new: int  # rendered by this run
    failed: int
    hours: float
    voices: int
    skipped_sentences: dict
    errors: list


def synthesize_corpus(text_files: list[str], hours: float, out_dir: str, voices: list[Voice],
                      jobs: int = 1, seed: int = 0, fmt: str = "flac", show_progress: bool = True,
                      accent: float = 0.0, language: str = "en") -> SynthResult:
    """Render until OUT/manifest.jsonl holds `hours` of audio; resumes what a previous run left."""
    if not 0 < hours < math.inf:  # also refuses nan
        raise DataError(f"--hours must be a positive number, got {hours}")
    if not 0.0 <= accent <= 1.0:
        raise DataError(f"--accent must be between 0 and 1, got {accent}")
    if accent and language != "en":
        raise DataError(f"--accent: the simulated accent is of English (its rules rewrite English sounds); "
                        f"not for --language {language}")
    if fmt not in ("flac", "opus"):
        raise DataError(f"--format must be flac or opus, got {fmt!r}")
    if not voices:
        raise DataError("no text-to-speech voices installed" + (f" for --language {language} (espeak-ng's "
                        f"voices of it: `espeak-ng --voices={language}`)" if language != "en" else "")
                        + "; run scripts/install-voices.sh")
    sentences, skipped = read_sentences(text_files, language)
    if not sentences:
        reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.most_common())
        raise DataError(f"{', '.join(map(str, text_files))}: no speakable sentences"
                        + (f" (skipped: {reasons})" if reasons else " (no lines)"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    done = continued_corpus(manifest, out, voices)
    seconds = sum(r["duration"] for r in done.values())
    target = hours * 3600
    order = np.random.default_rng([seed, 0]).permutation(len(sentences))
    limit = len(sentences) * len(voices)  # beyond this, (sentence, voice) pairs repeat
    new, errors, index = 0, [], 0
    bar = tqdm(total=round(target), initial=min(round(seconds), round(target)), unit="audio-s",
               desc="synthesising", disable=not show_progress, dynamic_ncols=True)
    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with open(manifest, "a", encoding="utf-8") as log, context.Pool(max(1, jobs), _ignore_interrupts) as pool:
        while seconds < target and index < limit:
            mean = seconds / len(done) if done else GUESS_SECONDS
            wanted = min(ROUND_ITEMS, max(jobs, math.ceil((target - seconds) / mean)))
            round_items = []
            while len(round_items) < wanted and index < limit:
                item = plan_item(index, sentences, order, voices, seed, fmt, accent)
                index += 1
                if item.id not in done:
                    round_items.append(item)
            for rows in pool.imap_unordered(_render_task, [(c, str(out), fmt) for c in chunks(round_items)]):
                for row in rows:
                    if "error" in row:
                        errors.append(row["error"])
                        continue
                    log.write(json.dumps(row, ensure_ascii=False) + "\n")
                    done[row["id"]] = row
                    seconds += row["duration"]
                    new += 1
                    bar.update(min(round(row["duration"]), max(0, round(target) - bar.n)))
                log.flush()
            if errors and not new and len(errors) >= len(round_items):
                raise DataError(f"every utterance failed; first error: {errors[0]}")
    bar.close()
    return SynthResult(len(done), new, len(errors), seconds / 3600, len(voices), dict(skipped), errors[:10])


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C is the parent's to handle (it ends the pool); workers printed stray tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _render_task(args) -> list[dict]:
    return render_chunk(*args)


def chunks(items: list[Item]) -> list[list[Item]]:
    """Items grouped by voice, CHUNK_ITEMS at a time, so a festival chunk shares one process."""
    by_voice: dict[str, list[Item]] = {}
    for item in items:
        by_voice.setdefault(item.voice.id, []).append(item)
    return [group[i:i + CHUNK_ITEMS] for group in by_voice.values() for i in range(0, len(group), CHUNK_ITEMS)]


def continued_corpus(manifest: Path, out: Path, voices: list[Voice]) -> dict[str, dict]:
    """The rows a previous run left in `manifest` whose audio exists (id → row), once it is clear the run
    may continue: the same voices, and rows whose audio is missing said before they are rendered again."""
    done, missing, unreadable = read_done(manifest, out)
    others = sorted({row.get("voice") for row in [*done.values(), *missing]} - {voice.id for voice in voices} - {None})
    if others:  # continuing would mix them into a corpus said to be of the voices chosen now
        raise DataError(f"{out}: holds speech of voices not chosen now ({', '.join(others[:4])}"
                        f"{', ...' if len(others) > 4 else ''}): give the same --voices to continue it, "
                        f"or synthesise into another folder")
    if missing:
        warn(f"{manifest}: {len(missing)} rows whose audio is missing (such as {missing[0].get('audio')}) are "
             f"rendered again", VocableWarning)
    if unreadable or missing:  # rows appended from here must follow whole lines of rows that stand
        with written_atomically(manifest) as tmp:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done.values()), encoding="utf-8")
    return done


def read_done(manifest: Path, out: Path) -> tuple[dict[str, dict], list[dict], int]:
    """What a previous run left, read without changing anything: (id → row of the rows whose audio exists,
    the rows whose audio is missing, the number of lines that are no row, such as one cut short by a kill)."""
    if not manifest.exists():
        return {}, [], 0
    done, missing, unreadable = {}, [], 0
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            try:
                row = parse_json(line)
            except ValueError:
                row = None
            if not (isinstance(row, dict) and isinstance(row.get("id"), str)):
                unreadable += 1
                continue
            if (out / str(row.get("audio", ""))).is_file():
                done[row["id"]] = row
            else:
                missing.append(row)
    return done, missing, unreadable


def describe_voices(voices: list[Voice]) -> list[dict]:
    """Rows for `vocable data voices`."""
    return [{**{k: v for k, v in asdict(voice).items() if k != "variants"}, "id": voice.id,
             "variants": len(voice.variants)} for voice in voices]


__all__ = ["Voice", "Item", "list_voices", "select_voices", "speakable", "read_sentences", "plan_item",
           "synthesize_corpus", "describe_voices"]
