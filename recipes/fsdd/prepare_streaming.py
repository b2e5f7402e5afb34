"""FSDD recipe for the streaming model: the clips of data/{train,dev}.jsonl with silence around them.

FSDD clips are trimmed to the word. A unidirectional model trained on them learns that speech starts
at the first frame, and then misreads the VAD-cut utterances of a live stream, which begin with up
to a few hundred milliseconds of room noise. So each clip gets a random lead-in and tail of quiet
noise (LEAD, TAIL seconds at NOISE_DBFS), written as 8 kHz FLAC to data-streaming/.

    python prepare.py && python prepare_streaming.py && vocable train cnn-rnn-streaming.toml

The model trains on both the tight and the padded clips: on padded clips alone it sat for 7+ epochs
on a plateau where it emitted the same letters at the first frames whatever was said.
"""

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from vocable.data import write_manifest
from vocable.data.manifest import read_manifest

HERE = Path(__file__).parent
LEAD = (0.1, 0.35)  # seconds of noise before the word (a VAD-cut utterance has ~0.25 s)
TAIL = (0.1, 0.4)  # seconds after it
NOISE_DBFS = (-70.0, -50.0)  # level of the added background noise


def pad(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    lead, tail = (int(rng.uniform(*LEAD) * rate), int(rng.uniform(*TAIL) * rate))
    out = np.concatenate([np.zeros(lead, np.float32), audio, np.zeros(tail, np.float32)])
    level = 10 ** (rng.uniform(*NOISE_DBFS) / 20)
    return out + (rng.standard_normal(len(out)) * level).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HERE / "data"), help="folder with train.jsonl and dev.jsonl")
    parser.add_argument("--out", default=str(HERE / "data-streaming"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        utterances = read_manifest(Path(args.data) / f"{split}.jsonl")
        for u in tqdm(utterances, desc=split):
            audio, rate = sf.read(u.audio, dtype="float32")
            padded = pad(audio if audio.ndim == 1 else audio.mean(axis=1), rate, rng)
            u.audio = str((out / "audio" / f"{u.id}.flac").resolve())
            sf.write(u.audio, padded, rate, subtype="PCM_16")
            u.duration = len(padded) / rate
        write_manifest(out / f"{split}.jsonl", utterances)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
