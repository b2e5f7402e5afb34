"""Training: `vocable train CONFIG.toml` — read it top to bottom in `train()`.

Runs on one CPU/GPU, or several processes under `torchrun --nproc_per_node N` (DDP: gloo on CPU,
nccl on GPU). Writes into run.out_dir:
    last.ckpt          resumable state, every run.checkpoint_every steps and at each epoch end
    epoch-N.pt         weights after epoch N (the last run.average_last are kept for averaging)
    best.vocable       the model file with the lowest dev WER so far
    model.vocable      the final model: average of the last run.average_last epochs
    metrics.csv        step, epoch, loss, lr, audio seconds per second, dev WER/CER
    training.png       metrics.csv drawn: loss by step, dev WER/CER by epoch (redrawn each epoch)
    tokenizer.json     the tokenizer, fixed at the start so a resumed run keeps it
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from .config import AugmentConfig, TokenizerConfig, TrainConfig
from .data.loader import (SpeechDataset, bucket_batches, collate, feature_stats, fill_durations, skipped_counts,
                          skipped_examples, usable)
from .data.importers import spoken_symbols
from .data.leaks import check_no_leak
from .data.manifest import Utterance, read_dataset
from .data.shards import SHARD_KEY, shard_groups
from .decoding import greedy_decode
from .errors import ConfigError, DataError, ModelError
from .evaluate import cer, wer
from .features import freq_warp, spec_augment, warp_factors
from .files import written_atomically
from .modelfile import load_model_file, save_model
from .models import build_model, count_parameters
from .tokenizer import Tokenizer, english_losses, tokenizer_from_dict, train_tokenizer
from .transcribe import FRAME_SECONDS

OUTPUT_LAYER = "head."  # the parameter prefix of every model's output layer (vocable/models/*.py)


def train(config: TrainConfig, resume: bool = False, show_progress: bool = True) -> Path:
    """Train a model as configured; returns the path of the final model file."""
    rank, world_size, device = setup_distributed(config.run.device)
    is_main = rank == 0
    if config.run.threads > 0:
        torch.set_num_threads(config.run.threads)
    torch.manual_seed(config.run.seed)
    out = Path(config.run.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"[run] out_dir: {out}: {(e.strerror or str(e)).lower()}") from None
    log = (lambda *a: print(*a, flush=True)) if is_main else (lambda *a: None)
    precision = machine_precision(config, device, log)

    # An earlier run's files are continued (--resume) or left alone: a new run would average its epochs in.
    earlier = earlier_run(out)
    if earlier and not resume:
        raise ConfigError(f"[run] out_dir: {out} holds an earlier run ({earlier}): continue it with --resume, "
                          f"or train into another out_dir")
    resuming = resume and (out / "last.ckpt").exists()
    if resume and not resuming:
        log(f"--resume: no checkpoint in {out}; starting a new run")
    # A model to start from is read first: a wrong path or shape is refused before minutes of data reading.
    start = starting_model(config) if config.run.init_from else None
    inherited = decoding_meta(None if config.run.new_head else start, log)
    if start is not None and not config.run.new_head:
        config = replace(config, tokenizer=start_tokenizer_settings(config, start.tokenizer, log))
    if resuming:
        start = None  # the checkpoint has the weights

    train_utts, dev_utts, tokenizer = training_data(config, out, start, resume, is_main, log,
                                                    show_progress and is_main)
    augment = build_augmenter(config, train_utts)
    dataset = SpeechDataset(train_utts, tokenizer, config.features, augment, config.run.seed)
    model = build_model(config.model, config.features.dim, tokenizer.vocab_size).to(device)
    if start is not None:
        init_weights(model, start, config)
    elif not resuming:  # a new model: feature statistics of the training data (else they come with the weights)
        model.norm.set_stats(*[s.to(device) for s in feature_stats(dataset, seed=config.run.seed)])
    log(f"model: {config.model.arch}, {count_parameters(model) / 1e6:.2f} M parameters, vocab {tokenizer.vocab_size}")

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    # fp16 gradients underflow to zero unless the loss is scaled up first (bf16 has fp32's range: no need)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    durations, shards = [u.duration for u in train_utts], shard_groups(train_utts)  # shards: None for raw audio
    steps_per_epoch = len(bucket_batches(durations, config.data.max_batch_seconds, config.run.seed, 0, rank, world_size,
                                         shards))
    total_steps = planned_steps(config, steps_per_epoch, log)
    budget = config.optim.max_minutes * 60  # seconds of training; 0 = unlimited
    device_batches = batches_on_device(config, train_utts, tokenizer, augment, device, show_progress and is_main)

    state = {"step": 0, "epoch": 0, "batch": 0, "best_wer": math.inf, "elapsed": 0.0}
    if resuming:
        state = load_checkpoint(out / "last.ckpt", model, optimizer)
        log(f"resumed from {out / 'last.ckpt'} at step {state['step']} "
            f"(epoch {state['epoch']}, batch {state['batch']})")
        state.setdefault("elapsed", 0.0)  # checkpoints from before [optim] max_minutes
    ddp_model = torch.nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    metrics = MetricsLog(out, config.run.log, is_main, state if resuming else None)

    def save_state():
        if is_main:
            save_checkpoint(out / "last.ckpt", model, optimizer, state)

    dev_set = DevSet(config, tokenizer, dev_utts) if is_main else None
    clock_start = time.perf_counter() - state.get("elapsed", 0.0)  # wall time spent training, across resumes

    def finished() -> bool:
        done = state["step"] >= total_steps or bool(budget and state["elapsed"] >= budget)
        if budget and world_size > 1:  # each rank has its own clock: stop when any of them is out of time
            flag = torch.tensor([float(done)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            done = bool(flag.item())
        return done

    while state["epoch"] < config.optim.epochs and not finished():
        epoch = state["epoch"]
        dataset.epoch = epoch
        # Large English runs leave CTC's all-blank plateau only on clean data: augment after that.
        augmenting = augment is not None and epoch >= config.augment.after_epochs
        dataset.augment = augment if augmenting else None
        batches = bucket_batches(durations, config.data.max_batch_seconds, config.run.seed, epoch, rank, world_size,
                                 shards, shortest_first=config.data.sortagrad and epoch == 0)
        if device_batches is not None:
            loader = (device_batches.batch(b, augmenting, epoch, k) for k, b in enumerate(batches)
                      if k >= state["batch"])
        else:
            # its own generator: drawing the workers' seed from the global one (after a resume restored it,
            # before the stopped run saved it) shifted a resumed run's dropout masks
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches[state["batch"]:], collate_fn=collate,
                                                 num_workers=config.data.num_workers,
                                                 generator=torch.Generator().manual_seed(config.run.seed + epoch))
        bar = tqdm(total=len(batches), initial=state["batch"], desc=f"epoch {epoch + 1}/{config.optim.epochs}",
                   unit="batch", disable=not (show_progress and is_main), dynamic_ncols=True)
        model.train()
        fetched = time.perf_counter()
        for feats, feat_lengths, targets, target_lengths, seconds in loader:
            lr = set_learning_rate(optimizer, config, state["step"], total_steps,
                                   state["elapsed"] / budget if budget else 0.0)
            loss = train_step(ddp_model, optimizer, config, device, precision, state["step"], epoch,
                              feats, feat_lengths, targets, target_lengths, scaler)
            if not math.isfinite(loss):
                check_weights_finite(model, config, state["step"] + 1, loss)
            took, fetched = time.perf_counter() - fetched, time.perf_counter()  # loading + step
            state["elapsed"] = fetched - clock_start
            speed = seconds * world_size / took
            state["step"] += 1
            state["batch"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", audio_s_per_s=f"{speed:.0f}", lr=f"{lr:.2e}")
            metrics.write(step=state["step"], epoch=epoch + 1, loss=loss, lr=lr, audio_s_per_s=speed)
            if state["step"] % config.run.checkpoint_every == 0:
                save_state()
            if finished():
                break
        bar.close()
        state["epoch"], state["batch"] = epoch + 1, 0
        if is_main:
            end_epoch(out, model, config, tokenizer, dev_set, state, metrics, log, inherited)
        save_state()
        if world_size > 1:
            dist.barrier()

    if state["step"] < config.optim.warmup_steps:  # the rate was still rising: it never peaked nor decayed
        log(f"warning: training ended at step {state['step']}, within [optim] warmup_steps = "
            f"{config.optim.warmup_steps}, at {config.optim.lr * state['step'] / config.optim.warmup_steps:.2e}, "
            f"below lr = {config.optim.lr:g}: lower warmup_steps or give more max_minutes / max_steps")
    final = out / "model.vocable"
    if is_main:
        average = average_epochs(out, config.run.average_last)
        model.load_state_dict(average)
        save_model(final, model, config.model, config.features, tokenizer,
                   model_meta(config, state, train_utts, inherited), half=config.run.half_model)
        log(f"wrote {final}")
    metrics.close()
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final


def machine_precision(config: TrainConfig, device: torch.device, log) -> str:
    """The precision to train in on this machine. config.optim.precision stays as asked, so the saved config
    (and a resume on a machine with native bf16) keeps bf16."""
    if config.optim.precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        # Measured on a 2-core AVX2 EPYC, one thread: a training step of the 3 M conformer on 40 s of audio
        # took 4.6 s in bf16 autocast and 0.66 s in fp32 (two processes: 9 against 74 audio-s/s).
        log("[optim] precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 is ~7x "
            "slower than fp32; training in fp32")
        return "fp32"
    return config.optim.precision


def training_data(config: TrainConfig, out: Path, start, resume: bool, is_main: bool, log,
                  show_progress: bool) -> tuple[list[Utterance], list[Utterance], Tokenizer]:
    """(train, dev, tokenizer): the manifests read, the tokenizer fixed (its text alone decides it), leaks
    refused, and what CTC cannot learn left out, with the reasons logged."""
    train_utts, dev_utts = read_all(config.data.train), read_all(config.data.dev)
    tokenizer = fixed_tokenizer(out, train_utts, config, start, resume, is_main, log)
    if tokenizer.normalizer == "english":
        warn_if_not_english(train_utts, log)
    if tokenizer.normalizer != "none":
        warn_if_symbols_dropped(train_utts, tokenizer.normalizer, log)
    check_no_leak(train_utts, dev_utts, config.data.allow_overlap, config.data.hash_audio, show_progress)
    for utts in (train_utts, dev_utts):
        fill_durations(utts, show_progress)
    train_utts, skipped = usable(train_utts, tokenizer, config.data.max_duration)
    dev_utts, dev_skipped = usable(dev_utts, tokenizer, config.data.max_duration)
    if not train_utts:
        raise DataError("no usable training utterances ("
                        + (f"left out: {skipped_examples(skipped)})" if skipped else "the manifests list none)"))
    hours = sum(u.duration for u in train_utts) / 3600
    log(f"train: {len(train_utts)} utterances, {hours:.2f} h; skipped: {skipped_counts(skipped)}; "
        f"dev: {len(dev_utts)}; skipped: {skipped_counts(dev_skipped)}")
    for name, left_out in (("train", skipped), ("dev", dev_skipped)):
        if left_out:
            log(f"warning: {name} utterances left out: {skipped_examples(left_out)}")
    return train_utts, dev_utts, tokenizer


def planned_steps(config: TrainConfig, steps_per_epoch: int, log) -> int:
    """The steps the run will take, over which the learning rate decays: [optim] max_steps or epochs, whichever
    ends first (a schedule planned past the end would stop while the rate is still high)."""
    by_epochs = steps_per_epoch * config.optim.epochs
    if config.optim.max_steps > by_epochs:
        log(f"warning: [optim] max_steps = {config.optim.max_steps} is more than [optim] epochs = "
            f"{config.optim.epochs} give ({steps_per_epoch} steps each): the run ends at step {by_epochs}, its "
            f"learning rate decaying over those; raise epochs to train {config.optim.max_steps} steps")
    return min(config.optim.max_steps or by_epochs, by_epochs)


def train_step(model, optimizer, config: TrainConfig, device, precision: str, step: int, epoch: int,
               feats, feat_lengths, targets, target_lengths, scaler=None) -> float:
    """One optimiser step on a batch; returns its loss. `scaler`: a torch.amp.GradScaler, enabled for fp16
    (a disabled one, the default, passes the loss and the step through unchanged)."""
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    feats, feat_lengths = feats.to(device), feat_lengths.to(device)
    augmenting = config.spec_augment.enabled and epoch >= config.spec_augment.after_epochs
    views = 2 if augmenting and config.optim.consistency_weight else 1  # clean epochs: one view, no KL
    if augmenting:
        generator = torch.Generator().manual_seed(config.run.seed * 100003 + step)
        feats = torch.cat([masked_view(feats, feat_lengths, config, generator) for _ in range(views)])
        feat_lengths, targets, target_lengths = (feat_lengths.repeat(views), targets.repeat(views),
                                                 target_lengths.repeat(views))
    targets, target_lengths = targets.to(device), target_lengths.to(device)
    with autocast(precision, device):
        if config.model.self_condition:
            logits, out_lengths, inter_logits = model(feats, feat_lengths, intermediate=True)
        else:
            (logits, out_lengths), inter_logits = model(feats, feat_lengths), None
    loss = ctc_loss(logits, out_lengths, targets, target_lengths)
    if inter_logits is not None:
        weight = config.optim.intermediate_weight
        loss = (1 - weight) * loss + weight * ctc_loss(inter_logits, out_lengths, targets, target_lengths)
    if views > 1:
        loss = loss + config.optim.consistency_weight * consistency_loss(logits, out_lengths, target_lengths)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # clipping sees the true gradients
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    scaler.step(optimizer)  # skipped when the scaled gradients overflowed
    scaler.update()
    return float(loss.detach())


def masked_view(feats, feat_lengths, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """One SpecAugment view of (B, T, F) features (frequency warp first, when configured)."""
    s = config.spec_augment
    if s.freq_warp:
        feats = freq_warp(feats, warp_factors(len(feats), s.freq_warp, generator), config.features.n_mels)
    return spec_augment(feats, feat_lengths, s.freq_masks, s.freq_width, s.time_masks, s.time_width_frac, generator)


def consistency_loss(logits, out_lengths, target_lengths) -> torch.Tensor:
    """CR-CTC's consistency term for logits (2B, T, V) of two views of the same B utterances (first half, second
    half): KL(sg(p1) || p2) + KL(sg(p2) || p1) summed over each utterance's frames and divided by its
    target length (as ctc_loss normalises), then averaged over the utterances. Each view learns from the
    other's posteriors, held fixed."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    first, second = log_probs.chunk(2)
    frames = torch.arange(logits.shape[1], device=logits.device)[None, :] < out_lengths.chunk(2)[0][:, None]

    def kl(target, learner):  # (B, T) per frame
        return (target.exp() * (target - learner)).sum(-1)
    per_frame = kl(first.detach(), second) + kl(second.detach(), first)
    per_utterance = (per_frame * frames).sum(-1) / target_lengths.chunk(2)[0].clamp_min(1)
    return per_utterance.mean()


