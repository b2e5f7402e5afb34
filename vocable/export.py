"""Export a .vocable model to a self-contained ONNX file (fp32 or int8) for the torch-free runtime.

    vocable export fsdd-digits -o digits.onnx --int8 --check data/dev.jsonl

Every architecture keeps a dynamic batch and length:
- cnn-rnn: the legacy TorchScript exporter (the dynamo exporter fails on aten.gru/lstm with a symbolic
  length). It is traced on a padded batch of two, so packed sequences become ONNX `sequence_lens` and
  padded batches stay exact. Unidirectional (streaming) models are exported with their RNN state as
  inputs `state_*` and outputs `next_state_*`, so one graph serves batch and chunk-by-chunk decoding.
- transformer / conformer: the dynamo exporter (the legacy one froze the length of attention models).
The graph ends in a log-softmax, so the runtime gets log-probabilities. int8 = onnxruntime dynamic
quantisation of MatMul/Gemm weights (per output channel by default); convolutions stay fp32 because
ConvInteger was slower than fp32 here, and onnxruntime does not quantise GRUs.

Before writing, the exported model is run on real speech next to the torch model; a model whose
posteriors differ by more than the tolerance is refused (ExportError) and nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .audio import load_audio
from .errors import ModelError, VocableError, VocableWarning, warn
from .features_np import MIN_INPUT_FRAMES, pad_batch
from .files import written_atomically
from .modelfile import LoadedModel, load_model_file
from .models.common import subsampled_lengths
from .runtime import ONNX_FORMAT, ONNX_FORMAT_VERSION, load_onnx
from .transcribe import Recognizer

LEGACY_OPSET = 17  # TorchScript exporter (cnn-rnn)
DYNAMO_OPSET = 18  # dynamo exporter (attention models)
FP32_TOLERANCE = 1e-3  # largest |posterior difference| allowed between torch and an fp32 export
INT8_TOLERANCE = 0.2  # the same for int8 (fsdd-digits measured 0.01): quantisation moves posteriors
INT8_MIN_FRAME_AGREEMENT = 0.95  # int8 must also pick torch's best token on this share of frames
QUANTIZE_OPS = ("MatMul", "Gemm")  # ConvInteger was slower than fp32 convolution here
CHECK_UTTERANCES = 16  # real utterances compared with torch before writing
CHECK_SENTENCES = ("the quick brown fox jumps over the lazy dog", "seven three zero nine",
                   "please call stella and ask her to bring these things")  # espeak-ng fallback audio


class ExportError(VocableError):
    """The exported model does not reproduce the torch model (or cannot be exported)."""


@dataclass
class ExportOptions:
    int8: bool = False
    per_channel: bool = True  # int8: one scale per output channel (per tensor when False)
    tolerance: float | None = None  # max |posterior difference|; None = FP32_TOLERANCE / INT8_TOLERANCE
    audio: list = field(default_factory=list)  # real speech to compare on (paths, bytes or 16 kHz arrays)

    @property
    def max_diff(self) -> float:
        if self.tolerance is not None:
            return self.tolerance
        return INT8_TOLERANCE if self.int8 else FP32_TOLERANCE


@dataclass
class Comparison:
    """How an exported model's output compares with the torch model's on the same audio."""
    utterances: int
    max_prob_diff: float  # largest |p_torch - p_onnx| over every frame and token
    frame_agreement: float  # share of frames where both pick the same best token
    same_text: float  # share of utterances with identical text end to end (runtime: numpy features)
    batch_max_prob_diff: float  # the same as max_prob_diff, for all utterances run as one padded batch

    def failures(self, options: ExportOptions) -> list[str]:
        problems = []
        worst = max(self.max_prob_diff, self.batch_max_prob_diff)
        if worst > options.max_diff:
            problems.append(f"posteriors differ by up to {worst:.2e} (tolerance {options.max_diff:g})")
        if options.int8 and self.frame_agreement < INT8_MIN_FRAME_AGREEMENT:
            problems.append(f"best token agrees on {self.frame_agreement:.1%} of frames "
                            f"(need {INT8_MIN_FRAME_AGREEMENT:.0%})")
        return problems


def export_model(model: str | os.PathLike, out: str | os.PathLike, options: ExportOptions | None = None
                 ) -> Comparison:
    """Export `model` (bundled name or .vocable path) to `out`; returns the comparison with torch.

    Raises ExportError, writing nothing, when the export does not reproduce the torch model.
    """
    options = options or ExportOptions()
    out = Path(out)
    if out.is_dir():  # found now, not after the minute an export and its check take
        raise ExportError(f"{out}: a folder; give the .onnx file to write")
    loaded = load_model_file(model)
    audio = check_audio(options.audio)
    with tempfile.TemporaryDirectory(prefix="vocable-export-") as tmp:
        graph = Path(tmp) / "model.onnx"
        export_graph(loaded, graph)
        if options.int8:
            quantized = Path(tmp) / "model.int8.onnx"
            quantize(graph, quantized, options.per_channel)
            graph = quantized
        write_metadata(graph, loaded, options)
        comparison = compare(loaded, load_onnx(graph, threads=1), audio)
        problems = comparison.failures(options)
        if problems:
            on = "your audio" if options.audio else "espeak-ng English sentences"
            raise ExportError(f"{out}: not written: the exported model does not match {loaded.path} on "
                              f"{comparison.utterances} utterances of {on}: {'; '.join(problems)}; "
                              f"same text on {comparison.same_text:.0%} of them (compare on speech of the "
                              f"model's own domain with --check DATASET; --tolerance sets the posterior limit)")
        out.parent.mkdir(parents=True, exist_ok=True)  # only for a model that is written
        with written_atomically(out) as staged:
            shutil.copyfile(graph, staged)
    return comparison


# -- graph export ----------------------------------------------------------------------------


class _Batch(nn.Module):
    """features (B, T, F), lengths (B,) → log_probs (B, T', V), out_lengths (B,)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features, lengths):
        logits, out_lengths = self.model(features, lengths)
        return torch.log_softmax(logits, dim=-1), out_lengths


class _Streaming(nn.Module):
    """A unidirectional cnn-rnn with its RNN state as inputs and outputs (its forward_chunk, batched).

    Valid output frames of a causal model never see padding, so zero state + padded batch = forward().
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.lstm = isinstance(model.rnn, nn.LSTM)

    def forward(self, features, lengths, *state):
        logits, next_state = self.model.forward_chunk(features, tuple(state) if self.lstm else state[0])
        next_state = next_state if self.lstm else (next_state,)
        return (torch.log_softmax(logits, dim=-1), subsampled_lengths(lengths), *next_state)


def state_spec(loaded: LoadedModel) -> list[dict]:
    """The RNN state tensors of a streaming cnn-rnn (empty for other models)."""
    config = loaded.model_config
    if config.arch != "cnn-rnn" or not config.streaming:
        return []
    rnn = loaded.model.rnn
    names = ["h", "c"] if isinstance(rnn, nn.LSTM) else ["h"]
    return [{"input": f"state_{n}", "output": f"next_state_{n}", "shape": [rnn.num_layers, rnn.hidden_size]}
            for n in names]


def export_graph(loaded: LoadedModel, path: Path) -> None:
    """Write the fp32 ONNX graph of `loaded.model` (no metadata yet)."""
    model = loaded.model.cpu().eval()
    dim = loaded.features.dim
    # Two utterances of different lengths: the trace takes the padded (packed) path of cnn-rnn models.
    feats = torch.randn(2, 64, dim)
    lengths = torch.tensor([64, 41])
    try:
        if loaded.model_config.arch == "cnn-rnn":
            _export_legacy(loaded, model, feats, lengths, path)
        else:
            _export_dynamo(model, feats, lengths, path)
    except VocableError:
        raise
    except Exception as e:  # the exporters raise many types; name the model and the cause
        raise ExportError(f"{loaded.path}: ONNX export failed ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''})") from e


def _export_legacy(loaded: LoadedModel, model: nn.Module, feats, lengths, path: Path) -> None:
    state = state_spec(loaded)
    batch_axes = {"features": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                  "log_probs": {0: "batch", 1: "frames"}, "out_lengths": {0: "batch"}}
    if state:
        wrapper = _Streaming(model)
        args = (feats, lengths, *[torch.zeros(s["shape"][0], 2, s["shape"][1]) for s in state])
        for s in state:
            batch_axes[s["input"]] = {1: "batch"}
            batch_axes[s["output"]] = {1: "batch"}
    else:
        wrapper, args = _Batch(model), (feats, lengths)
    wrapper.eval()  # the exporter restores the wrapper's mode afterwards, recursively: keep it eval
    with warnings.catch_warnings(), torch.no_grad(), _quiet_stderr():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches (checked below)
        torch.onnx.export(wrapper, args, str(path), dynamo=False, opset_version=LEGACY_OPSET,
                          input_names=["features", "lengths", *[s["input"] for s in state]],
                          output_names=["log_probs", "out_lengths", *[s["output"] for s in state]],
                          dynamic_axes=batch_axes)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence what C++ code writes straight to file descriptor 2 (the TorchScript exporter's notes that
    prim::PackPadded has no shape inference: harmless, the packed path is checked against torch)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _export_dynamo(model: nn.Module, feats, lengths, path: Path) -> None:
    import logging
    batch = torch.export.Dim("batch", min=1, max=4096)
    time_ = torch.export.Dim("time", min=MIN_INPUT_FRAMES, max=6 * 3600 * 100)  # up to 6 h of 10 ms frames
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(_Batch(model).eval(), (feats, lengths), dynamo=True, opset_version=DYNAMO_OPSET,
                                        input_names=["features", "lengths"],
                                        output_names=["log_probs", "out_lengths"],
                                        dynamic_shapes=({0: batch, 1: time_}, {0: batch}), verbose=False)
        program.save(str(path), external_data=False)
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def quantize(src: Path, dst: Path, per_channel: bool = True) -> None:
    """int8 dynamic quantisation of the MatMul/Gemm weights of `src` into `dst`."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # it logs advice about pre-processing on every call
    try:
        # reduce_range: 7-bit weights. On CPUs without VNNI (AVX2) onnxruntime multiplies u8 by s8 into
        # saturating int16 pairs, and full-range weights overflow them: posteriors then drifted 0.046-0.060 from
        # torch (fsdd-digits, en-default), against 0.004-0.028 with 7-bit weights, on a 2-core AVX2 EPYC.
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=list(QUANTIZE_OPS), per_channel=per_channel,
                         reduce_range=True, weight_type=QuantType.QInt8)
    finally:
        root.level = level


