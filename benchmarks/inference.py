"""vocable inference speed: torch vs ONNX fp32 vs ONNX int8, 1 and 2 threads, batch 1 and 8, by clip
length; plus the torch-free runtime install (size on disk, cold start).

    python benchmarks/inference.py                                   # the default model
    python benchmarks/inference.py --model recipes/en_default/exp/conformer/best.vocable
    python benchmarks/inference.py --random-from recipes/en_default/conformer.toml   # speed only
    python benchmarks/inference.py --runtime-venv /tmp/vocable-rt    # also size + cold start of
                                                                      # `pip install vocable[runtime]`

Real-time factor = processing seconds / audio seconds (lower is faster), for log-probabilities
(features + model) and for the whole transcribe() call (with decoding), median of repeats after a
warm-up. Audio: a LibriVox sentence looped to length (noise without the shared data). A model with
random weights (--random-from) gives speed only, never accuracy. Results: OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vocable.errors import run_script  # noqa: E402
from compare_peers import NO_TORCH, ROOT, cold_start, describe_machine, dir_mb, machine_info, random_model, write_report  # noqa: E402
from features import speech, speech_source  # noqa: E402

LENGTHS = (2.0, 10.0, 30.0)  # seconds per clip
BATCH = 8  # clips per call in the batched rows
VENV_BASE = {"pip", "setuptools", "pkg_resources", "_distutils_hack"}  # in every venv: not our install


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(kind: str, model: str, threads: int, repeats: int) -> dict:
    """Runs in a fresh process with `threads` cores: one row per (clip length, batch)."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    import vocable
    recognizer = vocable.load(model, threads=threads)
    rows = []
    for seconds in LENGTHS:
        audio = speech(seconds)
        lp = timed(lambda: recognizer.log_probs(audio), repeats)
        full = timed(lambda: recognizer.transcribe(audio), repeats)
        batch = timed(lambda: recognizer.log_probs_batch([audio] * BATCH), max(2, repeats // 4))
        rows.append({"seconds": seconds, "log_probs_rtf": lp / seconds, "transcribe_rtf": full / seconds,
                     f"batch{BATCH}_rtf": batch / (BATCH * seconds)})
    return {"kind": kind, "threads": threads, "rows": rows}


def export_both(model: str, workdir: Path) -> dict[str, str]:
    from vocable.export import ExportOptions, export_model
    from vocable.bundled import resolve_model_path
    source = resolve_model_path(model)
    check = [speech(s) for s in (1.5, 3.0, 6.0)]
    paths = {"torch": str(source)}
    for kind, int8 in (("onnx-fp32", False), ("onnx-int8", True)):
        out = workdir / f"model-{kind}.onnx"
        export_model(source, out, ExportOptions(int8=int8, audio=check))
        paths[kind] = str(out)
    return paths


def install_size(venv: Path) -> dict:
    """MB on disk of what `pip install vocable[runtime]` put into `venv` (the venv's own pip excluded)."""
    site = next(venv.glob("lib/python*/site-packages"))
    sizes: dict[str, float] = {}
    for entry in site.iterdir():
        name = entry.name.split("-")[0].split(".")[0].lower()
        if name in VENV_BASE:
            continue
        mb = dir_mb(entry) if entry.is_dir() else entry.stat().st_size / 1e6
        key = name.removesuffix("_libs").removesuffix("libs").rstrip("_") or entry.name
        sizes[key] = sizes.get(key, 0.0) + mb
    return {"total_mb": sum(sizes.values()), "packages": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:8])}