def ctc_loss(logits, out_lengths, targets, target_lengths) -> torch.Tensor:
    """Mean CTC loss of logits (B, T, V) against concatenated targets; blank is token 0."""
    log_probs = torch.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V) as ctc_loss wants
    return torch.nn.functional.ctc_loss(log_probs, targets, out_lengths, target_lengths,
                                        blank=0, reduction="mean", zero_infinity=True)


def check_weights_finite(model: torch.nn.Module, config: TrainConfig, step: int, loss: float) -> None:
    """After a step whose loss is not finite: weights that became NaN or infinite stay so (the run would go
    on, then write a model no one can load), so training stops here, saying which setting to change."""
    if all(torch.isfinite(p).all() for p in model.parameters()):
        return  # one batch's bad loss (fp16's scaler skips its step): the weights are whole
    raise ConfigError(f"training diverged at step {step}: the weights became NaN or infinite (loss {loss}); "
                      f"lower [optim] lr (now {config.optim.lr:g}) or raise warmup_steps "
                      f"(now {config.optim.warmup_steps})")


def set_learning_rate(optimizer, config: TrainConfig, step: int, total_steps: int, time_used: float) -> float:
    """Set and return this step's learning rate: linear warm-up, then cosine/Noam/constant.

    The cosine decay follows whichever budget is further spent: steps, or the fraction
    `time_used` of [optim] max_minutes, so a time-limited run still ends at its low rate.
    """
    o = config.optim
    warmup = max(1, o.warmup_steps)
    if step < warmup:
        factor = (step + 1) / warmup
    elif o.schedule == "noam":
        factor = math.sqrt(warmup / (step + 1))
    elif o.schedule == "cosine":
        progress = min(1.0, max((step - warmup) / max(1, total_steps - warmup), time_used))
        factor = o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        factor = 1.0
    for group in optimizer.param_groups:
        group["lr"] = o.lr * factor
    return o.lr * factor


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware; elsewhere torch emulates it, slowly."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("[optim] precision: fp16 needs a CUDA device; use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


