"""Test-time levers tried on the bundled model (docs/models.md): none is used by vocable.

    python test_time.py ensemble data/so762-dev.jsonl -o exp/ens.json --models A.vocable B.vocable
    python test_time.py adapt data/so762-dev.jsonl -o exp/adapt.json --model A.vocable [--lr 1e-3 --steps 10]

ensemble: the mean of several models' CTC log-probabilities, frame by frame (the models must share a
tokenizer; they do when one was trained from the other's weights).
adapt: single-utterance test-time adaptation in the manner of SUTA (Lin et al., "Listen, Adapt, Better
WER", 2022): before an utterance is decoded, the model's LayerNorms and convolutional front end take
STEPS Adam steps on that utterance alone, lowering the entropy of its non-blank frames and the
confusion between output classes (--pseudo: the CTC loss towards the unadapted model's own LM
decoding instead); the weights are reset before the next utterance.

Each writes a `vocable evaluate --json` style file (rows included), so `vocable evaluate --compare`
pairs it with the bundled model's; add --greedy to decode without the LM.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import numpy as np
import torch

from vocable.errors import run_script
import vocable
from vocable.decoding import DecodingOptions
from vocable.evaluate import evaluate_dataset
from vocable.features import compute_features
from vocable.transcribe import Recognizer

# en-default's decoding when these levers were measured (session 12, before its blank penalty)
MEASURED_DECODING = DecodingOptions(beam_size=32, lm="en-3gram", lm_weight=1.0, word_bonus=3.0, blank_penalty=0.0)
TEMPERATURE = 2.5  # softens the posteriors inside the adaptation losses (SUTA's value)
ENTROPY_SHARE = 0.3  # loss = 0.3 entropy + 0.7 class confusion (SUTA's value)


class MeanEngine:
    """Several models' engines as one: the mean of their (frames, vocab) log-probabilities, renormalised."""

    def __init__(self, recognizers: list[Recognizer]):
        first = recognizers[0].tokenizer.to_dict()
        if any(r.tokenizer.to_dict() != first for r in recognizers[1:]):
            raise SystemExit("ensemble: the models' tokenizers differ")
        self.engines = [r.engine for r in recognizers]

    def log_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        means = []
        for parts in zip(*(engine.log_probs_batch(audios) for engine in self.engines)):
            frames = min(len(p) for p in parts)
            mean = np.mean([p[:frames] for p in parts], axis=0)
            means.append(mean - np.logaddexp.reduce(mean, axis=-1, keepdims=True))
        return means


def class_confusion(logits: torch.Tensor) -> torch.Tensor:
    """Minimum class confusion loss (Jin et al. 2020) of (frames, vocab) logits: how much probability
    mass the frames share between different classes, frames weighted up where they are confident."""
    probs = torch.softmax(logits / TEMPERATURE, dim=-1)
    entropy = -(probs * probs.clamp_min(1e-8).log()).sum(-1)
    weight = 1 + torch.exp(-entropy)
    weight = (len(weight) * weight / weight.sum()).unsqueeze(1)
    confusion = (probs * weight).T @ probs
    confusion = confusion / confusion.sum(1, keepdim=True).clamp_min(1e-8)
    return (confusion.sum() - confusion.trace()) / confusion.shape[0]


def nonblank_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the frames whose best label is not the blank (all frames if every one is)."""
    log_probs = torch.log_softmax(logits / TEMPERATURE, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    nonblank = logits.argmax(-1) != 0
    return entropy[nonblank].mean() if nonblank.any() else entropy.mean()


class AdaptingEngine:
    """A torch model that adapts its LayerNorms and front end to each utterance before scoring it."""

    def __init__(self, recognizer: Recognizer, lr: float, steps: int, pseudo: DecodingOptions | None = None):
        self.model, self.features, self.lr, self.steps = recognizer.model.float().eval(), recognizer.features, lr, steps
        self.recognizer, self.pseudo = recognizer, pseudo
        self.model.requires_grad_(False)
        self.params = [p for name, p in self.model.named_parameters()
                       if name.startswith("subsample.") or "norm" in name]  # FeatureNorm has no parameters
        self.start = [p.detach().clone() for p in self.params]
        self.lock = threading.Lock()  # the weights change while an utterance is adapted

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model(feats, torch.tensor([feats.shape[1]]))[0][0]

    def pseudo_label(self, feats: torch.Tensor) -> torch.Tensor | None:
        """The tokens of the unadapted model's decoding of this utterance (with self.pseudo's LM)."""
        with torch.inference_mode():
            log_probs = torch.log_softmax(self.logits(feats), dim=-1).numpy()
        text = self.recognizer.decode(log_probs, options=self.pseudo).text
        return torch.tensor(self.recognizer.tokenizer.encode(text), dtype=torch.long) if text else None

    def log_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        with self.lock:
            return [self.adapted_log_probs(audio) for audio in audios]

    def adapted_log_probs(self, audio: np.ndarray) -> np.ndarray:
        feats = compute_features(torch.from_numpy(np.asarray(audio, dtype=np.float32)), self.features)
        with torch.no_grad():
            for p, p0 in zip(self.params, self.start):
                p.copy_(p0)
        for p in self.params:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(self.params, lr=self.lr)
        target = self.pseudo_label(feats) if self.pseudo is not None else None
        for _ in range(self.steps):
            logits = self.logits(feats)
            if target is not None:
                loss = torch.nn.functional.ctc_loss(torch.log_softmax(logits, -1)[:, None], target[None],
                                                    torch.tensor([len(logits)]), torch.tensor([len(target)]),
                                                    zero_infinity=True)
            else:
                loss = ENTROPY_SHARE * nonblank_entropy(logits) + (1 - ENTROPY_SHARE) * class_confusion(logits)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for p in self.params:
            p.requires_grad_(False)
        with torch.inference_mode():
            return torch.log_softmax(self.logits(feats), dim=-1).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["ensemble", "adapt"])
    p.add_argument("manifest")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--models", nargs="+", default=["default"], help="ensemble: the models to average")
    p.add_argument("--model", default="default", help="adapt: the model to adapt")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--greedy", action="store_true", help="decode without the LM")
    p.add_argument("--pseudo", action="store_true",
                   help="adapt: train towards the unadapted model's LM decoding (CTC) instead of lower entropy")
    args = p.parse_args()
    torch.set_num_threads(1)
    from vocable.data.manifest import read_manifest

    if args.mode == "ensemble":
        recognizers = [vocable.load(m) for m in args.models]
        recognizer = Recognizer(recognizers[0].loaded, engine=MeanEngine(recognizers))
    else:
        base = vocable.load(args.model)
        recognizer = Recognizer(base.loaded, engine=AdaptingEngine(base, args.lr, args.steps,
                                                                   MEASURED_DECODING if args.pseudo else None))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, so none of it is lost
    options = DecodingOptions(lm="none") if args.greedy else MEASURED_DECODING
    summary = evaluate_dataset(recognizer, read_manifest(args.manifest),
                               transcribe=lambda audio: recognizer.transcribe(audio, options=options).text)
    result = {"dataset": args.manifest, "decoding": repr(options), "mode": args.mode,
              "model": "+".join(args.models) if args.mode == "ensemble" else args.model,
              "adapt": {"lr": args.lr, "steps": args.steps} if args.mode == "adapt" else None,
              **summary.to_dict(with_rows=True)}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"{args.out}: WER {100 * summary.wer:.1f} %, CER {100 * summary.cer:.1f} %, RTF {summary.rtf:.3f}")


if __name__ == "__main__":
    run_script(main)
