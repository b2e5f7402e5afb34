"""Run exported ONNX models on onnxruntime with numpy: no torch (`pip install vocable[runtime]`).

    recognizer = vocable.load("model.onnx", threads=1)
    print(recognizer.transcribe("speech.wav").text)

An exported file (vocable/export.py) is self-contained: its metadata holds the model config, the
feature config, the tokenizer and the model's meta as JSON, so nothing else is read.
Graph signature:
    inputs   features (B, T, F) float32, lengths (B,) int64[, state inputs of streaming models]
    outputs  log_probs (B, T', vocab) float32, out_lengths (B,) int64[, next state]
Streaming models (unidirectional cnn-rnn) take their RNN state as inputs `state_*` shaped
(layers, B, hidden) and return it as `next_state_*`; zeros start an utterance.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .checks import FieldError, model_file_errors, read_common_fields
from .errors import NEEDS_ONNXRUNTIME, ModelError, file_problem
from .features_np import FeatureConfig, compute_features, pad_batch
from .tokenizer import Tokenizer

ONNX_FORMAT = "vocable-onnx"  # metadata "format" of files written by vocable/export.py
ONNX_FORMAT_VERSION = 1
METADATA_JSON_KEYS = ("model_config", "features", "tokenizer", "meta", "state")  # JSON-valued metadata


@dataclass
class OnnxModelFile:
    """What an exported file holds; mirrors modelfile.LoadedModel so a Recognizer can use either."""
    model: OnnxEngine
    model_config: SimpleNamespace  # ModelConfig's fields as attributes, plus `streaming`
    features: FeatureConfig
    tokenizer: Tokenizer
    meta: dict = field(default_factory=dict)
    path: str = ""


class OnnxEngine:
    """An onnxruntime session over an exported model: numpy audio/features in, numpy log-probs out.

    `threads` > 0 sets onnxruntime's intra-op threads (0 = onnxruntime's default: all cores).
    Thread-safe: onnxruntime sessions may be run from several threads at once.
    """

    def __init__(self, path: str | os.PathLike, features: FeatureConfig, threads: int = 0):
        self.session = open_session(path, threads)
        if threads > 0:
            limit_blas_threads(threads)
        self.features = features
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        self.state_inputs, self.state_outputs, self.state_shapes = [], [], []  # set by use_state_spec
        # int8 graphs quantise activations with one scale per tensor, so a batch's other utterances would
        # change an utterance's posteriors (by up to 0.3 on en-default): they run one at a time
        self.one_at_a_time = False

    def use_state_spec(self, state: list) -> None:
        """The streaming state tensors the metadata names, checked against the graph's inputs and outputs."""
        self.state_inputs = [s["input"] for s in state]  # e.g. ["state_h"] or ["state_h", "state_c"]
        self.state_outputs = [s["output"] for s in state]
        self.state_shapes = [tuple(int(n) for n in s["shape"]) for s in state]  # (layers, hidden) per tensor
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        missing = [n for n in self.state_inputs if n not in inputs] + [n for n in self.state_outputs if n not in outputs]
        if missing:
            raise FieldError("state", f"the graph has no tensor {missing[0]!r}")

    @property
    def streaming(self) -> bool:
        return bool(self.state_inputs)

    def initial_state(self, batch: int = 1) -> list[np.ndarray]:
        """Zero RNN state for `batch` utterances: the start of a stream."""
        return [np.zeros((layers, batch, hidden), np.float32) for layers, hidden in self.state_shapes]

    def forward(self, feats: np.ndarray, lengths: np.ndarray, state: list[np.ndarray] | None = None):
        """feats (B, T, F) float32, lengths (B,) → log_probs (B, T', vocab), out_lengths (B,), next state."""
        inputs = {"features": np.ascontiguousarray(feats, dtype=np.float32),
                  "lengths": np.asarray(lengths, dtype=np.int64)}
        if self.state_inputs:
            state = state if state is not None else self.initial_state(feats.shape[0])
            inputs.update(zip(self.state_inputs, state))
        outputs = self.session.run(None, inputs)
        return outputs[0], outputs[1], list(outputs[2:])

    def forward_chunk(self, feats: np.ndarray, state: list[np.ndarray] | None = None):
        """Streaming step: feats (1, T, F) → log_probs (1, T', vocab), next state (pass back next call).

        Like the torch models' forward_chunk; the caller keeps the convolution's context frames.
        """
        if not self.streaming:
            raise ModelError("this ONNX model is not a streaming model (no state inputs)")
        log_probs, _, state = self.forward(feats, np.array([feats.shape[1]]), state)
        return log_probs, state

    def compute_features(self, audio: np.ndarray) -> np.ndarray:
        """(samples,) 16 kHz audio → (frames, F) features, in numpy."""
        return compute_features(audio, self.features)[0]

    def log_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Audio arrays → their (frames, vocab) log-probs, run as one zero-padded batch (int8: one by one)."""
        if self.one_at_a_time and len(audios) > 1:
            return [self.log_probs_batch([a])[0] for a in audios]
        batch, lengths = pad_batch([self.compute_features(a) for a in audios])
        log_probs, out_lengths, _ = self.forward(batch, lengths)
        return [log_probs[i, : int(n)] for i, n in enumerate(out_lengths)]


def limit_blas_threads(threads: int) -> None:
    """Cap numpy's BLAS threads (process-wide, like torch.set_num_threads).

    OpenBLAS otherwise runs even the small mel projection on every core; at `--threads 1` on a busy
    2-core machine that made transcription 5x slower. Needs threadpoolctl (in the [runtime] extra).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