class DevSet:
    """The dev utterances as feature batches, computed once (they never change between epochs)."""

    def __init__(self, config: TrainConfig, tokenizer: Tokenizer, dev_utts: list[Utterance]):
        dataset = SpeechDataset(dev_utts, tokenizer, config.features, role="the dev set")
        order = bucket_batches([u.duration for u in dev_utts], config.data.max_batch_seconds, 0, 0)
        self.batches = [(collate([dataset[i] for i in batch])[:2], [dev_utts[i].text for i in batch])
                        for batch in order]

    def __bool__(self) -> bool:
        return bool(self.batches)

    @torch.inference_mode()
    def error_rates(self, model, tokenizer: Tokenizer) -> tuple[float, float]:
        """Greedy WER and CER of `model` on the dev set."""
        device = next(model.parameters()).device
        model.eval()
        refs, hyps = [], []
        for (feats, feat_lengths), texts in self.batches:
            logits, out_lengths = model(feats.to(device), feat_lengths.to(device))
            log_probs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
            for row, text in enumerate(texts):
                hyps.append(greedy_decode(log_probs[row, : int(out_lengths[row])], tokenizer, FRAME_SECONDS).text)
                refs.append(text)
        model.train()
        return wer(refs, hyps, tokenizer.normalizer), cer(refs, hyps, tokenizer.normalizer)


