"""Train/dev splits by speaker, balanced by gender and age band, optionally also by sentence.

Whole speakers go to dev: a model must be judged on voices it never heard. When the manifest
has gender or age, dev speakers are drawn from each (gender, age band) group in proportion to its
size, so dev looks like train. With `by_sentence`, training utterances whose sentence also occurs
in dev are dropped too, so dev sentences are unseen as well.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from ..errors import DataError
from ..tokenizer import normalize_basic
from .manifest import Utterance, plural

AGE_EDGES = (13, 18, 60)  # years: child < 13, teen 13-17, adult 18-59, 60+ (evaluate's default bands too)
AGE_NAMES = ("child", "teen", "adult", "60+")
# Common Voice gives age as a decade word.
AGE_WORDS = {"teens": "teen", "twenties": "adult", "thirties": "adult", "fourties": "adult", "forties": "adult",
             "fifties": "adult", "sixties": "60+", "seventies": "60+", "eighties": "60+", "nineties": "60+"}
GENDER_WORDS = {"m": "m", "male": "m", "male_masculine": "m", "f": "f", "female": "f", "female_feminine": "f"}


@dataclass
class Split:
    train: list[Utterance]
    dev: list[Utterance]
    dev_speakers: list[str]
    dropped_for_sentences: int  # training utterances removed because dev has their sentence
    groups: dict  # (gender, age band) → (train speakers, dev speakers)


def age_band(age) -> str:
    if age in (None, ""):
        return ""
    try:
        years = float(age)
    except (TypeError, ValueError):
        return AGE_WORDS.get(str(age).lower(), str(age).lower())
    if math.isnan(years):  # "nan" in a CSV: unknown, not a child (NaN compares below every edge)
        return ""
    return AGE_NAMES[sum(years >= edge for edge in AGE_EDGES)]


def gender_group(gender) -> str:
    """One spelling per gender whatever the corpus wrote: LibriSpeech "F", Common Voice "female_feminine",
    FSDD "female" → "f"; other values lower-cased as they are."""
    value = str(gender).lower()
    return GENDER_WORDS.get(value, value)


def speaker_group(utterances: list[Utterance]) -> tuple[str, str]:
    """(gender, age band) of a speaker: the most common value over their utterances."""
    genders = Counter(gender_group(u.meta.get("gender", "")) for u in utterances)
    bands = Counter(age_band(u.meta.get("age")) for u in utterances)
    return genders.most_common(1)[0][0], bands.most_common(1)[0][0]


def split_by_speaker(utterances: list[Utterance], dev_speakers: int | None = None,
                     dev_fraction: float | None = None, seed: int = 0, by_sentence: bool = False) -> Split:
    """Hold out `dev_speakers` speakers (or `dev_fraction` of them), balanced across groups.

    Utterances without a speaker id each count as their own speaker.
    """
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in utterances:
        by_speaker[u.speaker or f"utt:{u.id}"].append(u)
    total = len(by_speaker)
    if (dev_speakers is None) == (dev_fraction is None):
        raise DataError("give exactly one of --dev-speakers N or --dev-fraction F")
    if dev_speakers is not None and dev_speakers < 1:
        raise DataError(f"--dev-speakers: expected at least 1 speaker, got {dev_speakers}")
    if dev_fraction is not None and not 0 < dev_fraction < 1:  # also refuses nan
        raise DataError(f"--dev-fraction: expected a fraction between 0 and 1, got {dev_fraction}")
    wanted = dev_speakers if dev_speakers is not None else round(dev_fraction * total)
    if not 1 <= wanted < total:
        raise DataError(f"cannot hold out {wanted} of {plural(total, 'speaker')}: need at least 1 for dev "
                        f"and 1 for train")

    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for speaker in sorted(by_speaker):
        groups[speaker_group(by_speaker[speaker])].append(speaker)
    rng = random.Random(seed)
    quotas = allocate(wanted, {g: len(s) for g, s in groups.items()}, rng)
    dev_set = set()
    for group in sorted(groups):
        dev_set.update(rng.sample(groups[group], quotas[group]))

    dev = [u for s in sorted(dev_set) for u in by_speaker[s]]
    train = [u for s in sorted(by_speaker) if s not in dev_set for u in by_speaker[s]]
    dropped = 0
    if by_sentence:
        dev_texts = {normalize_basic(u.text) for u in dev} - {""}  # as find_leaks: no text is no sentence
        kept = [u for u in train if normalize_basic(u.text) not in dev_texts]
        dropped, train = len(train) - len(kept), kept
        if not train:
            raise DataError("every training sentence also occurs in dev; --by-sentence leaves no training data")
    summary = {g: (len(s) - quotas[g], quotas[g]) for g, s in sorted(groups.items())}
    return Split(train, dev, sorted(dev_set), dropped, summary)


def allocate(total: int, sizes: dict, rng: random.Random) -> dict:
    """Split `total` across groups in proportion to `sizes` (largest remainder; seeded tie-breaks)."""
    population = sum(sizes.values())
    exact = {g: total * n / population for g, n in sizes.items()}
    quotas = {g: min(sizes[g], math.floor(q)) for g, q in exact.items()}
    order = sorted(sizes, key=lambda g: (-(exact[g] - quotas[g]), rng.random()))
    while sum(quotas.values()) < total:
        for g in order:
            if sum(quotas.values()) < total and quotas[g] < sizes[g]:
                quotas[g] += 1
    return quotas


def describe_split(split: Split) -> list[str]:
    lines = []
    for name, utts in (("train", split.train), ("dev", split.dev)):
        hours = sum(u.duration for u in utts) / 3600
        speakers = len({u.speaker or u.id for u in utts})
        lines.append(f"{name}: {plural(len(utts), 'utterance')}, {hours:.2f} h, {plural(speakers, 'speaker')}")
    if len(split.groups) > 1 or any(any(k) for k in split.groups):
        parts = [f"{'/'.join(x or '?' for x in group)} {train}+{dev}" for group, (train, dev) in split.groups.items()]
        lines.append("speakers per (gender/age) group, train+dev: " + ", ".join(parts))
    if split.dropped_for_sentences:
        lines.append(f"dropped {plural(split.dropped_for_sentences, 'training utterance')} whose sentence is in dev")
    anonymous = sum(not u.speaker for u in split.train + split.dev)
    if anonymous:
        lines.append(f"warning: {anonymous} utterances have no speaker, so each counted as its own: a speaker "
                     f"among them may be on both sides (give 'speaker' in the manifest)")
    return lines
