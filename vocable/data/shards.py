"""Feature cache: precomputed log-mel (or MFCC) features in fp16 shards, streamed from disk.

`vocable data prepare MANIFEST -o SHARDS/` writes
    SHARDS/index.json           format, feature config, and per shard: utterances, frames, seconds
    SHARDS/shard-00000.npy      (frames, dim) float16: all utterances of the shard, one after another
    SHARDS/shard-00000.jsonl    one row per utterance: id, text, duration, speaker, offset, frames, metadata
Text is stored, not tokens, so any tokenizer can train on the same shards. A training config's
`[data] train = ["SHARDS"]` reads them (a folder with index.json is a shard folder): an epoch then
reads memory-mapped features without decoding or resampling audio, corpora larger than RAM
included. Batches never mix shards and DDP ranks take whole shards (loader.bucket_batches).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..audio import SAMPLE_RATE, load_audio
from ..errors import ConfigError, DataError, VocableError
from ..features_np import FeatureConfig
from ..files import written_atomically
from .manifest import CORE_KEYS, Utterance

INDEX = "index.json"
FORMAT = "vocable-feature-shards"
VERSION = 1
DTYPE = "float16"  # half the disk and page cache of float32; log-mel values lose < 0.01
DEFAULT_SHARD_SIZE = 1000  # utterances per shard (~1 h of speech, ~60 MB at 80 mels)
# Utterance.meta keys that locate an utterance's features (they start with "_": not corpus metadata)
SHARD_KEY, OFFSET_KEY, FRAMES_KEY, FEATURES_KEY = "_shard", "_offset", "_frames", "_features"


def is_shard_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / INDEX).is_file()


def read_index(folder: str | os.PathLike) -> dict:
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable shard index ({e})") from None
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise DataError(f"{path}: not a vocable feature-shard index (format {index.get('format')!r}, "
                        f"version {index.get('version')!r}; expected {FORMAT!r} {VERSION})")
    return index


def read_shards(folder: str | os.PathLike) -> list[Utterance]:
    """Utterances of a shard folder; their meta says where their features are (see `load_features`)."""
    folder = Path(folder).resolve()
    index = read_index(folder)
    features = index["features"]  # one dict shared by all utterances of the folder
    utterances = []
    for shard in index["shards"]:
        npy, rows = str(folder / f"{shard['name']}.npy"), folder / f"{shard['name']}.jsonl"
        if not rows.is_file() or not os.path.isfile(npy):
            raise DataError(f"{folder}: shard {shard['name']} is missing (re-run vocable data prepare)")
        with open(rows, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                meta = {k: v for k, v in row.items() if k not in CORE_KEYS and k not in ("offset", "frames")}
                meta.update({SHARD_KEY: npy, OFFSET_KEY: row["offset"], FRAMES_KEY: row["frames"],
                             FEATURES_KEY: features})
                utterances.append(Utterance(row["id"], row["audio"], row["text"], row["duration"], row["speaker"],
                                            meta))
    return utterances


_open_shards: dict[str, np.ndarray] = {}  # per process: memory maps, opened on first use


def load_features(u: Utterance) -> np.ndarray:
    """(frames, dim) float32 features of a shard utterance, read from its memory-mapped shard."""
    path = u.meta[SHARD_KEY]
    if path not in _open_shards:
        _open_shards[path] = np.load(path, mmap_mode="r")
    offset = u.meta[OFFSET_KEY]
    return np.asarray(_open_shards[path][offset:offset + u.meta[FRAMES_KEY]], dtype=np.float32)


def check_feature_config(utterances: list[Utterance], config: FeatureConfig) -> None:
    """Refuse shards computed with other features than the model is configured for."""
    wanted = asdict(config)
    for u in utterances:
        if FEATURES_KEY in u.meta and u.meta[FEATURES_KEY] != wanted:
            raise ConfigError(f"{Path(u.meta[SHARD_KEY]).parent}: shards hold features {u.meta[FEATURES_KEY]}, "
                              f"but [features] is {wanted}; re-run vocable data prepare with these features")


def shard_groups(utterances: list[Utterance]) -> list[str] | None:
    """Each utterance's shard (for shard-local batches), or None when any utterance is raw audio."""
    if not utterances or any(SHARD_KEY not in u.meta for u in utterances):
        return None
    return [u.meta[SHARD_KEY] for u in utterances]


# ---------------------------------------------------------------------------------------------
# Writing


