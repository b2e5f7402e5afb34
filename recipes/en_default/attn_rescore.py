"""Rescore the beam with an attention decoder over the acoustic model's frames (session 28 experiment).

    python attn_rescore.py cache   --model en-default -o exp/attn/cache.pt data/so762-train.jsonl ...
    python attn_rescore.py train   exp/attn/cache.pt -o exp/attn/decoder.pt --minutes 40
    python attn_rescore.py rescore --model en-default exp/attn/decoder.pt data/so762-dev.jsonl -o exp/attn/dev

The beam search's final hypotheses hold a transcript 6 points better than the one it picks (oracle 33.4 %
on so762-dev against 39.8 %), and a better LM alone does not find it (a word LSTM moved nothing, session 20).
Joint CTC/attention systems (ESPnet; WeNet's "attention rescoring") re-rank CTC's n-best with an
autoregressive decoder that reads the encoder's frames: a scorer that both listens and reads the words
in order. Here the bundled model's encoder is frozen, so its CTC posteriors, and the beam, stay exactly
as bundled: the decoder only re-ranks. It is trained on the encoder's outputs of the bundled model's
training audio, cached once clean and once augmented as in training (waveform augmentation,
SpecAugment, the encoder's dropout), so that it learns from frames as imperfect as unseen speakers give.

Rescoring: each utterance is searched on the bundled decoding's two frame grids; of each grid's K best
transcripts, the one with the best text score (LM, word bonus) + mean CTC fit over the grids (what
DecodingOptions.shifts does with K = 1) + beta * the decoder's log-probability is kept. The grid over K
and beta is printed with its speaker-fold cross-validated WER (tune_lm.py's folds).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

SOS_EOS = 0  # the CTC blank's id never occurs in a transcript, so it marks both ends of one
CACHE_BATCH_SECONDS = 120.0  # audio per encoder batch while caching
TRAIN_BATCH_FRAMES = 12_000  # encoder frames (40 ms each) per decoder training batch
MEMORY_TIME_MASKS = 2  # spans of encoder frames zeroed per training utterance
MEMORY_MASK_FRAC = 0.05  # each span at most this share of the utterance
LABEL_SMOOTHING = 0.1
BETAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)  # weight of the decoder's log-probability
KS = (1, 2, 4, 8, 16)  # best transcripts kept from each grid's search


class RescoringDecoder(nn.Module):
    """A small Transformer decoder: (B, L) token ids, (B, T, d) encoder frames → (B, L, vocab) logits."""

    def __init__(self, vocab_size: int, d_model: int = 144, n_layers: int = 3, n_heads: int = 4,
                 ff_mult: int = 4, dropout: float = 0.1, max_tokens: int = 512):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_tokens, d_model)
        layer = nn.TransformerDecoderLayer(d_model, n_heads, ff_mult * d_model, dropout, batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerDecoder(layer, n_layers)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                           ff_mult=ff_mult, dropout=dropout, max_tokens=max_tokens)

    def forward(self, tokens: torch.Tensor, token_pad: torch.Tensor, memory: torch.Tensor,
                memory_pad: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.position(positions)[None]
        causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool, device=tokens.device).triu(1)
        x = self.layers(x, memory, tgt_mask=causal, tgt_is_causal=True, tgt_key_padding_mask=token_pad,
                        memory_key_padding_mask=memory_pad)
        return self.out(self.norm(x))


def teacher_forced(token_lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token lists → decoder input (<s> + tokens), target (tokens + </s>), padding mask; all (B, L + 1)."""
    width = max(len(t) for t in token_lists) + 1
    inputs = torch.full((len(token_lists), width), SOS_EOS)
    targets = torch.full((len(token_lists), width), -100)  # ignored by the loss
    for i, tokens in enumerate(token_lists):
        inputs[i, 1: len(tokens) + 1] = torch.tensor(tokens, dtype=torch.long)
        targets[i, : len(tokens) + 1] = torch.tensor(tokens + [SOS_EOS], dtype=torch.long)
    return inputs, targets, targets == -100