def import_onnxruntime(path: str | os.PathLike):
    """The onnxruntime module, or one ModelError naming the model `path` and what to install."""
    try:
        import onnxruntime
    except ModuleNotFoundError:  # the [torch] install: an exported model needs the runtime extra
        raise ModelError(f"{path}: an .onnx model {NEEDS_ONNXRUNTIME}") from None
    return onnxruntime


def open_session(path: str | os.PathLike, threads: int = 0):
    """An onnxruntime CPU session over the file at `path` (`threads` > 0: that many intra-op threads), or one
    ModelError naming the file."""
    onnxruntime = import_onnxruntime(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no warnings about unused initializers
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise ModelError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The vocable metadata of an exported file as plain values (JSON fields decoded)."""
    return _decode_metadata(path, open_session(path).get_modelmeta().custom_metadata_map)


def _decode_metadata(path, raw: dict) -> dict:
    if raw.get("format") != ONNX_FORMAT:
        raise ModelError(f"{path}: not an ONNX model exported by vocable (no '{ONNX_FORMAT}' metadata); "
                         f"export one with `vocable export MODEL -o OUT.onnx`")
    version = raw.get("format_version", "0")
    if not version.isdigit():
        raise ModelError(f"{path}: format_version: expected a whole number, got {version!r}")
    if int(version) > ONNX_FORMAT_VERSION:
        raise ModelError(f"{path}: exported with a newer vocable (format {version}); upgrade vocable")
    try:
        return {k: json.loads(v) if k in METADATA_JSON_KEYS else v for k, v in raw.items()}
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: corrupt vocable metadata ({e})") from None


def load_onnx_file(path: str | os.PathLike, threads: int = 0) -> OnnxModelFile:
    path = Path(path)
    problem = file_problem(path, "ONNX model file")
    if problem:
        raise ModelError(f"{path}: {problem}")
    features = FeatureConfig()  # replaced below once the metadata is read
    engine = OnnxEngine(path, features, threads)
    metadata = _decode_metadata(path, engine.metadata)
    with model_file_errors(path):  # the same checks as a .vocable file's fields, the same one-line errors
        engine.features, tokenizer, meta = read_common_fields(metadata, path, ("model_config",))
        if not isinstance(metadata["model_config"], dict):
            raise FieldError("model_config", "expected a table of settings")
        width = engine.session.get_inputs()[0].shape[-1]  # (B, T, F): F is fixed at export
        if isinstance(width, int) and width != engine.features.dim:
            raise FieldError("features", f"{engine.features.dim} per frame, the graph takes {width}")
        vocab = engine.session.get_outputs()[0].shape[-1]  # (B, T', vocab)
        if isinstance(vocab, int) and vocab != tokenizer.vocab_size:
            raise FieldError("tokenizer", f"{tokenizer.vocab_size} tokens, the graph scores {vocab}")
        engine.use_state_spec(metadata.get("state", []))
        engine.one_at_a_time = str(meta.get("precision", "")).startswith("int8")
        model_config = SimpleNamespace(**metadata["model_config"], streaming=engine.streaming)
    return OnnxModelFile(engine, model_config, engine.features, tokenizer, meta, str(path))


def load_onnx(path: str | os.PathLike, threads: int = 0):
    """An exported .onnx file → a Recognizer running on onnxruntime (same API as for .vocable models)."""
    from .transcribe import Recognizer
    loaded = load_onnx_file(path, threads)
    return Recognizer(loaded, "cpu", engine=loaded.model)
