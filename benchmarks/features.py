"""Log-mel speed: vocable (numpy and torch) vs librosa and kaldi-native-fbank, one thread.

    python benchmarks/features.py                                  # whatever this python can import
    python benchmarks/features.py --python /tmp/featvenv/bin/python  # a throwaway venv with librosa + knf

All compute 80 log-mel bands, 25 ms windows, 10 ms hop, 16 kHz, on the same clips (real speech from
../shared/data repeated to 1, 10 and 60 s, else noise). Each implementation runs in its own fresh process
(so librosa's first-call JIT is its own), reporting the first call and the median of the rest.
What each computes: vocable = HTK mel, periodic Hann, no centering, natural log (torch and numpy must
agree); librosa is configured to the same definition and its difference from vocable is reported;
kaldi-native-fbank keeps Kaldi's own definition (povey window, pre-emphasis, DC removal, dither off).
Results: OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vocable.errors import run_script  # noqa: E402
from compare_peers import ROOT, SHARED, describe_machine, machine_info, write_report  # noqa: E402

LENGTHS = (1.0, 10.0, 60.0)  # seconds of audio per call
REPEATS = 20  # timed calls after the first (fewer for long clips)
IMPLEMENTATIONS = ("vocable-numpy", "vocable-torch", "librosa", "kaldi-native-fbank")


SPEECH_CLIP = SHARED / "librivox-clips" / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"


def speech_source() -> str:
    """What speech() returns, for a table's data line."""
    return (f"a LibriVox sentence ({SPEECH_CLIP.name}) looped to length" if SPEECH_CLIP.exists()
            else "white noise (the shared LibriVox clip is not on this machine)")


def speech(seconds: float) -> np.ndarray:
    """Real speech (a LibriVox clip, looped) or, without the shared data, noise: see speech_source()."""
    clip = SPEECH_CLIP
    n = int(seconds * 16000)
    if clip.exists():
        import soundfile as sf
        audio, _ = sf.read(clip, dtype="float32")
        return np.resize(audio, n)
    return np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1


def make(name: str):
    """(samples,) float32 → (frames, 80) log-mel, for implementation `name`."""
    if name == "vocable-numpy":
        from vocable.features_np import log_mel
        return lambda a: log_mel(a[None], 80)[0]
    if name == "vocable-torch":
        import torch

        from vocable.features import log_mel
        torch.set_num_threads(1)
        return lambda a: log_mel(torch.from_numpy(a)[None], 80)[0].numpy()
    if name == "librosa":
        import librosa

        def run(a):
            mel = librosa.feature.melspectrogram(y=a, sr=16000, n_fft=512, win_length=400, hop_length=160,
                                                 window="hann", center=False, power=2.0, n_mels=80, htk=True,
                                                 norm=None, fmin=0.0, fmax=8000.0)
            return np.log(np.maximum(mel, 1e-10)).T
        return run
    if name == "kaldi-native-fbank":
        import kaldi_native_fbank as knf
        options = knf.FbankOptions()
        options.frame_opts.dither = 0.0
        options.frame_opts.samp_freq = 16000
        options.mel_opts.num_bins = 80

        def run(a):
            fbank = knf.OnlineFbank(options)
            fbank.accept_waveform(16000, a * 32768.0)  # Kaldi works on the int16 scale
            fbank.input_finished()
            return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
        return run
    raise ValueError(name)


def worker(name: str) -> dict:
    import os
    os.environ["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    try:
        fn = make(name)
    except ImportError as e:
        return {"name": name, "error": f"not installed ({e.name})"}
    import_s = time.perf_counter() - start
    rows = {}
    reference = None
    for seconds in LENGTHS:
        audio = speech(seconds)
        t = time.perf_counter()
        out = fn(audio)
        first = time.perf_counter() - t
        times = []
        for _ in range(REPEATS if seconds < 30 else max(3, REPEATS // 4)):
            t = time.perf_counter()
            fn(audio)
            times.append(time.perf_counter() - t)
        rows[str(seconds)] = {"first_ms": 1000 * first, "median_ms": 1000 * statistics.median(times),
                              "min_ms": 1000 * min(times), "frames": int(out.shape[0])}
        if seconds == 10.0:
            reference = out
    result = {"name": name, "import_s": import_s, "lengths": rows}
    if name in ("vocable-torch", "librosa"):  # same definition: the values must agree
        from vocable.features_np import log_mel
        audio = speech(10.0)
        if name == "librosa":  # it centres the 400-sample window in its 512-sample frame: shift it back
            offset = (512 - 400) // 2
            reference = fn(np.concatenate([np.zeros(offset, np.float32), audio]))
        ours = log_mel(audio[None], 80)[0]
        frames = min(len(ours), len(reference))
        ours, reference = ours[:frames], reference[:frames]
        loud = ours > np.log(1e-4 * np.exp(ours).max())  # away from the float rounding floor
        result["max_diff_vs_vocable"] = float(np.abs(ours - reference)[loud].max())
    return result


def markdown(report: dict) -> str:
    lines = [f"Machine: {describe_machine(report['machine'])}  ",
             f"Audio: {report['audio']}; one thread; ms per call: median (min) of repeats, each implementation "
             "in a fresh process.", "",
             "| implementation | " + " | ".join(f"{s:g} s clip" for s in LENGTHS) +
             " | × real time (10 s, median) | first call ms (1 s clip) | max diff vs vocable (log-mel) |",
             "|---" * (len(LENGTHS) + 4) + "|"]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['name']} | " + " | ".join("-" for _ in LENGTHS) + f" | - | - | {r['error']} |")
            continue
        cells = [f"{r['lengths'][str(s)]['median_ms']:.2f} ({r['lengths'][str(s)]['min_ms']:.2f})" for s in LENGTHS]
        speed = 10000.0 / r["lengths"]["10.0"]["median_ms"]
        diff = r.get("max_diff_vs_vocable")
        diff_text = {"vocable-numpy": "reference", "kaldi-native-fbank": "other definition (Kaldi)"}.get(
            r["name"], f"{diff:.1e}" if diff is not None else "n/a")
        lines.append(f"| {r['name']} | " + " | ".join(cells) +
                     f" | {speed:,.0f} | {r['lengths']['1.0']['first_ms']:,.0f} | {diff_text} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python", default=sys.executable, help="interpreter to run the implementations with")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "features"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    rows = []
    for name in IMPLEMENTATIONS:
        done = subprocess.run([args.python, __file__, "--worker", name], capture_output=True, text=True,
                              env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        if done.returncode != 0:
            rows.append({"name": name, "error": done.stderr.strip().splitlines()[-1][:120]})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: done", file=sys.stderr)
    report = {"machine": machine_info(), "python": args.python, "rows": rows, "audio": speech_source()}
    write_report(args.out, report, markdown)


if __name__ == "__main__":
    run_script(main)