def padded_memory(frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    memory = nn.utils.rnn.pad_sequence([f.float() for f in frames], batch_first=True)
    lengths = torch.tensor([len(f) for f in frames])
    return memory, torch.arange(memory.shape[1])[None] >= lengths[:, None]


# ---------------------------------------------------------------- cache

def cmd_cache(args) -> None:
    import vocable
    from vocable.config import load_config
    from vocable.data import read_manifest
    from vocable.data.loader import SpeechDataset, collate
    from vocable.features import spec_augment
    from vocable.train import build_augmenter

    torch.set_num_threads(args.threads)
    recognizer = vocable.load(args.model, threads=args.threads)
    model = recognizer.model.float()
    config = load_config(args.config)
    utterances = [u for manifest in args.manifests for u in read_manifest(manifest) if u.text]
    out = {"model": args.model, "views": {}, "tokens": [recognizer.tokenizer.encode(u.text) for u in utterances],
           "ids": [u.id for u in utterances]}
    for view in ("clean", "augmented"):
        augment = build_augmenter(config, utterances) if view == "augmented" else None
        dataset = SpeechDataset(utterances, recognizer.tokenizer, recognizer.features, augment, seed=28)
        order = sorted(range(len(utterances)), key=lambda i: utterances[i].duration or 0.0)
        batches, batch, seconds = [], [], 0.0
        for i in order:
            batch.append(i)
            seconds += utterances[i].duration or 5.0
            if seconds >= CACHE_BATCH_SECONDS:
                batches.append(batch)
                batch, seconds = [], 0.0
        batches += [batch] if batch else []
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=1)
        frames: list = [None] * len(utterances)
        generator = torch.Generator().manual_seed(28)
        model.train(view == "augmented")  # the encoder's dropout as one more corruption of its frames
        with torch.inference_mode():
            for indices, (feats, lengths, *_rest) in zip(batches, tqdm(loader, desc=f"cache {view}", unit="batch")):
                if view == "augmented":
                    s = config.spec_augment
                    feats = spec_augment(feats, lengths, s.freq_masks, s.freq_width, s.time_masks,
                                         s.time_width_frac, generator)
                x, out_lengths, _ = model.encode(feats, lengths)
                for row, i in enumerate(indices):
                    frames[i] = x[row, : int(out_lengths[row])].to(torch.float16).clone()
        out["views"][view] = frames
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, args.output)
    print(f"{args.output}: {len(utterances)} utterances, {sum(len(f) for f in frames)} frames per view")


# ---------------------------------------------------------------- train