def write_metadata(path: Path, loaded: LoadedModel, options: ExportOptions) -> None:
    """Store everything the runtime needs (configs, tokenizer, meta) in the file's metadata_props."""
    import onnx

    from . import __version__
    model = onnx.load(str(path))
    meta = {**loaded.meta, "exported_from": os.path.basename(loaded.path), "exported_by": f"vocable {__version__}",
            "precision": ("int8" + ("" if options.per_channel else "-per-tensor")) if options.int8 else "fp32"}
    values = {"format": ONNX_FORMAT, "format_version": str(ONNX_FORMAT_VERSION),
              "model_config": json.dumps(asdict(loaded.model_config)),
              "features": json.dumps(asdict(loaded.features)),
              "tokenizer": json.dumps(loaded.tokenizer.to_dict()),
              "meta": json.dumps(meta, default=str), "state": json.dumps(state_spec(loaded))}
    del model.metadata_props[:]
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


# -- checking against torch ------------------------------------------------------------------


def check_audio(sources: list) -> list[np.ndarray]:
    """The real speech to compare on: the given sources, or espeak-ng sentences when none are given."""
    if sources:
        if len(sources) > CHECK_UTTERANCES:
            warn(f"export compares torch and ONNX on the first {CHECK_UTTERANCES} of the {len(sources)} audio "
                 f"files given", VocableWarning)
        return [load_audio(s) for s in sources[:CHECK_UTTERANCES]]
    if shutil.which("espeak-ng") is None:
        raise ExportError("export checks the ONNX model against torch on real speech: give some with "
                          "--check DATASET or --audio FILE (or install espeak-ng)")
    return [load_audio(_espeak(text)) for text in CHECK_SENTENCES]