def end_epoch(out: Path, model, config: TrainConfig, tokenizer, dev_set: DevSet, state: dict, metrics, log,
              inherited: dict) -> None:
    """Validate, keep the best model and this epoch's weights for averaging."""
    epoch = state["epoch"]
    torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, out / f"epoch-{epoch}.pt")
    by_epoch = sorted(out.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    for old in by_epoch[:-max(1, config.run.average_last)]:
        old.unlink()
    if not dev_set:
        plot_curve(out)  # the loss alone
        return
    dev_wer, dev_cer = dev_set.error_rates(model, tokenizer)
    metrics.write(step=state["step"], epoch=epoch, dev_wer=dev_wer, dev_cer=dev_cer)
    log(f"epoch {epoch}: dev WER {dev_wer:.2%}, CER {dev_cer:.2%}")
    plot_curve(out)
    if dev_wer < state["best_wer"]:
        state["best_wer"] = dev_wer
        save_model(out / "best.vocable", model, config.model, config.features, tokenizer,
                   {**model_meta(config, state, [], inherited), "dev_wer": dev_wer, "dev_cer": dev_cer})


def plot_curve(out: Path) -> None:
    """out/training.png from metrics.csv, redrawn each epoch, when matplotlib (the [report] extra) is there."""
    import importlib.util
    if importlib.util.find_spec("matplotlib") is not None:
        from .report import plot_training
        plot_training(out / "metrics.csv", out / "training.png")


def average_epochs(out: Path, last: int) -> dict:
    paths = sorted(out.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))[-max(1, last):]
    if not paths:  # a run stopped within its first epoch
        raise DataError(f"{out}: no epoch-*.pt checkpoints to average (the run ended before its first epoch)")
    return average_states([torch.load(p, map_location="cpu", weights_only=True) for p in paths])