def markdown(report: dict) -> str:
    m = report["model"]
    lines = [f"Machine: {describe_machine(report['machine'])}  ",
             f"Model: `{m['path']}` ({m['arch']}, {m['parameters'] / 1e6:.2f} M parameters"
             f"{', random weights: speed only' if m['random'] else ''}); sizes: " +
             ", ".join(f"{k} {v:.1f} MB" for k, v in m["sizes_mb"].items()) + "  ",
             f"Audio: {report.get('audio', 'not recorded')}  ",
             "Real-time factor (processing s / audio s), median of repeats; each engine × threads in a fresh "
             "process pinned to that many cores.", "",
             "| engine | threads | " + " | ".join(f"{s:g} s: log-probs / transcribe / batch {BATCH}"
                                                   for s in LENGTHS) + " |",
             "|---|---|" + "---|" * len(LENGTHS)]
    for r in report["runs"]:
        cells = [f"{x['log_probs_rtf']:.4f} / {x['transcribe_rtf']:.4f} / {x[f'batch{BATCH}_rtf']:.4f}"
                 for x in r["rows"]]
        lines.append(f"| {r['kind']} | {r['threads']} | " + " | ".join(cells) + " |")
    if report.get("runtime"):
        rt = report["runtime"]
        lines += ["", f"Runtime install (`pip install vocable[runtime]` in a fresh venv, its pip excluded): "
                      f"**{rt['size']['total_mb']:.0f} MB**; largest: " +
                      ", ".join(f"{k} {v:.0f} MB" for k, v in rt["size"]["packages"].items()) + ".  ",
                  f"Cold start (new process → first text, ONNX int8, 1 thread, {rt['clip_seconds']:.1f} s clip): "
                  f"**{rt['cold_start_s']:.2f} s** wall ({rt['cold_start_cpu_s']:.2f} s CPU), median of 3."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--random-from", metavar="CONFIG.toml", help="random weights with this config's architecture")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=10, help="timed runs per measurement, at least 1")
    p.add_argument("--runtime-venv", metavar="DIR", help="a venv with `pip install vocable[runtime]`")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference"))
    p.add_argument("--worker", nargs=3, metavar=("KIND", "MODEL", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.repeats < 1:
        p.error(f"--repeats: expected 1 or more, got {args.repeats}")
    if args.worker:
        kind, model, threads = args.worker
        print(json.dumps(worker(kind, model, int(threads), args.repeats)))
        return
    from tqdm import tqdm

    from vocable.bundled import resolve_model_path
    from vocable.modelfile import load_model_file
    from vocable.models import count_parameters
    if args.runtime_venv and not os.access(Path(args.runtime_venv) / "bin" / "python", os.X_OK):
        sys.exit(f"--runtime-venv {args.runtime_venv}: no bin/python there (make one with python -m venv)")
    if not args.random_from:
        resolve_model_path(args.model)  # a wrong name is one line now, not after the exports
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="vocable-inference-") as tmp:
        workdir = Path(tmp)
        model = random_model(args.random_from, workdir) if args.random_from else args.model
        paths = export_both(model, workdir)
        loaded = load_model_file(paths["torch"])
        runs = []
        for kind, path in tqdm(list(paths.items()), desc="engines"):
            for threads in args.threads:
                env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
                code = (NO_TORCH if kind != "torch" else "") + \
                    f"import runpy; runpy.run_path({__file__!r}, run_name='__main__')"
                done = subprocess.run([sys.executable, "-c", code, "--repeats", str(args.repeats), "--worker", kind,
                                       path, str(threads)], capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    sys.exit(f"{kind} worker failed: {done.stderr.strip()[-800:]}")
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        runtime = None
        if args.runtime_venv:
            python = str(Path(args.runtime_venv) / "bin" / "python")
            import soundfile as sf
            clip = workdir / "clip.wav"
            sf.write(clip, speech(3.0), 16000, subtype="PCM_16")
            wall, cpu = cold_start("vocable-onnx-int8", paths["onnx-int8"], 1, 1, str(clip), python)
            runtime = {"venv": args.runtime_venv, "size": install_size(Path(args.runtime_venv)),
                       "cold_start_s": wall, "cold_start_cpu_s": cpu, "clip_seconds": 3.0}
        report = {"machine": {**info, "load_avg_end": [round(x, 2) for x in os.getloadavg()]},
                  "model": {"path": model if not args.random_from else f"random weights, {args.random_from}",
                            "arch": loaded.model_config.arch, "parameters": count_parameters(loaded.model),
                            "random": bool(args.random_from),
                            "sizes_mb": {k: Path(v).stat().st_size / 1e6 for k, v in paths.items()}},
                  "runs": runs, "runtime": runtime, "audio": speech_source()}
    write_report(args.out, report, markdown)


if __name__ == "__main__":
    run_script(main)