def _espeak(text: str) -> bytes:
    # to a file: the WAV header espeak-ng writes to a pipe declares a placeholder length (a file "cut short")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        done = subprocess.run(["espeak-ng", "-w", str(wav), text], capture_output=True, timeout=60)
        if done.returncode != 0 or not wav.is_file() or not wav.stat().st_size:
            raise ExportError(f"espeak-ng failed ({done.stderr.decode(errors='replace').strip()[:200]})")
        return wav.read_bytes()


def compare(loaded: LoadedModel, exported: Recognizer, audio: list[np.ndarray]) -> Comparison:
    """Run the torch model and the exported one on the same features of `audio`.

    Each utterance alone, then all as one padded batch (dynamic batch and length). The graphs get
    identical (torch) features; the end-to-end text also goes through the runtime's numpy features.
    """
    from .features import compute_features
    feats = [compute_features(torch.from_numpy(a), loaded.features)[0].numpy() for a in audio]
    max_diff, agree, frames = 0.0, 0, 0
    for f in feats:
        ref, out = _run_both(loaded.model, exported.engine, [f])
        max_diff = max(max_diff, _max_prob_diff(ref, out))
        agree += int((ref[0].argmax(-1) == out[0].argmax(-1)).sum())
        frames += len(ref[0])
    batch_diff = _max_prob_diff(*_run_both(loaded.model, exported.engine, feats))
    reference = Recognizer(loaded)
    same = sum(reference.transcribe(a).text == exported.transcribe(a).text for a in audio)
    return Comparison(len(audio), max_diff, agree / max(1, frames), same / max(1, len(audio)), batch_diff)