def average_states(states: list[dict]) -> dict:
    """The element-wise mean of state dicts of one architecture (integer buffers: the last one's)."""
    return {k: (sum(s[k].float() for s in states) / len(states)).to(states[0][k].dtype)
            if states[0][k].is_floating_point() else states[-1][k] for k in states[0]}


def model_meta(config: TrainConfig, state: dict, train_utts: list[Utterance], inherited: dict) -> dict:
    """A trained model's meta: how it was trained, after the decoding settings `inherited` from init_from."""
    meta = {**inherited, "name": config.run.name, "steps": state["step"], "epochs": state["epoch"],
            "train_config": json.loads(json.dumps(asdict(config), default=str))}
    if train_utts:
        meta["train_hours"] = round(sum(u.duration for u in train_utts) / 3600, 3)
        meta["train_utterances"] = len(train_utts)
    if math.isfinite(state.get("best_wer", math.inf)):
        meta["best_dev_wer"] = state["best_wer"]
    return meta


# How a model file says it should be decoded (decoding.with_model_defaults, stream.default_options).
DECODING_META = ("lm", "lm_weight", "word_bonus", "blank_penalty", "beam_size", "shifts", "min_phrase_confidence",
                 "stream")


def decoding_meta(start, log) -> dict:
    """The decoding settings of the `run.init_from` model (None: none), kept by the model adapted from it
    without run.new_head (a new head is often a new language, for which its LM would be wrong): without them an
    adapted en-default decodes greedily with no LM (measured: 65.6 % WER on general English against 20.0 %
    with its LM). They were tuned for the start model, so they are a starting point, not a fit."""
    kept = {key: start.meta[key] for key in DECODING_META if start is not None and key in start.meta}
    if kept:
        log(f"decoding settings kept from [run] init_from: {', '.join(sorted(kept))} (tuned for the start model; "
            f"re-tune with recipes/en_default/tune_lm.py of vocable's source for the best figures)")
    return kept


