"""Long audio: peak memory of transcribing a 10- vs a 60-minute file, and the VAD backends compared.

    python benchmarks/long_audio.py                     # bundled default model, 10 and 60 minutes
    python benchmarks/long_audio.py --model M.vocable --minutes 2 10 60
    python benchmarks/long_audio.py --vad-only          # just the VAD comparison

Memory: each file is transcribed by `vocable transcribe` in a fresh process (streamed from disk,
split by the VAD, decoded in batches); its peak RSS is read from the kernel (ru_maxrss). For
reference, the RSS of merely loading the whole file into memory (load_audio) is measured too.
Files: faint room noise (-80 dBFS) with a real utterance every few seconds (FSDD digits from
tests/fixtures every 4 s, or speechocean762 sentences when ../shared/data exists and the model is
English), written block by block as 16 kHz FLAC. Even the shortest file holds more speech than one
model batch (transcribe.BATCH_SECONDS), so both sizes reach the steady state.

VAD comparison: real speech (speechocean762, else the FSDD fixtures) separated by 2-4 s gaps of white,
pink or brown noise or silence; "speech recall" = share of 32 ms frames within 35 dB of the
utterance's peak called speech; "false alarms" = share of gap frames called speech.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vocable.errors import run_script  # noqa: E402
from compare_peers import ROOT, SHARED, describe_machine, machine_info

RATE = 16000
FSDD = ROOT / "tests" / "fixtures" / "fsdd"
MEASURE = r"""
import resource, sys, time
from vocable.cli import main
t = time.perf_counter()
code = main(sys.argv[1:])
print(f"WALL {time.perf_counter() - t:.2f}", file=sys.stderr)
print(f"MAXRSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""
LOAD_ONLY = r"""
import resource, sys
from vocable.audio import load_audio
audio = load_audio(sys.argv[1])
print(f"MAXRSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
"""


def clips_source(english: bool) -> str:
    """Which speech speech_clips(english) returns, for the tables' data lines."""
    if english and (SHARED / "speechocean762-train").exists():
        return "every 50th speechocean762-train clip"
    return f"the FSDD digit fixtures ({FSDD})"


def speech_clips(english: bool) -> list[np.ndarray]:
    from vocable.audio import load_audio
    so = SHARED / "speechocean762-train"
    if english and so.exists():
        lines = [line.split() for line in open(so / "wav.scp")][::50]
        return [load_audio(so / path) for _, path in lines]
    return [load_audio(p) for p in sorted(FSDD.glob("*.flac"))]


def write_file(path: Path, minutes: float, clips: list[np.ndarray], every: float) -> int:
    import soundfile as sf
    rng = np.random.default_rng(0)
    n = 0
    with sf.SoundFile(str(path), "w", RATE, 1, format="FLAC") as f:
        for i in range(int(minutes * 60 / every)):
            block = (rng.standard_normal(int(every * RATE)) * 1e-4).astype(np.float32)
            clip = clips[i % len(clips)][: int((every - 1.5) * RATE)]
            at = int(rng.uniform(0.5, every - 1.0 - len(clip) / RATE) * RATE)
            block[at: at + len(clip)] += clip
            f.write(block)
            n += 1
    return n


def child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    values = dict(line.split(" ", 1) for line in done.stderr.splitlines() if line.startswith(("WALL", "MAXRSS")))
    if "MAXRSS" not in values:
        raise RuntimeError(done.stderr[-2000:])
    return {"rss_mb": int(values["MAXRSS"]) / 1024, "wall_s": float(values.get("WALL", "nan")),
            "stdout": done.stdout}


def memory_table(model: str, minutes_list: list[float], workdir: Path) -> list[str]:
    import vocable
    english = not vocable.load(model).tokenizer.unknown_chars("the quick brown fox jumps over a lazy dog")
    clips = speech_clips(english)
    rows = [f"Speech: {clips_source(english)}.\n", "| audio | utterances placed | words out | peak RSS transcribing | wall time | peak RSS load_audio only |",
            "|---|---|---|---|---|---|"]
    for minutes in minutes_list:
        path = workdir / f"{minutes:g}min.flac"
        placed = write_file(path, minutes, clips, every=max(4.0, 1.5 + max(len(c) for c in clips) / RATE))
        run = child(MEASURE, "transcribe", str(path), "--model", model, "--format", "json", "--threads", "1")
        words = sum(len(s["words"]) for s in json.loads(run["stdout"])["segments"])
        load = child(LOAD_ONLY, str(path))
        rows.append(f"| {minutes:g} min | {placed} | {words} | {run['rss_mb']:.0f} MB | {run['wall_s']:.0f} s | "
                    f"{load['rss_mb']:.0f} MB |")
        print(rows[-1], file=sys.stderr)
    return rows


def coloured(n: int, rng, tilt: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n)) / np.maximum(np.arange(n // 2 + 1), 1) ** (tilt / 2)
    noise = np.fft.irfft(spectrum, n)
    return (noise / noise.std()).astype(np.float32)


def vad_table() -> list[str]:
    from vocable.vad import READ_BLOCK_SECONDS, SILERO_FRAME, make_vad
    rng = np.random.default_rng(0)
    clips = speech_clips(True)[:40]
    kinds = [("white", 0, 0.003), ("pink", 1, 0.01), ("brown", 2, 0.03), ("silence", 0, 0.0)]
    parts, labels = [], []  # per 32 ms frame: 1 speech, 0 pause inside speech, -1-k gap of noise kind k
    for i, clip in enumerate(clips):
        k = i % len(kinds)
        gap = int(rng.uniform(2, 4) * RATE) // SILERO_FRAME * SILERO_FRAME
        parts.append(coloured(gap, rng, kinds[k][1]) * kinds[k][2])
        labels.append(np.full(gap // SILERO_FRAME, -1 - k))
        clip = clip[: len(clip) // SILERO_FRAME * SILERO_FRAME]
        level = 10 * np.log10((clip.reshape(-1, SILERO_FRAME) ** 2).mean(axis=1) + 1e-10)
        parts.append(clip)
        labels.append((level > level.max() - 35).astype(int))
    audio, labels = np.concatenate(parts), np.concatenate(labels)
    rows = ["| VAD | seconds per audio hour | speech recall | " + " | ".join(f"false alarms: {k[0]}" for k in kinds)
            + " |", "|---" * (3 + len(kinds)) + "|"]
    for backend in ("silero", "webrtc", "energy"):
        vad = make_vad(backend)
        t = time.perf_counter()
        block = int(READ_BLOCK_SECONDS * RATE)  # as speech_segments feeds it a file
        probs = np.concatenate([vad(audio[i: i + block]) for i in range(0, len(audio), block)])
        seconds = time.perf_counter() - t
        # per-frame decisions on the 32 ms grid
        centres = (np.arange(len(labels)) * SILERO_FRAME + SILERO_FRAME // 2) // vad.frame_samples
        speech = probs[np.minimum(centres, len(probs) - 1)] >= 0.5
        cells = [f"{np.mean(speech[labels == -1 - k]):.1%}" for k in range(len(kinds))]
        rows.append(f"| {backend} | {seconds / (len(audio) / RATE) * 3600:.1f} | {np.mean(speech[labels == 1]):.1%} | "
                    + " | ".join(cells) + " |")
        print(rows[-1], file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--vad-only", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vocable-long-audio"))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "long_audio.md")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not args.vad_only:
        from vocable.bundled import resolve_model_path
        resolve_model_path(args.model)  # a wrong name is one line before the VAD work, not a traceback after
    lines = ["# Long audio benchmark\n", f"Machine: {describe_machine(machine_info())}; one thread.  ",
             f"Speech (VAD table): {clips_source(True)}, placed in faint noise (see write_file).\n"]
    lines += ["## VAD backends\n"] + vad_table()
    if not args.vad_only:
        lines += ["", f"## Memory (model {args.model})\n"] + memory_table(args.model, args.minutes, args.workdir)
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")


if __name__ == "__main__":
    run_script(main)
