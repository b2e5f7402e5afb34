"""Training batches: utterances → (features, tokens), grouped by duration under a seconds budget."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from tqdm import tqdm

from ..audio import SAMPLE_RATE, audio_info, load_audio
from ..errors import AudioError, AudioWarning, ConfigError, DataError, VocableError, warn
from ..features import FeatureConfig, compute_features, num_frames
from ..models.common import subsampled_lengths
from ..tokenizer import Tokenizer
from .augment import Augmenter
from .manifest import Utterance
from .shards import SHARD_KEY, check_feature_config, load_features

MAX_UNREADABLE_IN_A_ROW = 20  # utterances tried in place of an unreadable one before training stops


def fill_durations(utterances: list[Utterance], show_progress: bool = True) -> list[str]:
    """Measure missing durations from file headers; returns ids of unreadable files (left at 0). A file
    that is gone is unreadable too, though its manifest gives a duration (set to 0, so `usable` skips it)."""
    bad = []
    for u in utterances:
        if u.duration > 0 and SHARD_KEY not in u.meta and not os.path.isfile(u.audio):
            u.duration = 0.0
    missing = [u for u in utterances if u.duration <= 0]
    for u in tqdm(missing, desc="measuring durations", unit="utt", disable=not show_progress or len(missing) < 200):
        try:
            u.duration = audio_info(u.audio)[0]
        except VocableError:
            bad.append(u.id)
    return bad


def ctc_min_frames(tokens: list[int]) -> int:
    """The fewest output frames CTC can emit `tokens` in: one each, and a blank between two equal ones
    (with fewer the loss is infinite, zeroed by zero_infinity: the utterance would teach nothing)."""
    return len(tokens) + sum(a == b for a, b in zip(tokens, tokens[1:]))


def usable(utterances: list[Utterance], tokenizer: Tokenizer, max_duration: float
           ) -> tuple[list[Utterance], dict[str, list[Utterance]]]:
    """Keep utterances a CTC model can learn from; the others by reason (only reasons that occur)."""
    kept, skipped = [], {"unreadable": [], "too long": [], "empty text": [], "too short for its text": []}
    for u in utterances:
        tokens = tokenizer.encode(u.text) if 0 < u.duration <= max_duration else []
        if u.duration <= 0:
            skipped["unreadable"].append(u)
        elif u.duration > max_duration:
            skipped["too long"].append(u)
        elif not tokens:
            skipped["empty text"].append(u)
        elif ctc_frames(u.duration) < ctc_min_frames(tokens):
            skipped["too short for its text"].append(u)
        else:
            kept.append(u)
    return kept, {k: v for k, v in skipped.items() if v}


SKIPPED_EXAMPLES = 3  # utterances named per reason when some are left out


def skipped_counts(skipped: dict[str, list[Utterance]]) -> dict[str, int] | str:
    return {reason: len(utts) for reason, utts in skipped.items()} or "none"


def skipped_examples(skipped: dict[str, list[Utterance]]) -> str:
    """The utterances left out, a few per reason, named so they can be found: "unreadable: a.wav (gone)"."""
    def name(u: Utterance, reason: str) -> str:
        if reason != "unreadable":
            return f"{u.id} ({u.duration:.2f} s)" if reason.startswith("too") else u.id
        return f"{u.audio} ({'no such file' if not os.path.exists(u.audio) else 'not readable audio'})"
    return "; ".join(f"{reason}: " + ", ".join(name(u, reason) for u in utts[:SKIPPED_EXAMPLES])
                     + (f" and {len(utts) - SKIPPED_EXAMPLES} more" if len(utts) > SKIPPED_EXAMPLES else "")
                     for reason, utts in skipped.items())


def ctc_frames(duration: float) -> int:
    return int(subsampled_lengths(torch.tensor([num_frames(int(duration * SAMPLE_RATE))]))[0])


class SpeechDataset(torch.utils.data.Dataset):
    """Item i → (features (T, F) float32, token ids (L,) int64, duration in seconds)."""

    def __init__(self, utterances: list[Utterance], tokenizer: Tokenizer, features: FeatureConfig,
                 augment: Augmenter | None = None, seed: int = 0, role: str = "training"):
        check_feature_config(utterances, features)
        if augment is not None and any(SHARD_KEY in u.meta for u in utterances):
            raise ConfigError("[augment]: waveform augmentation needs raw audio, but training data includes "
                              "feature shards; train on the manifest instead (SpecAugment works with both)")
        self.utterances, self.tokenizer, self.features = utterances, tokenizer, features
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.role = role  # what an unreadable file is left out of, in its warning

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int):
        """The item, or when its audio cannot be read (a file changed or damaged after the run began) the
        next readable one, with a one-line warning: hours of training are not lost to one file."""
        for offset in range(MAX_UNREADABLE_IN_A_ROW):
            try:
                return self._item((index + offset) % len(self.utterances))
            except AudioError as e:
                warn(f"{e}; left out of {self.role}", AudioWarning)
        raise DataError(f"{MAX_UNREADABLE_IN_A_ROW} utterances in a row of {self.role} are unreadable (the last: "
                        f"{self.utterances[(index + offset) % len(self.utterances)].audio})")

    def _item(self, index: int):
        u = self.utterances[index]
        tokens = torch.tensor(self.tokenizer.encode(u.text), dtype=torch.long)
        if SHARD_KEY in u.meta:  # precomputed (vocable data prepare): no waveform augmentation
            return torch.from_numpy(load_features(u)), tokens, u.duration
        audio = load_audio(u.audio)
        if self.augment is not None:
            # Seeded by (seed, epoch, index): the same run resumed sees the same augmentation.
            rng = np.random.default_rng([self.seed, self.epoch, index])
            audio = self.augment(audio, rng)
        feats = compute_features(torch.from_numpy(audio), self.features)[0]
        return feats, tokens, len(audio) / SAMPLE_RATE


def collate(items):
    """List of dataset items → (feats (B, T, F), feat_lengths (B,), targets (sum L,), target_lengths (B,))."""
    feats = torch.nn.utils.rnn.pad_sequence([i[0] for i in items], batch_first=True)
    feat_lengths = torch.tensor([i[0].shape[0] for i in items])
    targets = torch.cat([i[1] for i in items])
    target_lengths = torch.tensor([len(i[1]) for i in items])
    seconds = float(sum(i[2] for i in items))
    return feats, feat_lengths, targets, target_lengths, seconds


def bucket_batches(durations: list[float], max_seconds: float, seed: int, epoch: int,
                   rank: int = 0, world_size: int = 1, groups: list | None = None,
                   shortest_first: bool = False) -> list[list[int]]:
    """Batches of similar-length utterances, each ≤ max_seconds of audio, shuffled per epoch.

    Sorting by duration with a little noise keeps padding low but varies batch make-up between
    epochs. With several ranks, each gets an equal number of batches (a few left over are dropped).
    With `groups` (each utterance's feature shard), batches never mix groups and each rank takes
    whole groups, so ranks and loader workers each read their own shards.
    `shortest_first` orders batches by length instead of shuffling them (SortaGrad, Amodei et al.
    2016): CTC leaves its all-blank plateau sooner when the first steps see short utterances.
    """
    rng = random.Random(seed * 1000 + epoch)

    def ordered(batches: list[list[int]]) -> list[list[int]]:
        if shortest_first:
            return sorted(batches, key=lambda b: max(durations[i] for i in b))
        rng.shuffle(batches)
        return batches

    members: dict = {}
    for i, group in enumerate(groups if groups is not None else [0] * len(durations)):
        members.setdefault(group, []).append(i)
    order = list(members)
    rng.shuffle(order)
    per_group = [pack(members[g], durations, max_seconds, rng) for g in order]
    if world_size > 1 and len(per_group) >= world_size:
        mine = [b for k, group in enumerate(per_group) if k % world_size == rank for b in group]
        fewest = min(sum(len(g) for g in per_group[r::world_size]) for r in range(world_size))
        return ordered(mine)[:fewest]
    batches = ordered([b for group in per_group for b in group])
    per_rank = len(batches) // world_size if world_size > 1 else len(batches)
    return batches[rank * per_rank:(rank + 1) * per_rank] if world_size > 1 else batches


def pack(indices: list[int], durations: list[float], max_seconds: float, rng: random.Random) -> list[list[int]]:
    """`indices` sorted by noisy duration, cut into batches whose padded length stays ≤ max_seconds."""
    order = sorted(indices, key=lambda i: durations[i] * rng.uniform(0.9, 1.1))
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
    return batches


def feature_stats(dataset: SpeechDataset, max_items: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per feature dimension over a fixed sample of the training set (no augmentation)."""
    augment, dataset.augment = dataset.augment, None
    indices = random.Random(seed).sample(range(len(dataset)), min(max_items, len(dataset)))
    frames = torch.cat([dataset[i][0] for i in indices])
    dataset.augment = augment
    return frames.mean(dim=0), frames.std(dim=0)