def save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    with written_atomically(path) as tmp:  # a kill during the write keeps the previous checkpoint
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state,
                    "rng": torch.get_rng_state()}, tmp)


def earlier_run(out: Path) -> str:
    """The name of a file an earlier training run left in `out` ("" when there is none)."""
    found = [p.name for p in (out / "last.ckpt", out / "model.vocable", *sorted(out.glob("epoch-*.pt"))) if p.exists()]
    return found[0] if found else ""


def load_checkpoint(path: Path, model, optimizer) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for truncated or foreign files
        detail = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise DataError(f"{path}: not a readable checkpoint ({detail})") from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError:
        raise ConfigError(f"--resume: {path} was trained with another [model], [features] or tokenizer than this "
                          f"config; train into another out_dir to start afresh") from None
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"])
    return ckpt["state"]


def read_all(paths: list[str]) -> list[Utterance]:
    utterances = []
    for path in paths:
        utterances.extend(read_dataset(path))
    return utterances


def fixed_tokenizer(out: Path, train_utts: list[Utterance], config: TrainConfig, start, resume: bool,
                    is_main: bool, log) -> Tokenizer:
    """Train the tokenizer once (rank 0) and store it with the [tokenizer] settings it was made from, so
    resumed and DDP runs share the same one, and a resumed run whose settings changed is refused (the
    weights' shapes need not change with them: a char vocabulary and a 20-piece BPE can be the same size)."""
    path = out / "tokenizer.json"
    settings = tokenizer_settings(config.tokenizer)
    if not (resume and path.exists()):
        if is_main:
            if start is not None and not config.run.new_head:  # continuing a model: keep its output units
                tokenizer = start.tokenizer
            else:
                tokenizer = train_tokenizer([u.text for u in train_utts], config.tokenizer.kind,
                                            config.tokenizer.vocab_size, config.tokenizer.normalizer)
                if config.tokenizer.kind == "bpe" and tokenizer.vocab_size - 1 < config.tokenizer.vocab_size:
                    log(f"warning: [tokenizer] vocab_size = {config.tokenizer.vocab_size}: this text gives only "
                        f"{tokenizer.vocab_size - 1} word pieces; training with those")
            path.write_text(json.dumps({**tokenizer.to_dict(), "settings": settings}))
        if dist.is_initialized():
            dist.barrier()
    stored = json.loads(path.read_text())
    before = stored.pop("settings", settings)  # a run from before settings were stored: not checked
    changed = [f"{key} {before.get(key)!r} → {value!r}" for key, value in settings.items() if before.get(key) != value]
    if changed:
        raise ConfigError(f"--resume: [tokenizer] {'; '.join(changed)}: {out} was trained with the former; "
                          f"train into another out_dir to start afresh")
    return tokenizer_from_dict(stored)