def prepare_shards(utterances: list[Utterance], out_dir: str | os.PathLike, features: FeatureConfig,
                   shard_size: int = DEFAULT_SHARD_SIZE, jobs: int = 1, seed: int = 0, source: str = "",
                   show_progress: bool = True) -> dict:
    """Compute features of every utterance into shards; returns the index.

    Utterances are shuffled (seeded) first, so every shard is a sample of the whole corpus and
    shard-local batches stay varied. A shard already written by an interrupted run is kept.
    """
    if shard_size < 1:
        raise DataError(f"--shard-size must be at least 1, got {shard_size}")
    if not utterances:
        raise DataError(f"{source or 'the dataset'}: no utterances to prepare")
    features.validate("features")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    order = list(utterances)
    random.Random(seed).shuffle(order)
    tasks = [(order[i:i + shard_size], str(out / f"shard-{n:05d}"), features)
             for n, i in enumerate(range(0, len(order), shard_size))]
    shards, skipped = [], []
    with tqdm(total=len(order), unit="utt", desc="computing features", disable=not show_progress) as bar:
        for summary, bad in _run_tasks(tasks, jobs):
            shards.append(summary)
            skipped.extend(bad)
            bar.update(summary["utterances"] + len(bad))
    kept = sum(bool(s.pop("kept", False)) for s in shards)
    shards = [s for s in shards if s["utterances"]]
    index = {"format": FORMAT, "version": VERSION, "created_by": f"vocable {__version__}", "source": source,
             "features": asdict(features), "dtype": DTYPE, "utterances": sum(s["utterances"] for s in shards),
             "hours": round(sum(s["seconds"] for s in shards) / 3600, 4), "skipped": skipped,
             "kept": kept, "shards": shards}
    (out / INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
    return index


def _run_tasks(tasks: list, jobs: int):
    """write_shard over tasks, in order, in `jobs` processes (spawned: torch in forked workers can hang)."""
    if jobs <= 1:
        yield from map(_write_task, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        yield from pool.imap(_write_task, tasks)


def _write_task(args) -> tuple[dict, list[str]]:
    return write_shard(*args)


def write_shard(utterances: list[Utterance], stem: str, features: FeatureConfig) -> tuple[dict, list[str]]:
    """One shard: features of `utterances` into STEM.npy, their rows into STEM.jsonl.

    Returns the shard's summary and the utterances skipped (unreadable audio). The .jsonl is
    written last, so its presence marks a complete shard that a re-run can keep.
    """
    import torch
    torch.set_num_threads(1)  # one process per shard; threads would only contend
    from ..features import compute_features

    rows_path, npy_path, skipped_path = Path(stem + ".jsonl"), Path(stem + ".npy"), Path(stem + ".skipped.json")
    earlier = _earlier_shard(rows_path, npy_path, skipped_path, utterances, features)
    if earlier is not None:
        rows, skipped = earlier
        return {**_summary(stem, rows), "kept": True}, [f"{s['id']}: {s['error']}" for s in skipped]
    blocks, rows, skipped, offset = [], [], [], 0
    for u in utterances:
        try:
            audio = load_audio(u.audio)
        except VocableError as e:
            skipped.append({"id": u.id, "error": str(e)})
            continue
        feats = compute_features(torch.from_numpy(audio), features)[0].numpy().astype(DTYPE)
        blocks.append(feats)
        rows.append({**_described(u), "duration": round(len(audio) / SAMPLE_RATE, 3), "offset": offset,
                     "frames": len(feats)})
        offset += len(feats)
    dim = features.dim
    matrix = np.concatenate(blocks) if blocks else np.zeros((0, dim), dtype=DTYPE)
    with written_atomically(npy_path) as tmp, open(tmp, "wb") as f:  # a file object: np.save adds no ".npy"
        np.save(f, matrix)
    skipped_path.write_text(json.dumps({"features": asdict(features), "skipped": skipped}), encoding="utf-8")
    with written_atomically(rows_path) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return _summary(stem, rows), [f"{s['id']}: {s['error']}" for s in skipped]


MEASURED = ("duration", "offset", "frames")  # the row fields a shard's making measures, not the manifest's


def _described(u: Utterance) -> dict:
    """What a shard row says of an utterance, as the manifest gave it (its "_" keys locate features)."""
    return {"id": u.id, "audio": u.audio, "text": u.text, "speaker": u.speaker,
            **{k: v for k, v in u.meta.items() if not k.startswith("_")}}


def _identity(described: dict) -> str:
    return json.dumps({k: v for k, v in described.items() if k not in MEASURED}, sort_keys=True, ensure_ascii=False)


def _earlier_shard(rows_path: Path, npy_path: Path, skipped_path: Path, utterances: list[Utterance],
                   features: FeatureConfig) -> tuple[list, list] | None:
    """(rows, skipped) of a shard an earlier run completed, when it holds exactly these utterances (every
    field: a corrected transcript or speaker is redone) computed with these features; else None."""
    if not (rows_path.is_file() and npy_path.is_file() and skipped_path.is_file()):
        return None
    try:
        marker = json.loads(skipped_path.read_text(encoding="utf-8"))
        rows = [json.loads(line) for line in rows_path.read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("features") != asdict(features):
        return None  # other features (or a shard from before the marker held them)
    skipped_ids = {s["id"] for s in marker["skipped"]}
    wanted = {_identity(_described(u)) for u in utterances if u.id not in skipped_ids}
    if {_identity(r) for r in rows} != wanted or not skipped_ids <= {u.id for u in utterances}:
        return None
    return rows, marker["skipped"]


def _summary(stem: str, rows: list[dict]) -> dict:
    return {"name": Path(stem).name, "utterances": len(rows), "frames": sum(r["frames"] for r in rows),
            "seconds": round(sum(r["duration"] for r in rows), 3)}