def masked_memory(frames: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """A copy of one utterance's (T, d) frames with MEMORY_TIME_MASKS random spans zeroed."""
    frames = frames.float().clone()
    width = max(1, int(len(frames) * MEMORY_MASK_FRAC))
    for _ in range(MEMORY_TIME_MASKS):
        start, span = rng.randrange(len(frames)), rng.randint(0, width)
        frames[start: start + span] = 0.0
    return frames


def frame_batches(lengths: list[int], rng: random.Random) -> list[list[int]]:
    """Indices in batches of similar length, about TRAIN_BATCH_FRAMES padded frames each, shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i] + rng.random())
    batches, batch = [], []
    for i in order:
        if batch and (len(batch) + 1) * lengths[i] > TRAIN_BATCH_FRAMES:
            batches.append(batch)
            batch = []
        batch.append(i)
    batches += [batch] if batch else []
    rng.shuffle(batches)
    return batches


def cmd_train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(28)
    rng = random.Random(28)
    cache = torch.load(args.cache)
    tokens = cache["tokens"]
    views = list(cache["views"].values())
    held = set(rng.sample(range(len(tokens)), min(300, len(tokens) // 20)))  # a loss to watch, not to report
    train_ids = [i for i in range(len(tokens)) if i not in held]
    vocab = args.vocab_size
    decoder = RescoringDecoder(vocab, d_model=views[0][0].shape[1], n_layers=args.layers)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=args.lr, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=LABEL_SMOOTHING)
    lengths = [len(views[0][i]) for i in train_ids]
    steps_per_epoch = len(frame_batches(lengths, random.Random(0)))
    start, step, epoch, best_held = time.monotonic(), 0, 0, math.inf
    budget = args.minutes * 60

    def lr_at(elapsed: float) -> float:  # linear warm-up over 200 steps, then cosine to 0 at the budget's end
        warm = min(1.0, (step + 1) / 200)
        return args.lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))

    while time.monotonic() - start < budget:
        decoder.train()
        total = count = 0.0
        for batch in tqdm(frame_batches(lengths, rng), desc=f"epoch {epoch}", unit="step", total=steps_per_epoch):
            elapsed = time.monotonic() - start
            if elapsed >= budget:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(elapsed)
            ids = [train_ids[i] for i in batch]
            memory, memory_pad = padded_memory([masked_memory(views[rng.randrange(len(views))][i], rng) for i in ids])
            inputs, targets, pad = teacher_forced([tokens[i] for i in ids])
            logits = decoder(inputs, pad, memory, memory_pad)
            loss = loss_fn(logits.reshape(-1, vocab), targets.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(decoder.parameters(), 5.0)
            optimizer.step()
            step += 1
            total, count = total + float(loss), count + 1
        held_loss = held_out_loss(decoder, views[0], tokens, sorted(held), vocab)
        print(f"epoch {epoch}: step {step}, train loss {total / max(1, count):.3f}, held-out clean loss "
              f"{held_loss:.3f}, {(time.monotonic() - start) / 60:.1f} min", flush=True)
        if held_loss < best_held:  # the text is small: the decoder can learn it by heart, so keep its best
            best_held = held_loss
            torch.save({"config": decoder.config, "state": decoder.state_dict(), "step": step,
                        "held_out_loss": held_loss}, args.output)
        epoch += 1


@torch.inference_mode()
def held_out_loss(decoder, frames, tokens, ids, vocab) -> float:
    decoder.eval()
    memory, memory_pad = padded_memory([frames[i] for i in ids])
    inputs, targets, pad = teacher_forced([tokens[i] for i in ids])
    logits = decoder(inputs, pad, memory, memory_pad)
    return float(nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), ignore_index=-100))


# ---------------------------------------------------------------- rescore

@torch.inference_mode()
def sequence_log_probs(decoder, frames: torch.Tensor, token_lists: list[list[int]]) -> list[float]:
    """ln p(tokens + </s> | frames) for each candidate: one batch over the candidates."""
    inputs, targets, pad = teacher_forced(token_lists)
    memory = frames.float()[None].expand(len(token_lists), -1, -1)
    memory_pad = torch.zeros(memory.shape[:2], dtype=torch.bool)
    log_probs = decoder(inputs, pad, memory, memory_pad).log_softmax(-1)
    picked = log_probs.gather(-1, targets.clamp_min(0)[..., None])[..., 0].masked_fill(pad, 0.0)
    return picked.sum(-1).tolist()


def cmd_rescore(args) -> None:
    import vocable
    from vocable.audio import load_audio
    from vocable.data import read_manifest
    from vocable.decoding import ctc_log_likelihood, penalise_blank
    from vocable.evaluate import word_errors
    from vocable.features import compute_features
    from tune_lm import cross_validated_wer, pooled_wer, speaker_folds

    torch.set_num_threads(1)
    recognizer = vocable.load(args.model, threads=1)
    model = recognizer.model.float().eval()
    search_decoder = recognizer.decoder()  # the model's own decoding (meta: LM, weights, shifts)
    shifts, penalty = search_decoder.options.shifts, search_decoder.options.blank_penalty
    saved = torch.load(args.decoder)
    decoder = RescoringDecoder(**saved["config"])
    decoder.load_state_dict(saved["state"])
    decoder.eval()
    utterances = [u for u in read_manifest(args.manifest) if u.text]
    errors = {(k, beta): [] for k in KS for beta in BETAS}
    texts = {point: [] for point in errors}
    for utt in tqdm(utterances, desc="rescore", unit="utt"):
        audio = load_audio(utt.audio)
        grids = recognizer.log_probs_on_grids([audio], shifts)[0]
        feats = compute_features(torch.from_numpy(audio), recognizer.features)
        frames = model.encode(feats, torch.tensor([feats.shape[1]]))[0][0]
        finals = [search_decoder.search.search(lp)[: max(KS)] for lp in grids]
        scored = [penalise_blank(g, penalty) for g in grids]
        text_score, ctc_fit = {}, {}
        rank = {}  # a text's best rank in any grid's finals
        for grid_finals in finals:
            for r, (total, acoustic, _, text) in enumerate(grid_finals):
                text_score.setdefault(text, total - acoustic)
                rank[text] = min(rank.get(text, r), r)
        candidates = list(text_score)
        token_lists = [recognizer.tokenizer.encode(t) for t in candidates]
        for text, tokens in zip(candidates, token_lists):
            ctc_fit[text] = sum(ctc_log_likelihood(g, tokens) for g in scored) / len(scored)
        attention = dict(zip(candidates, sequence_log_probs(decoder, frames, token_lists))) if candidates else {}
        for k, beta in errors:
            pool = [t for t in candidates if rank[t] < k]
            best = max(pool, key=lambda t: text_score[t] + ctc_fit[t] + beta * attention[t], default="")
            errors[k, beta].append(word_errors(utt.text, best))
            texts[k, beta].append(best)
    folds = speaker_folds([u.speaker for u in utterances])
    grid = {point: pooled_wer(e) for point, e in errors.items()}
    print(f"{args.manifest}: {len(utterances)} utterances; model {args.model}; decoder {args.decoder} "
          f"(step {saved['step']}, held-out loss {saved.get('held_out_loss', float('nan')):.3f})")
    print("| K \\ beta | " + " | ".join(f"{b:g}" for b in BETAS) + " |\n|---|" + "---|" * len(BETAS))
    for k in KS:
        print(f"| {k} | " + " | ".join(f"{grid[k, b]:.2%}" for b in BETAS) + " |")
    best_point = min(grid, key=grid.get)
    cv, chosen = cross_validated_wer(errors, folds)
    print(f"best: K {best_point[0]}, beta {best_point[1]:g}: {grid[best_point]:.2%} (tuned on this set); "
          f"cross-validated over speaker folds {cv:.2%} (points {chosen}); K 1, beta 0 (the bundled pick): "
          f"{grid[1, 0.0]:.2%}")
    args.output.mkdir(parents=True, exist_ok=True)
    for name, point in (("bundled", (1, 0.0)), ("best", best_point)):
        rows = [{"id": u.id, "speaker": u.speaker, "ref": u.text, "hyp": t, "word_errors": e[0], "words": e[1]}
                for u, t, e in zip(utterances, texts[point], errors[point])]
        (args.output / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (args.output / "grid.json").write_text(json.dumps({f"{k} {b}": w for (k, b), w in grid.items()}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = p.add_subparsers(dest="command", required=True)
    c = commands.add_parser("cache", help="the frozen encoder's frames of training audio, clean and augmented")
    c.add_argument("manifests", nargs="+")
    c.add_argument("--model", default="en-default")
    c.add_argument("--config", default="conformer-cpu-ft.toml", help="its [augment] and [spec_augment]")
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("-o", "--output", type=Path, required=True)
    t = commands.add_parser("train", help="train the decoder on cached frames")
    t.add_argument("cache", type=Path)
    t.add_argument("-o", "--output", type=Path, required=True)
    t.add_argument("--minutes", type=float, default=40.0)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--layers", type=int, default=3)
    t.add_argument("--vocab-size", type=int, default=129, help="the acoustic model's outputs (tokens + blank)")
    t.add_argument("--threads", type=int, default=2)
    r = commands.add_parser("rescore", help="re-rank the bundled decoding's finals on a dev set")
    r.add_argument("decoder", type=Path)
    r.add_argument("manifest")
    r.add_argument("--model", default="en-default")
    r.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args()
    {"cache": cmd_cache, "train": cmd_train, "rescore": cmd_rescore}[args.command](args)


if __name__ == "__main__":
    main()