def tokenizer_settings(config: TokenizerConfig) -> dict:
    """The [tokenizer] keys that decide the tokenizer (vocab_size only for BPE)."""
    settings = asdict(config)
    if config.kind != "bpe":
        settings.pop("vocab_size")
    return settings


def warn_if_not_english(utterances: list[Utterance], log) -> None:
    """The English normaliser folds ñ into n and turns ß into a word break: a model trained so on another
    language's transcripts can never write them, and nothing else would say so."""
    losses = english_losses(u.text for u in utterances)
    if losses:
        count = sum(bool(english_losses([u.text])) for u in utterances)
        log(f"warning: [tokenizer] normalizer \"english\" folds or drops letters of {count} of {len(utterances)} "
            f"training transcripts ({' '.join(sorted(losses)[:12])}): for a language other than English set "
            f"normalizer = \"basic\"")


def warn_if_symbols_dropped(utterances: list[Utterance], normalizer: str, log) -> None:
    """"50% off" is trained as "fifty off": `data import` refuses such rows, a hand-written manifest gets this."""
    marked = [(u, symbols) for u in utterances if (symbols := spoken_symbols(u.text))]
    if marked:
        symbols = sorted(set().union(*(s for _, s in marked)))
        log(f"warning: {len(marked)} of {len(utterances)} training transcripts have symbols said as words "
            f"({' '.join(symbols[:12])}) that [tokenizer] normalizer \"{normalizer}\" drops, so those words are "
            f"never learned: write them out (first: {marked[0][0].id}: {marked[0][0].text[:60]!r})")


def starting_model(config: TrainConfig):
    """The model of `run.init_from` (a .vocable file), which must have this config's [model] and [features]
    (load_config fills in the keys a config leaves out)."""
    try:
        start = load_model_file(config.run.init_from)
    except ModelError as e:
        raise ConfigError(f"[run] init_from: {e}") from None
    differences = [f"{section}.{key} = {theirs!r} (this config: {ours!r})"
                   for section, model_side, config_side in (("model", start.model_config, config.model),
                                                            ("features", start.features, config.features))
                   for key, theirs in asdict(model_side).items()
                   if theirs != (ours := asdict(config_side).get(key))]
    if differences:
        raise ConfigError(f"[run] init_from: {config.run.init_from} has {'; '.join(differences[:6])}: give the "
                          f"config's [model] and [features] none of their own keys, or the model's values")
    return start


def start_tokenizer_settings(config: TrainConfig, tokenizer: Tokenizer, log) -> TokenizerConfig:
    """The [tokenizer] of the `run.init_from` model, which a model trained on from it keeps (its output
    layer has that tokenizer's units), so the saved train_config says what was used. A [tokenizer] that
    differs is not used: said here, since only run.new_head trains a new tokenizer."""
    used = TokenizerConfig(tokenizer.kind, tokenizer.vocab_size - 1 if tokenizer.kind == "bpe"
                           else config.tokenizer.vocab_size, tokenizer.normalizer)
    differences = [f"{key} = {asdict(config.tokenizer)[key]!r}" for key, value in asdict(used).items()
                   if asdict(config.tokenizer)[key] != value]
    if differences:
        log(f"warning: [tokenizer] {', '.join(differences)} is not used: the model keeps [run] init_from's "
            f"tokenizer (kind = {used.kind!r}{f', vocab_size = {used.vocab_size}' if used.kind == 'bpe' else ''}, "
            f"normalizer = {used.normalizer!r}); set [run] new_head = true to train a new one")
    return used


