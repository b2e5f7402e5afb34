"""Data loading throughput: raw audio (with and without augmentation) vs precomputed feature shards.

Measures utterances/s and audio-seconds/s of vocable's training DataLoader (decode, resample,
augment, log-mel, tokenise, collate), and compares them with what training consumes: ~40-80
audio-s/s for a 4 M-parameter model on 2 CPU cores (/work/shared/NOTES.md).

    python benchmarks/data_throughput.py [--manifest M] [--limit 300] [--workers 0 2]

Default data: ../shared/data/speechocean762-train (16 kHz Ogg/Opus), else the FSDD test fixtures.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from vocable.errors import run_script
from vocable.config import AugmentConfig
from vocable.data.augment import build_augmenter
from vocable.data.loader import SpeechDataset, bucket_batches, collate
from vocable.data.manifest import read_dataset
from vocable.data.shards import prepare_shards
from vocable.features import FeatureConfig
from vocable.tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = [ROOT.parent / "shared" / "data" / "speechocean762-train", ROOT / "tests" / "fixtures" / "fsdd"]
MAX_BATCH_SECONDS = 100.0  # audio per batch, as a small training config would use
TRAINING_NEEDS = "40-80"  # audio-s/s a 4 M model trains at on 2 cores (fp32-bf16, NOTES.md)
AUGMENT = AugmentConfig(noise_prob=0.8, babble_prob=0.3, reverb_prob=0.5, speed_prob=0.6, gain_db=(-6.0, 6.0),
                        telephone_prob=0.1)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(dataset: SpeechDataset, workers: int, epochs: int = 1) -> tuple[float, float]:
    """(utterances/s, audio-s/s) of one pass of the training DataLoader over `dataset`."""
    durations = [u.duration for u in dataset.utterances]
    utterances = seconds = 0.0
    started = time.perf_counter()
    for epoch in range(epochs):
        batches = bucket_batches(durations, MAX_BATCH_SECONDS, seed=0, epoch=epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=workers)
        for feats, feat_lengths, _, _, batch_seconds in loader:
            utterances += len(feat_lengths)
            seconds += batch_seconds
    elapsed = time.perf_counter() - started
    return utterances / elapsed, seconds / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", help="manifest or Kaldi folder (default: speechocean762-train or FSDD fixtures)")
    parser.add_argument("--limit", type=int, default=300, help="utterances measured")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to try")
    args = parser.parse_args()
    torch.set_num_threads(1)

    source = Path(args.manifest) if args.manifest else next(p for p in DEFAULT_DATA if p.exists())
    utts = read_dataset(source)[: args.limit]
    from vocable.data.loader import fill_durations
    fill_durations(utts, show_progress=False)
    tokenizer = train_tokenizer([u.text for u in utts], "char")
    features = FeatureConfig()
    hours = sum(u.duration for u in utts) / 3600

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        prepare_shards(utts, tmp, features, shard_size=100, jobs=1, show_progress=False)
        prepare_s = time.perf_counter() - started
        sharded = read_dataset(tmp)
        setups = [("raw audio", SpeechDataset(utts, tokenizer, features)),
                  ("raw audio + augmentation", SpeechDataset(utts, tokenizer, features,
                                                             build_augmenter(AUGMENT, [u.audio for u in utts]))),
                  ("fp16 shards", SpeechDataset(sharded, tokenizer, features))]
        results = []
        for name, dataset in setups:
            for workers in args.workers:
                measure(dataset, workers) if name == "fp16 shards" else None  # warm the page cache once
                results.append((name, workers, *measure(dataset, workers)))

    print(f"\nmachine: {cpu_name()}, {os.cpu_count()} cores visible, torch {torch.__version__}, 1 thread per process")
    print(f"data: {source} — first {len(utts)} utterances, {hours:.2f} h "
          f"(mean {hours * 3600 / len(utts):.1f} s); 80-dim log-mel; batches of ≤ {MAX_BATCH_SECONDS:.0f} s")
    print(f"augmentation: {AUGMENT}")
    print(f"shards: prepared in {prepare_s:.1f} s ({hours * 3600 / prepare_s:.0f} audio-s/s, 1 process)\n")
    print("| source | loader workers | utterances/s | audio-s/s | loading time / training time at 40 and 80 audio-s/s |")
    print("|---|---|---|---|---|")
    low, high = (float(x) for x in TRAINING_NEEDS.split("-"))
    for name, workers, utt_s, audio_s in results:
        print(f"| {name} | {workers} | {utt_s:.1f} | {audio_s:.0f} | {low / audio_s:.0%} / {high / audio_s:.0%} |")
    print("\nWith 0 workers loading adds its time to every step; workers overlap it with training but "
          "share the same cores.")

if __name__ == "__main__":
    run_script(main)