def _run_both(model: nn.Module, engine, feats: list[np.ndarray]) -> tuple[list, list]:
    """(T, F) feature arrays → per-utterance log-probs from torch and from the ONNX engine."""
    batch, lengths = pad_batch(feats)
    with torch.inference_mode():
        logits, ref_lengths = model(torch.from_numpy(batch), torch.from_numpy(lengths))
        ref = torch.log_softmax(logits, dim=-1).numpy()
    out, out_lengths, _ = engine.forward(batch, lengths)
    if not np.array_equal(ref_lengths.numpy(), out_lengths) or ref.shape != out.shape:
        raise ExportError(f"exported model gives {out.shape[1]} frames (lengths {out_lengths.tolist()}) where "
                          f"torch gives {ref.shape[1]} ({ref_lengths.tolist()})")
    return ([ref[i, : int(n)] for i, n in enumerate(ref_lengths)],
            [out[i, : int(n)] for i, n in enumerate(out_lengths)])


def _max_prob_diff(ref: list[np.ndarray], out: list[np.ndarray]) -> float:
    return max(float(np.abs(np.exp(r) - np.exp(o)).max()) for r, o in zip(ref, out))


@dataclass
class SpeedRow:
    name: str
    wer: float
    rtf: float  # processing seconds per audio second, 1 thread, batch 1
    size_mb: float


def check_dataset(model: str | os.PathLike, exported: str | os.PathLike, dataset: str | os.PathLike,
                  limit: int = 0, threads: int = 1) -> list[SpeedRow]:
    """WER and speed of the original and the exported model on `dataset` (same utterances, `threads`)."""
    from .data.manifest import read_dataset
    from .evaluate import evaluate_dataset
    from .bundled import resolve_model_path
    from .transcribe import load
    utterances = read_dataset(dataset)
    utterances = utterances[:limit] if limit else utterances
    rows = []
    for path in (resolve_model_path(model), Path(exported)):
        recognizer = load(path, threads=threads)
        summary = evaluate_dataset(recognizer, utterances, show_progress=False)
        if not summary.utterances:
            raise ModelError(f"{dataset}: no readable utterances")
        rows.append(SpeedRow(path.name, summary.wer, summary.rtf, path.stat().st_size / 1e6))
    return rows