def init_weights(model, start, config: TrainConfig) -> None:
    """Start from the weights of the `run.init_from` model; with `run.new_head`, all but the output
    layer, which keeps its fresh initialisation."""
    weights = start.model.state_dict()
    if config.run.new_head:  # the fresh output layer stays: its size is the new tokenizer's
        weights.update({name: w for name, w in model.state_dict().items() if name.startswith(OUTPUT_LAYER)})
    model.load_state_dict(weights)


def batches_on_device(config: TrainConfig, train_utts: list[Utterance], tokenizer: Tokenizer, augment, device,
                      show_progress: bool):
    """With [data] on_device: the training audio held on `device` (vocable/data/device_batches.py), else None."""
    if not config.data.on_device:
        return None
    if any(SHARD_KEY in u.meta for u in train_utts):
        raise ConfigError("[data] on_device: needs raw audio, but training data includes feature shards")
    from .data.device_batches import DeviceBatches
    return DeviceBatches(train_utts, tokenizer, config.features, config.augment if augment else AugmentConfig(),
                         device, config.run.seed, config.data.num_workers, show_progress)


def build_augmenter(config: TrainConfig, train_utts: list[Utterance]):
    """The waveform augmenter, or None when [augment] enables nothing; babble comes from training speech."""
    a = config.augment
    if not any((a.noise_prob, a.reverb_prob, a.speed_prob, a.telephone_prob, a.pad_prob,
                tuple(a.gain_db) != (0.0, 0.0))):
        return None
    from .data.augment import build_augmenter as build
    return build(a, [u.audio for u in train_utts], config.run.seed)


class MetricsLog:
    """Training metrics to metrics.csv (always) and TensorBoard (when asked)."""

    FIELDS = ["step", "epoch", "loss", "lr", "audio_s_per_s", "dev_wer", "dev_cer"]

    def __init__(self, out: Path, kind: str, enabled: bool, resumed: dict | None = None):
        """`resumed`: the state of the checkpoint a run continues from; rows written after it (by the run
        that was killed) are dropped, since the resumed run writes those steps again. A new run starts
        the file afresh."""
        self.enabled, self.writer, self.tb = enabled, None, None
        if not enabled:
            return
        path = out / "metrics.csv"
        kept = self.rows_until(path, resumed) if resumed else []
        with written_atomically(path) as staged, open(staged, "w", newline="") as f:  # a kill cannot lose
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)  # the kept rows
            writer.writeheader()
            writer.writerows(kept)
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.FIELDS)
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("[run] log = 'tensorboard' needs the tensorboard package "
                                  "(pip install tensorboard)") from None
            self.tb = SummaryWriter(str(out / "tensorboard"))

    def rows_until(self, path: Path, state: dict) -> list[dict]:
        """metrics.csv's rows up to the checkpoint: steps it had taken, dev rows of epochs it had finished."""
        if not path.exists():
            return []
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        try:
            return [{k: row.get(k, "") for k in self.FIELDS} for row in rows
                    if (int(row["step"]) <= state["step"] if row.get("loss") else int(row["epoch"]) <= state["epoch"])]
        except (KeyError, TypeError, ValueError):  # not this log's format: start it again rather than fail a run
            return []

    def write(self, **row) -> None:
        if not self.enabled:
            return
        self.writer.writerow(row)
        self.file.flush()
        if self.tb:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    self.tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb:
                self.tb.close()


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (WORLD_SIZE > 1) joins the process group."""
    if device_name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("[run] device: 'cuda', but this torch sees no CUDA GPU; use 'auto' or 'cpu'")
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return rank, world_size, torch.device("cuda", local_rank)
    return rank, world_size, torch.device("cpu")
