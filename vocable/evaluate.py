"""Evaluation: word and character error rates of a model on a dataset, with honest uncertainty.

One WER hides who the model fails. This module scores every utterance, then breaks the result down
by speaker group (gender, age band, accent, any manifest field) with bootstrap confidence intervals
that resample SPEAKERS, not utterances (utterances of one speaker are not independent), tests whether
the gap between the best and worst group is larger than chance, re-runs the set under added noise and
simulated rooms, and lists the most frequent word errors. `compare_results` turns "B is better than A"
into a difference with a confidence interval. Plots and the HTML page live in report.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
from tqdm import tqdm

from .audio import SAMPLE_RATE, load_audio
from .data.manifest import Utterance
from .data.split import AGE_EDGES, AGE_NAMES, gender_group
from .errors import ConfigError, DataError, VocableError
from .files import parse_json
from .tokenizer import NORMALIZERS, normalize_basic

LENGTH_EDGES = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds: utterance length buckets for "WER by length"
UNKNOWN = "unknown"  # group of utterances that lack the field
LENGTH_FIELD = "length"  # pseudo-field: the utterance's duration bucket
TOP_ERRORS = 20  # most frequent substitutions / deletions / insertions to list
WORST_UTTERANCES = 20
FEW_SPEAKERS = 10  # below this many speakers an interval says little about other speakers
EXACT_FLIPS = 16  # clusters up to which the paired test enumerates all 2^n sign flips
MIN_GROUP_WORDS = 10  # reference words: smaller groups are listed but not picked as best/worst for the gap
NO_SPEAKERS_NOTE = ("the data has no speaker labels: intervals treat utterances as independent (too narrow when "
                    "one person spoke several) and say nothing about other speakers")


# ---------------------------------------------------------------- error counting

def edit_distance(ref: list, hyp: list) -> int:
    """Levenshtein distance between two sequences (substitutions, deletions, insertions cost 1)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def align(ref: list, hyp: list) -> list[tuple[str, object, object]]:
    """Minimum-edit alignment as a list of (op, ref_item, hyp_item), op in "ok", "sub", "del", "ins".

    Deletions have hyp_item None, insertions ref_item None. The number of non-"ok" ops equals
    edit_distance(ref, hyp); among equally cheap paths the backtrace prefers matches/substitutions.
    """
    rows, cols = len(ref) + 1, len(hyp) + 1
    cost = np.zeros((rows, cols), dtype=np.int32)
    cost[:, 0], cost[0, :] = np.arange(rows), np.arange(cols)
    for i in range(1, rows):
        for j in range(1, cols):
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1, cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    ops, i, j = [], len(ref), len(hyp)
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append(("ok" if ref[i - 1] == hyp[j - 1] else "sub", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            ops.append(("del", ref[i - 1], None))
            i -= 1
        else:
            ops.append(("ins", None, hyp[j - 1]))
            j -= 1
    return ops[::-1]


# Scoring normalises reference and hypothesis as the model's tokenizer does (its `normalizer`, a key of
# tokenizer.NORMALIZERS): "english" folds accents and spells numbers, which for Spanish would score "año"
# and "ano" alike; "basic" keeps every letter of any script.

def word_alignment(ref: str, hyp: str, normalizer: str = "english") -> list[tuple[str, object, object]]:
    """align() on normalised words: what the report highlights and the error analysis counts."""
    norm = NORMALIZERS[normalizer]
    return align(norm(ref).split(), norm(hyp).split())


def word_errors(ref: str, hyp: str, normalizer: str = "english") -> tuple[int, int]:
    """(word edit distance, reference words) after normalisation."""
    norm = NORMALIZERS[normalizer]
    r, h = norm(ref).split(), norm(hyp).split()
    return edit_distance(r, h), len(r)


def char_errors(ref: str, hyp: str, normalizer: str = "english") -> tuple[int, int]:
    norm = NORMALIZERS[normalizer]
    r, h = norm(ref), norm(hyp)
    return edit_distance(list(r), list(h)), len(r)


def unscorable_references(utterances: list[Utterance], normalizer: str = "english") -> list[str]:
    """Ids of utterances whose reference has no words after normalisation. Words recognised in them
    count as insertions (as NIST's sclite counts them); a dataset with no reference words has no WER."""
    return [u.id for u in utterances if not NORMALIZERS[normalizer](u.text).split()]


def wer(refs: list[str], hyps: list[str], normalizer: str = "english") -> float:
    """Word errors over reference words, pooled; NaN when the references have no words (no rate exists)."""
    return _pooled_rate([word_errors(r, h, normalizer) for r, h in zip(refs, hyps)])


def cer(refs: list[str], hyps: list[str], normalizer: str = "english") -> float:
    """Character errors over reference characters, pooled; NaN when the references have none."""
    return _pooled_rate([char_errors(r, h, normalizer) for r, h in zip(refs, hyps)])


def _pooled_rate(errors: list[tuple[int, int]]) -> float:
    total = sum(n for _, n in errors)
    return sum(e for e, _ in errors) / total if total else math.nan


def scoring_normalizer(recognizer) -> str:
    """The normaliser a model's output is scored with: its tokenizer's (English without a model)."""
    return getattr(getattr(recognizer, "tokenizer", None), "normalizer", "english")


# ---------------------------------------------------------------- running a model over a dataset

@dataclass
class EvalSummary:
    wer: float
    cer: float
    utterances: int
    failed: int  # utterances whose audio could not be read
    audio_hours: float
    rtf: float  # processing seconds per audio second
    rows: list[dict] = field(default_factory=list)

    def to_dict(self, with_rows: bool = False) -> dict:
        d = {"wer": round(self.wer, 4), "cer": round(self.cer, 4), "utterances": self.utterances,
             "failed": self.failed, "audio_hours": round(self.audio_hours, 4), "rtf": round(self.rtf, 4)}
        if with_rows:
            d["rows"] = self.rows
        return d


def evaluate_dataset(recognizer, utterances: list[Utterance], show_progress: bool = True,
                     transcribe=None, perturb=None, desc: str = "evaluating", on_row=None) -> EvalSummary:
    """Transcribe every utterance and score it. `transcribe(audio) → text` overrides the recognizer;
    `perturb(audio, utterance) → audio` (noise, reverberation) is applied before transcribing;
    `on_row(row)` sees each row as it is made (an interrupted run keeps those)."""
    transcribe = transcribe or (lambda audio: recognizer.transcribe(audio).text)
    normalizer = scoring_normalizer(recognizer)
    rows, audio_seconds, busy_seconds, failed = [], 0.0, 0.0, 0
    for u in tqdm(utterances, desc=desc, unit="utt", disable=None if show_progress else True):
        try:
            audio = load_audio(u.audio)
        except VocableError as e:
            failed += 1
            rows.append({"id": u.id, "error": str(e)})
            if on_row is not None:
                on_row(rows[-1])
            continue
        if perturb is not None:
            audio = perturb(audio, u)
        start = time.perf_counter()
        hyp = transcribe(audio)
        busy_seconds += time.perf_counter() - start
        audio_seconds += len(audio) / SAMPLE_RATE
        w, n = word_errors(u.text, hyp, normalizer)
        c, m = char_errors(u.text, hyp, normalizer)
        meta = {k: v for k, v in u.meta.items() if k != "error"}  # "error" marks an unreadable row (above)
        rows.append({**meta, "id": u.id, "speaker": u.speaker, "audio": u.audio, "ref": u.text, "hyp": hyp,
                     "word_errors": w, "words": n, "char_errors": c, "chars": m,
                     "duration": round(len(audio) / SAMPLE_RATE, 3)})
        if on_row is not None:
            on_row(rows[-1])
    scored = [r for r in rows if "error" not in r]
    return EvalSummary(
        wer=_pooled_rate([(r["word_errors"], r["words"]) for r in scored]),
        cer=_pooled_rate([(r["char_errors"], r["chars"]) for r in scored]),
        utterances=len(scored), failed=failed, audio_hours=audio_seconds / 3600,
        rtf=busy_seconds / max(audio_seconds, 1e-9), rows=rows)


def write_rows(path: str | Path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- groups

def age_band(age, edges: tuple = AGE_EDGES) -> str:
    """A numeric age → its band ("child", "teen", "adult", "60+" for the default edges; "13-17" style
    for other edges). Non-numeric ages ("twenties" in Common Voice) are kept as they are."""
    try:
        years = float(age)
    except (TypeError, ValueError):
        return str(age)
    if math.isnan(years):
        return UNKNOWN
    index = sum(years >= e for e in edges)
    if tuple(edges) == AGE_EDGES:
        return AGE_NAMES[index]
    low = edges[index - 1] if index else None
    high = edges[index] - 1 if index < len(edges) else None
    return f"<{edges[0]}" if low is None else f"{low}+" if high is None else f"{low}-{high}"


def length_bucket(seconds: float, edges: tuple = LENGTH_EDGES) -> str:
    index = sum(seconds >= e for e in edges)
    if index == 0:
        return f"<{edges[0]:g} s"
    if index == len(edges):
        return f"≥{edges[-1]:g} s"
    return f"{edges[index - 1]:g}-{edges[index]:g} s"


def group_label(row: dict, field_name: str, age_edges: tuple = AGE_EDGES) -> str:
    """The group an utterance row belongs to for `field_name` (a manifest field, "speaker" or "length")."""
    if field_name == LENGTH_FIELD and LENGTH_FIELD not in row:
        return length_bucket(float(row.get("duration") or 0.0))
    value = row.get(field_name)
    if value is None or value == "":
        return UNKNOWN
    if field_name == "age":
        return age_band(value, age_edges)
    if field_name == "gender":  # "F" and "female_feminine" from two corpora are one group
        return gender_group(value)
    return str(value)


def _group_order(names: list[str], field_name: str, age_edges: tuple) -> list[str]:
    """Age bands and length buckets in their natural order, anything else alphabetically."""
    if field_name == "age":
        bands = [age_band(e - 1, age_edges) for e in age_edges] + [age_band(age_edges[-1], age_edges)]
        return sorted(names, key=lambda n: (bands.index(n) if n in bands else len(bands), n))
    if field_name == LENGTH_FIELD:
        buckets = [length_bucket(e - 1e-6) for e in LENGTH_EDGES] + [length_bucket(LENGTH_EDGES[-1])]
        return sorted(names, key=lambda n: (buckets.index(n) if n in buckets else len(buckets), n))
    return sorted(names, key=lambda n: (n == UNKNOWN, n))


# ---------------------------------------------------------------- statistics

@dataclass
class StatsOptions:
    resamples: int = 1000  # bootstrap replicates
    permutations: int = 2000  # permutation-test shuffles for the group gap
    confidence: float = 0.95  # confidence level of the intervals
    alpha: float = 0.05  # significance level of the gap test
    seed: int = 0
    age_edges: tuple = AGE_EDGES


def _bootstrap_weights(strata: list[np.ndarray], clusters: int, resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """(resamples, clusters) counts: how often each cluster is drawn when every stratum is resampled
    with replacement to its own size (a multinomial draw is exactly that)."""
    weights = np.zeros((resamples, clusters))
    for members in strata:
        weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=resamples)
    return weights


def _expanded_tail(clusters, confidence: float) -> np.ndarray:
    """Tail probability for an "expanded percentile" interval (Hesterberg 2015).

    Plain percentile intervals are too narrow with few clusters (measured: 90 % coverage for a nominal
    95 % with 15 speakers). Widening by the Student-t quantile and sqrt(n / (n - 1)) repairs most of it;
    the t quantile comes from its Cornish-Fisher expansion (within 0.3 % for n >= 5) to avoid scipy.
    """
    n = np.maximum(np.asarray(clusters, dtype=float), 2.0)
    z, v = NormalDist().inv_cdf(1 - (1 - confidence) / 2), n - 1
    t = z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2) \
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    return np.array([NormalDist().cdf(-x) for x in np.atleast_1d(np.sqrt(n / v) * t)])


def _interval(samples: np.ndarray, confidence: float, clusters) -> list:
    """(low, high) bootstrap interval along axis 0 of `samples`; `clusters` (one per column, or one)
    is the number of resampled units behind each column. NaN replicates (a group drawn empty) are skipped."""
    samples = np.asarray(samples, dtype=float).reshape(len(samples), -1)
    tails = np.broadcast_to(_expanded_tail(clusters, confidence), samples.shape[1:])
    low, high = np.empty(samples.shape[1]), np.empty(samples.shape[1])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, reported as null
        for k, tail in enumerate(tails):
            low[k], high[k] = np.nanquantile(samples[:, k], [tail, 1 - tail])
    return [low, high]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _spread(errors: np.ndarray, words: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Gap statistic along the last axis: max - min of the eligible groups' WER."""
    rates = _ratio(errors[..., eligible], words[..., eligible])
    return np.nanmax(rates, axis=-1) - np.nanmin(rates, axis=-1)


def _permutation_p(errors: np.ndarray, words: np.ndarray, labels: np.ndarray, strata: np.ndarray,
                   eligible: np.ndarray, permutations: int, rng: np.random.Generator) -> float:
    """p-value of the best-worst gap under shuffling group labels among units within each stratum.

    Units are speakers (labels that are speaker traits: shuffle them among speakers) or utterances
    (labels that vary within a speaker: shuffle among that speaker's utterances, so speaker effects
    stay put). The max-min statistic accounts for having picked the extreme pair out of many groups.
    """
    groups = len(eligible)
    order = np.argsort(strata, kind="stable")
    errors, words, labels, strata = errors[order], words[order], labels[order], strata[order]
    observed = _spread(np.bincount(labels, errors, groups), np.bincount(labels, words, groups), eligible)
    exceed, chunk = 0, max(1, 2_000_000 // len(labels))
    for start in range(0, permutations, chunk):
        n = min(chunk, permutations - start)
        # strata are sorted, so sorting (stratum + uniform noise) permutes indices within each stratum
        shuffled = labels[np.argsort(strata[None, :] + rng.random((n, len(labels))), axis=1)]
        e = np.stack([(shuffled == g) @ errors for g in range(groups)], axis=-1)
        w = np.stack([(shuffled == g) @ words for g in range(groups)], axis=-1)
        exceed += int(np.sum(_spread(e, w, eligible) >= observed - 1e-12))
    return (exceed + 1) / (permutations + 1)


def _codes(values: list) -> tuple[np.ndarray, list]:
    names = list(dict.fromkeys(values))
    index = {v: i for i, v in enumerate(names)}
    return np.array([index[v] for v in values], dtype=np.int64), names


def group_report(rows: list[dict], field_name: str, options: StatsOptions | None = None) -> dict:
    """WER/CER per group of `field_name`, with cluster-bootstrap intervals and a gap test.

    Which unit is resampled follows the data:
    - the field is a speaker trait (gender, accent, age) and every group has >= 2 speakers: speakers are
      resampled within their group, and the gap test shuffles group labels among speakers;
    - the field varies within a speaker (length, device): all speakers are resampled together, and the
      gap test shuffles labels among each speaker's own utterances;
    - otherwise (grouping by speaker, or a group with a single speaker) utterances are the unit: the
      intervals then describe those speakers only and treat their utterances as independent.
    """
    options = options or StatsOptions()
    rows = [r for r in rows if "error" not in r]
    if not rows:
        raise DataError("no scored utterances to group")
    labels, names = _codes([group_label(r, field_name, options.age_edges) for r in rows])
    names_sorted = _group_order(names, field_name, options.age_edges)
    remap = np.array([names_sorted.index(n) for n in names])
    labels, names = remap[labels], names_sorted
    speakers, speaker_names = _codes([r.get("speaker") or f"utt:{r['id']}" for r in rows])
    labelled = any(r.get("speaker") for r in rows)  # else each utterance would pass for a speaker
    groups = len(names)
    pairs = set(zip(speakers.tolist(), labels.tolist()))
    trait = len(pairs) == len(speaker_names)  # each speaker in exactly one group
    speakers_per_group = np.bincount([g for _, g in pairs], minlength=groups)
    if not labelled:
        unit, clusters = "utterance", np.arange(len(rows))
    elif field_name != "speaker" and trait and speakers_per_group.min() >= 2:
        unit, clusters = "speaker", speakers
    elif field_name != "speaker" and not trait and len(speaker_names) >= 2:
        unit, clusters = "speaker", speakers
    else:
        unit, clusters = "utterance", np.arange(len(rows))
    n_clusters = int(clusters.max()) + 1
    rng = np.random.default_rng(options.seed)

    def matrix(key: str) -> np.ndarray:  # (clusters, groups) sums
        m = np.zeros((n_clusters, groups))
        np.add.at(m, (clusters, labels), [r[key] for r in rows])
        return m

    E, N, CE, CN = matrix("word_errors"), matrix("words"), matrix("char_errors"), matrix("chars")
    stratified = unit == "utterance" or trait  # each cluster lies in one group
    cluster_group = np.zeros(n_clusters, dtype=np.int64)
    cluster_group[clusters] = labels
    if stratified:  # a group keeps its number of speakers (or utterances) in every replicate
        strata = [np.flatnonzero(cluster_group == g) for g in range(groups)]
        strata = [s for s in strata if len(s)]
    else:
        strata = [np.arange(n_clusters)]
    weights = _bootstrap_weights(strata, n_clusters, options.resamples, rng)
    wer_samples, cer_samples = _ratio(weights @ E, weights @ N), _ratio(weights @ CE, weights @ CN)
    point_wer, point_cer = _ratio(E.sum(0), N.sum(0)), _ratio(CE.sum(0), CN.sum(0))
    group_clusters = np.count_nonzero(N + CN > 0, axis=0) if stratified else n_clusters
    wer_low, wer_high = _interval(wer_samples, options.confidence, group_clusters)
    cer_low, cer_high = _interval(cer_samples, options.confidence, group_clusters)
    single = np.count_nonzero(N + CN > 0, axis=0) < 2  # one speaker or utterance: every replicate that
    for bounds in (wer_low, wer_high, cer_low, cer_high):  # draws it is the same, so no interval (but see below)
        bounds[single] = np.nan
    wer_high, cer_high = _zero_error_bound(wer_high, E, N, options), _zero_error_bound(cer_high, CE, CN, options)
    wer_low, cer_low = _zero_error_low(wer_low, wer_high, E), _zero_error_low(cer_low, cer_high, CE)
    report = {"field": field_name, "unit": unit, "groups": []}
    if not labelled:
        report["note"] = NO_SPEAKERS_NOTE
        speakers_per_group = np.zeros(groups, dtype=np.int64)
    elif unit == "utterance" and field_name != "speaker":
        report["note"] = ("a group has fewer than 2 speakers: its interval and the gap test treat utterances "
                          "as independent and say nothing about other speakers of that group")
    for g, name in enumerate(names):
        members = labels == g
        report["groups"].append({
            "name": name, "utterances": int(members.sum()), "speakers": int(speakers_per_group[g]),
            "words": int(N[:, g].sum()), "wer": _round(point_wer[g]), "wer_ci": _round([wer_low[g], wer_high[g]]),
            "cer": _round(point_cer[g]), "cer_ci": _round([cer_low[g], cer_high[g]]),
            **({"small": True} if N[:, g].sum() < MIN_GROUP_WORDS else {})})
    eligible = N.sum(0) >= MIN_GROUP_WORDS
    if not eligible.any():  # all groups small: compare them anyway
        eligible = N.sum(0) > 0
    scored = np.flatnonzero(eligible)
    if len(scored) >= 2:
        best = int(scored[np.argmin(point_wer[scored])])
        others = scored[scored != best]
        worst = int(others[np.argmax(point_wer[others])])
        pair_clusters = min(group_clusters[best], group_clusters[worst]) if stratified else n_clusters
        (gap_low,), (gap_high,) = _interval(wer_samples[:, worst] - wer_samples[:, best], options.confidence,
                                            pair_clusters)
        if single[best] and single[worst]:  # two fixed numbers: every replicate gives the same gap
            gap_low = gap_high = np.nan
        if unit == "speaker" and trait:  # shuffle speaker traits among speakers
            unit_errors, unit_words = E.sum(1), N.sum(1)
            unit_labels, unit_strata = cluster_group, np.zeros(n_clusters, dtype=np.int64)
            test = "permutation of group labels over speakers"
        else:
            unit_errors = np.array([r["word_errors"] for r in rows], dtype=float)
            unit_words = np.array([r["words"] for r in rows], dtype=float)
            unit_labels = labels
            unit_strata = speakers if unit == "speaker" else np.zeros(len(rows), dtype=np.int64)
            test = ("permutation of group labels within each speaker" if unit == "speaker"
                    else "permutation of group labels over utterances")
        p = _permutation_p(unit_errors, unit_words, unit_labels, unit_strata, eligible, options.permutations, rng)
        report["gap"] = {"best": names[best], "worst": names[worst],
                         "wer_gap": _round(point_wer[worst] - point_wer[best]),
                         "wer_gap_ci": _round([gap_low, gap_high]), "p_value": round(p, 4),
                         "significant": bool(p < options.alpha), "test": test,
                         "left_out": [names[g] for g in np.flatnonzero(~eligible & (N.sum(0) > 0))]}
    elif groups >= 2:
        report["no_gap"] = (f"no gap test: only {names[scored[0]]} has {MIN_GROUP_WORDS} or more reference words"
                            if len(scored) else "no gap test: no group has reference words")
    return report


def _zero_error_bound(high: np.ndarray, errors: np.ndarray, totals: np.ndarray, options: StatsOptions) -> np.ndarray:
    """A group without a single error gets a bootstrap interval of [0, 0], claiming a certainty no sample
    gives. Raise its upper end to the exact binomial bound for 0 errors in n words (the rule of three)."""
    e, n = errors.sum(0), totals.sum(0)
    with np.errstate(all="ignore"):
        bound = 1 - ((1 - options.confidence) / 2) ** (1 / np.maximum(n, 1))
    return np.where((e == 0) & (n > 0), np.fmax(high, bound), high)


def _zero_error_low(low: np.ndarray, high: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """A zero-error group's interval starts at 0 whenever it has an upper end (the rule of three's)."""
    return np.where((errors.sum(0) == 0) & ~np.isnan(high), 0.0, low)


def overall_interval(rows: list[dict], options: StatsOptions | None = None) -> dict:
    """WER and CER of all scored rows with a bootstrap interval over speakers."""
    report = group_report([{**r, "_all": "all"} for r in rows], "_all", options)
    g = report["groups"][0]
    overall = {"wer": g["wer"], "wer_ci": g["wer_ci"], "cer": g["cer"], "cer_ci": g["cer_ci"],
               "unit": report["unit"], "speakers": g["speakers"]}
    if report.get("note") == NO_SPEAKERS_NOTE:
        overall["note"] = NO_SPEAKERS_NOTE
    elif report["unit"] == "utterance" or g["speakers"] < FEW_SPEAKERS:
        overall["note"] = (f"only {g['speakers']} speaker(s): the interval describes these speakers, "
                           "not how the model would do on other people")
    return overall


def _round(value, digits: int = 4):
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_round(v, digits) for v in value]
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


# ---------------------------------------------------------------- error analysis

def error_analysis(rows: list[dict], top: int = TOP_ERRORS, worst: int = WORST_UTTERANCES,
                   normalizer: str = "english") -> dict:
    """Most frequent word substitutions, deletions and insertions, and the worst utterances."""
    subs, dels, ins, totals = Counter(), Counter(), Counter(), Counter()
    for r in rows:
        if "error" in r:
            continue
        for op, ref, hyp in word_alignment(r["ref"], r["hyp"], normalizer):
            totals[op] += 1
            if op == "sub":
                subs[(ref, hyp)] += 1
            elif op == "del":
                dels[ref] += 1
            elif op == "ins":
                ins[hyp] += 1
    scored = [r for r in rows if "error" not in r and r["word_errors"] > 0]
    scored.sort(key=lambda r: (-r["word_errors"] / max(1, r["words"]), -r["word_errors"], r["id"]))
    return {
        "counts": {"correct": totals["ok"], "substitutions": totals["sub"], "deletions": totals["del"],
                   "insertions": totals["ins"]},
        "substitutions": [{"ref": r, "hyp": h, "count": c} for (r, h), c in subs.most_common(top)],
        "deletions": [{"word": w, "count": c} for w, c in dels.most_common(top)],
        "insertions": [{"word": w, "count": c} for w, c in ins.most_common(top)],
        "worst": [{"id": r["id"], "speaker": r.get("speaker", ""), "ref": r["ref"], "hyp": r["hyp"],
                   "word_errors": r["word_errors"], "words": r["words"]} for r in scored[:worst]],
    }


def check_group_fields(by: list[str], records: list[dict]) -> None:
    """--by fields must occur in some record (a manifest row's metadata, or a scored row): the CLI checks the
    manifest before decoding, so a typo costs no run."""
    missing = [f for f in by if f not in (LENGTH_FIELD, "speaker") and all(f not in r for r in records)]
    if missing:
        known = sorted({k for r in records for k in r} - {"id", "audio", "ref", "hyp", "word_errors", "words",
                                                          "char_errors", "chars", "duration", "speaker"})
        raise DataError(f"--by {missing[0]}: no utterance has this field (fields here: "
                        f"{', '.join(['speaker', *known])})")


def analyse(rows: list[dict], by: list[str] = (), options: StatsOptions | None = None,
            normalizer: str = "english") -> dict:
    """Everything computed from per-utterance rows alone: overall interval, groups, length, errors."""
    options = options or StatsOptions()
    scored = [r for r in rows if "error" not in r]
    if not scored:
        first = next((r["error"] for r in rows if "error" in r), "the dataset is empty")
        raise DataError(f"no utterance could be scored ({first})")
    if not sum(r["words"] for r in scored):
        raise DataError("no scored utterance has reference words: the word error rate is undefined")
    check_group_fields(by, scored)
    return {"overall": overall_interval(scored, options), "confidence": options.confidence,
            "groups": {f: group_report(scored, f, options) for f in by if f != LENGTH_FIELD},  # length: always below
            "length": group_report(scored, LENGTH_FIELD, options),
            "errors": error_analysis(scored, normalizer=normalizer)}


# ---------------------------------------------------------------- comparing two systems

def _sign_flip_p(differences: np.ndarray, total: float, observed: float, permutations: int,
                 rng: np.random.Generator) -> float:
    """Two-sided p-value of a paired difference: swap the two systems' outputs within each cluster.
    Exact (all 2^n swaps) for up to EXACT_FLIPS clusters, else `permutations` random swaps."""
    n = len(differences)
    if n <= EXACT_FLIPS:
        signs = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs(signs @ differences) / total >= abs(observed) - 1e-12))
    signs = rng.choice([-1.0, 1.0], size=(permutations, n))
    return float((np.sum(np.abs(signs @ differences) / total >= abs(observed) - 1e-12) + 1) / (permutations + 1))


SCORED_FIELDS = ("ref", "hyp", "word_errors", "words")  # what --compare needs of each scored row


def load_rows(path: str | Path) -> list[dict]:
    """Per-utterance rows from `vocable evaluate --json` output (an object with "rows") or --output JSONL."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text, so not vocable evaluate's JSON") from None
    try:
        data = parse_json(text)
        if isinstance(data, dict):  # --json output, or an --output file of one row (one JSON object)
            rows = [data] if "rows" not in data and "id" in data else data.get("rows")
        else:
            rows = data
    except ValueError:
        try:
            rows = [parse_json(line) for line in text.splitlines() if line.strip()]
        except ValueError as e:
            raise DataError(f"{path}: neither JSON nor JSON Lines ({e})") from None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "id" in r for r in rows):
        raise DataError(f"{path}: no per-utterance rows (expected `vocable evaluate --json` output or --output rows)")
    for number, row in enumerate(rows, 1):
        missing = [key for key in SCORED_FIELDS if key not in row]
        if "error" not in row and missing:
            raise DataError(f"{path}: row {number} ({row['id']}) lacks {', '.join(map(repr, missing))}: not vocable "
                            f"evaluate's results (a manifest? evaluate it first, with --output)")
        wrong = next((key for key in SCORED_FIELDS if "error" not in row and field_expected(key, row[key])), None)
        if wrong:
            raise DataError(f"{path}: row {number} ({row['id']}): {wrong}: expected "
                            f"{field_expected(wrong, row[wrong])}, got {row[wrong]!r:.40}")
    repeated = repeated_ids(row["id"] for row in rows)
    if repeated:
        raise DataError(f"{path}: {repeated}: results are paired by id")
    return rows


def field_expected(key: str, value) -> str:
    """"" for a scored row's field as evaluate writes it (texts; error and word counts, whole numbers >= 0),
    else what it should have been."""
    if key in ("ref", "hyp"):
        return "" if isinstance(value, str) else "text"
    count = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 and float(value).is_integer()
    return "" if count else "a count of 0 or more"


def repeated_ids(ids) -> str:
    """"utterance id 'a' appears 2 times (3 ids repeated)" for the first id seen more than once, else ""."""
    counts = Counter(ids)
    repeated = [i for i, n in counts.items() if n > 1]
    if not repeated:
        return ""
    more = f" ({len(repeated)} ids repeated)" if len(repeated) > 1 else ""
    return f"utterance id {repeated[0]!r} appears {counts[repeated[0]]} times{more}"


def compare_results(rows_a: list[dict], rows_b: list[dict], options: StatsOptions | None = None,
                    names: tuple[str, str] = ("A", "B")) -> dict:
    """Paired comparison of two systems on the utterances both scored.

    The difference WER(B) - WER(A) gets a bootstrap interval that resamples speakers and takes both
    systems' errors from the same draw (pairing removes the utterance difficulty both share), and a
    p-value from randomly swapping the two systems' outputs within each speaker.
    """
    options = options or StatsOptions()
    a = {r["id"]: r for r in rows_a if "error" not in r}
    b = {r["id"]: r for r in rows_b if "error" not in r}
    common = [i for i in a if i in b]
    if not common:
        raise DataError("the two results share no scored utterance ids: were they run on the same dataset?")
    for i in common:
        if normalize_basic(a[i]["ref"]) != normalize_basic(b[i]["ref"]):
            raise DataError(f"utterance {i}: the two results have different reference texts")
    labelled = any(a[i].get("speaker") for i in common)
    speakers, speaker_names = _codes([a[i].get("speaker") or f"utt:{i}" for i in common])
    unit = "speaker" if labelled and len(speaker_names) >= 2 else "utterance"
    clusters = speakers if unit == "speaker" else np.arange(len(common))
    n_clusters = int(clusters.max()) + 1
    ea = np.bincount(clusters, [a[i]["word_errors"] for i in common], n_clusters)
    eb = np.bincount(clusters, [b[i]["word_errors"] for i in common], n_clusters)
    words = np.bincount(clusters, [a[i]["words"] for i in common], n_clusters)
    rng = np.random.default_rng(options.seed)
    weights = _bootstrap_weights([np.arange(n_clusters)], n_clusters, options.resamples, rng)
    diff_samples = _ratio(weights @ (eb - ea), weights @ words)
    total = max(1.0, words.sum())
    diff = (eb.sum() - ea.sum()) / total
    (low,), (high,) = _interval(diff_samples, options.confidence, n_clusters)
    p = _sign_flip_p(eb - ea, total, diff, options.permutations, rng)
    per_utt = np.array([b[i]["word_errors"] - a[i]["word_errors"] for i in common])
    ci = f"{options.confidence:.0%} CI"
    if (low > 0 or high < 0) and p < options.alpha:
        better, margin = (names[0], (diff, low, high)) if low > 0 else (names[1], (-diff, -high, -low))
        verdict = f"{better} is better: WER lower by {margin[0]:.2%} ({ci} {margin[1]:.2%} to {margin[2]:.2%})"
    elif low > 0 or high < 0:  # with few speakers the two can disagree: claim nothing
        verdict = (f"not conclusive: WER({names[1]}) - WER({names[0]}) = {diff:+.2%} ({ci} {low:+.2%} to "
                   f"{high:+.2%}), but the sign-flip test over {n_clusters} {unit}s gives p = {p:.3g}")
    else:
        verdict = (f"no significant difference: WER({names[1]}) - WER({names[0]}) = {diff:+.2%} "
                   f"({ci} {low:+.2%} to {high:+.2%})")
    if not labelled:
        caveat = f" (note: {NO_SPEAKERS_NOTE})"
    elif unit == "utterance":
        caveat = " (on one speaker's utterances: it may not hold for other speakers)"
    else:
        caveat = ""
    return {"a": names[0], "b": names[1], "utterances": len(common), "unit": unit,
            "speakers": len(speaker_names) if labelled else 0,
            "only_in_a": len(a) - len(common), "only_in_b": len(b) - len(common),
            "wer_a": _round(ea.sum() / total), "wer_b": _round(eb.sum() / total),
            "wer_diff": _round(diff), "wer_diff_ci": _round([low, high]), "p_value": round(float(p), 4),
            "significant": bool((low > 0 or high < 0) and p < options.alpha), "confidence": options.confidence,
            "b_better_utterances": int(np.sum(per_utt < 0)), "b_worse_utterances": int(np.sum(per_utt > 0)),
            "verdict": verdict + caveat}


# ---------------------------------------------------------------- noise and reverberation sweeps

@dataclass
class SweepOptions:
    snrs: list[float] = field(default_factory=list)  # dB; each adds one noisy copy of the set
    reverb: bool = False  # add one copy in simulated rooms (a random room per utterance)
    color: str = "white"  # noise colour passed to augment.colored_noise
    seed: int = 0


def _utterance_rng(seed: int, utterance: Utterance, salt: int) -> np.random.Generator:
    """The same noise and room for an utterance in every run and every SNR (crc32: Python's hash is salted),
    so the sweep is paired: only the level changes between SNR points."""
    return np.random.default_rng([seed, zlib.crc32(utterance.id.encode("utf-8")), salt])


def sweep_conditions(options: SweepOptions) -> list[tuple[str, dict, object]]:
    """(name, description, perturb function) for each noisy or reverberant condition."""
    if not options.snrs and not options.reverb:
        return []
    try:
        from .data.augment import add_noise, colored_noise, reverberate, simulate_rir
    except ImportError as e:
        raise ConfigError(f"--noise/--reverb need vocable.data.augment ({e})") from None
    conditions = []
    for snr in sorted(set(options.snrs), reverse=True):
        def noisy(audio, u, snr=snr):
            noise = colored_noise(len(audio), options.color, _utterance_rng(options.seed, u, 1))
            return np.asarray(add_noise(audio, noise, snr), dtype=np.float32)
        conditions.append((f"{snr:g} dB SNR", {"snr_db": float(snr), "noise": options.color, "reverb": False}, noisy))
    if options.reverb:
        def reverberant(audio, u):
            rir = simulate_rir(_utterance_rng(options.seed, u, 2), sample_rate=SAMPLE_RATE)
            return np.asarray(reverberate(audio, rir), dtype=np.float32)
        conditions.append(("reverb", {"snr_db": None, "noise": None, "reverb": True}, reverberant))
    return conditions


# ---------------------------------------------------------------- the whole evaluation

def dataset_hash(utterances: list[Utterance]) -> str:
    """sha256 of the manifest's content (ids, texts, speakers, metadata) and each audio file's size:
    the same on any machine holding the same data, whatever its paths."""
    digest = hashlib.sha256()
    for u in sorted(utterances, key=lambda u: u.id):
        try:
            size = Path(u.audio).stat().st_size
        except OSError:
            size = -1
        entry = [u.id, u.text, u.speaker, u.meta, Path(u.audio).name, size]
        digest.update(json.dumps(entry, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8") + b"\n")
    return digest.hexdigest()


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_evaluation(recognizer, utterances: list[Utterance], by: list[str] = (), sweep: SweepOptions | None = None,
                   stats: StatsOptions | None = None, show_progress: bool = True, transcribe=None,
                   dataset: str | os.PathLike | None = None, on_row=None) -> dict:
    """Clean run + noise/reverb sweeps + analysis → one JSON-ready dict (see docs/evaluation.md).
    `dataset` names the data in the result and the report; `on_row` sees each clean row as it is scored."""
    from . import __version__
    stats, sweep = stats or StatsOptions(), sweep or SweepOptions()
    if not utterances:
        raise DataError(f"{dataset or 'the dataset'}: no utterances")
    conditions = sweep_conditions(sweep)  # fails early, before the long clean run, when augment is missing
    clean = evaluate_dataset(recognizer, utterances, show_progress, transcribe, desc="clean", on_row=on_row)
    normalizer = scoring_normalizer(recognizer)
    result = {"vocable_version": __version__, **({"dataset": str(dataset)} if dataset is not None else {}),
              "dataset_sha256": dataset_hash(utterances), "normalizer": normalizer,
              **clean.to_dict(), **analyse(clean.rows, list(by), stats, normalizer)}
    if recognizer is not None and getattr(recognizer, "loaded", None) is not None:
        result["model"] = str(recognizer.loaded.path)
        result["model_sha256"] = file_hash(recognizer.loaded.path)
    result["conditions"] = [{"name": "clean", "snr_db": None, "noise": None, "reverb": False, **result["overall"]}]
    readable = [u for u, r in zip(utterances, clean.rows) if "error" not in r]
    for name, description, perturb in conditions:
        summary = evaluate_dataset(recognizer, readable, show_progress, transcribe, perturb=perturb, desc=name)
        result["conditions"].append({"name": name, **description, **overall_interval(summary.rows, stats)})
    result["options"] = {"by": list(by), **asdict(sweep), **{k: v for k, v in asdict(stats).items()}}
    result["rows"] = clean.rows
    return result


def interval_level(result: dict) -> str:
    """The level of a run_evaluation or compare_results result's intervals as text: "95%" for 0.95."""
    return f"{result.get('confidence', StatsOptions.confidence):.0%}"


def format_summary(result: dict) -> str:
    """The human-readable version of run_evaluation's result."""
    o, level = result["overall"], interval_level(result)
    lines = [*([f"dataset     {result['dataset']}"] if result.get("dataset") else []),
             f"model       {result.get('model', '-')}",
             f"WER         {o['wer']:.2%}  ({level} CI {_pct(o['wer_ci'])}, resampling {o['unit']}s)",
             f"CER         {o['cer']:.2%}  ({level} CI {_pct(o['cer_ci'])})",
             *([f"note        {o['note']}"] if o.get("note") else []),
             f"utterances  {result['utterances']} ({result['failed']} unreadable), {result['audio_hours']:.3f} h, "
             f"RTF {result['rtf']:.4f}"]
    for report in [*result["groups"].values(), result["length"]]:
        lines.append(f"\nby {report['field']} (intervals resample {report['unit']}s)")
        for g in report["groups"]:
            lines.append(f"  {g['name']:<16} WER {_pct1(g['wer']):>7} [{_pct(g['wer_ci'])}]  CER {_pct1(g['cer']):>7}  "
                         f"{g['utterances']} utt{'s' * (g['utterances'] != 1)}"
                         + (f", {g['speakers']} spk" if g["speakers"] else ""))
        gap = report.get("gap")
        if gap:
            lines.append(f"  gap {gap['worst']} - {gap['best']}: {_pct1(gap['wer_gap'])} [{_pct(gap['wer_gap_ci'])}], "
                         f"p = {gap['p_value']:.3g} -> {'SIGNIFICANT' if gap['significant'] else 'not significant'}")
            if gap.get("left_out"):
                lines.append(f"  too few words to compare: {', '.join(gap['left_out'])}")
        if report.get("no_gap"):
            lines.append(f"  {report['no_gap']}")
        if report.get("note"):
            lines.append(f"  note: {report['note']}")
    if len(result["conditions"]) > 1:
        lines.append(f"\ncondition        WER      {level} CI")
        for c in result["conditions"]:
            lines.append(f"  {c['name']:<14} {_pct1(c['wer']):>7}  [{_pct(c['wer_ci'])}]")
    e = result["errors"]
    c = e["counts"]
    lines.append(f"\nerrors: {c['substitutions']} substitutions, {c['deletions']} deletions, "
                 f"{c['insertions']} insertions")
    if e["substitutions"]:
        lines.append("  top substitutions: " + ", ".join(f"{s['ref']}->{s['hyp']} ({s['count']})"
                                                         for s in e["substitutions"][:8]))
    if e["deletions"]:
        lines.append("  top deletions: " + ", ".join(f"{d['word']} ({d['count']})" for d in e["deletions"][:8]))
    if e["insertions"]:
        lines.append("  top insertions: " + ", ".join(f"{d['word']} ({d['count']})" for d in e["insertions"][:8]))
    return "\n".join(lines)


def format_comparison(c: dict) -> str:
    return (f"{c['utterances']} shared utterances, {c['speakers'] or 'no'} speakers "
            f"({c['only_in_a']} only in {c['a']}, {c['only_in_b']} only in {c['b']})\n"
            f"WER {c['a']} {_pct1(c['wer_a'])}   WER {c['b']} {_pct1(c['wer_b'])}\n"
            f"WER({c['b']}) - WER({c['a']}) = {c['wer_diff']:+.2%}  ({interval_level(c)} CI {_pct(c['wer_diff_ci'])}, "
            f"resampling {c['unit']}s; p = {c['p_value']:.3g})\n"
            f"{c['b']} better on {c['b_better_utterances']} utterances, worse on {c['b_worse_utterances']}\n"
            f"{c['verdict']}")


def _pct1(x) -> str:
    return "-" if x is None else f"{x:.2%}"


def _pct(ci) -> str:
    return "-" if ci is None or None in ci else f"{ci[0]:.2%} to {ci[1]:.2%}"
