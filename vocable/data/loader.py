"""Training batches: utterances → (features, tokens), grouped by duration under a seconds budget."""

from __future__ import annotations

import random
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..audio import SAMPLE_RATE, audio_info, load_audio
from ..errors import VocableError
from ..features import FeatureConfig, compute_features, num_frames
from ..models.common import subsampled_lengths
from ..tokenizer import Tokenizer
from .manifest import Utterance

# (waveform, rng) → waveform; see vocable/data/augment.py
Augmenter = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def fill_durations(utterances: list[Utterance], show_progress: bool = True) -> list[str]:
    """Measure missing durations from file headers; returns ids of unreadable files (left at 0)."""
    bad = []
    missing = [u for u in utterances if u.duration <= 0]
    for u in tqdm(missing, desc="measuring durations", unit="utt", disable=not show_progress or len(missing) < 200):
        try:
            u.duration = audio_info(u.audio)[0]
        except VocableError:
            bad.append(u.id)
    return bad


def usable(utterances: list[Utterance], tokenizer: Tokenizer, max_duration: float) -> tuple[list[Utterance], dict]:
    """Keep utterances a CTC model can learn from; count the others by reason."""
    kept, skipped = [], {"unreadable": 0, "too long": 0, "empty text": 0, "too short for its text": 0}
    for u in utterances:
        if u.duration <= 0:
            skipped["unreadable"] += 1
        elif u.duration > max_duration:
            skipped["too long"] += 1
        elif not tokenizer.encode(u.text):
            skipped["empty text"] += 1
        elif ctc_frames(u.duration) < len(tokenizer.encode(u.text)):
            skipped["too short for its text"] += 1
        else:
            kept.append(u)
    return kept, {k: v for k, v in skipped.items() if v}


def ctc_frames(duration: float) -> int:
    return int(subsampled_lengths(torch.tensor([num_frames(int(duration * SAMPLE_RATE))]))[0])


class SpeechDataset(torch.utils.data.Dataset):
    """Item i → (features (T, F) float32, token ids (L,) int64, duration in seconds)."""

    def __init__(self, utterances: list[Utterance], tokenizer: Tokenizer, features: FeatureConfig,
                 augment: Augmenter | None = None, seed: int = 0):
        self.utterances, self.tokenizer, self.features = utterances, tokenizer, features
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int):
        u = self.utterances[index]
        audio = load_audio(u.audio)
        if self.augment is not None:
            # Seeded by (seed, epoch, index): the same run resumed sees the same augmentation.
            rng = np.random.default_rng([self.seed, self.epoch, index])
            audio = self.augment(audio, rng)
        feats = compute_features(torch.from_numpy(audio), self.features)[0]
        return feats, torch.tensor(self.tokenizer.encode(u.text), dtype=torch.long), len(audio) / SAMPLE_RATE


def collate(items):
    """List of dataset items → (feats (B, T, F), feat_lengths (B,), targets (sum L,), target_lengths (B,))."""
    feats = torch.nn.utils.rnn.pad_sequence([i[0] for i in items], batch_first=True)
    feat_lengths = torch.tensor([i[0].shape[0] for i in items])
    targets = torch.cat([i[1] for i in items])
    target_lengths = torch.tensor([len(i[1]) for i in items])
    seconds = float(sum(i[2] for i in items))
    return feats, feat_lengths, targets, target_lengths, seconds


def bucket_batches(durations: list[float], max_seconds: float, seed: int, epoch: int,
                   rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """Batches of similar-length utterances, each ≤ max_seconds of audio, shuffled per epoch.

    Sorting by duration with a little noise keeps padding low but varies batch make-up between
    epochs. With several ranks, each gets an equal number of batches (a few left over are dropped).
    """
    rng = random.Random(seed * 1000 + epoch)
    order = sorted(range(len(durations)), key=lambda i: durations[i] * rng.uniform(0.9, 1.1))
    batches, current, longest = [], [], 0.0
    for i in order:
        longest_if_added = max(longest, durations[i])
        if current and longest_if_added * (len(current) + 1) > max_seconds:
            batches.append(current)
            current, longest_if_added = [], durations[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    rng.shuffle(batches)
    per_rank = len(batches) // world_size if world_size > 1 else len(batches)
    return batches[rank * per_rank:(rank + 1) * per_rank] if world_size > 1 else batches


def feature_stats(dataset: SpeechDataset, max_items: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per feature dimension over a fixed sample of the training set (no augmentation)."""
    augment, dataset.augment = dataset.augment, None
    indices = random.Random(seed).sample(range(len(dataset)), min(max_items, len(dataset)))
    frames = torch.cat([dataset[i][0] for i in indices])
    dataset.augment = augment
    return frames.mean(dim=0), frames.std(dim=0)
