"""vocable side by side with the recognisers users would pick instead, on the same audio.

    python benchmarks/compare_peers.py                                   # default model, shared eval sets
    python benchmarks/compare_peers.py --model en-default \\
        --dataset so762-dev=recipes/en_default/data/so762-dev.jsonl --out benchmarks/results/peers-en

Engines: vocable with torch, ONNX fp32 and ONNX int8 (exported here with vocable.export), at 1 and 2
threads; pocketsphinx 5.1.1 (`Decoder()` defaults: its bundled en-us acoustic model, LM and dictionary);
Moonshine base-en through moonshine-cpp (`transcribe_wav`, bundled model), and the same Moonshine model
files run by the onnxruntime Python package (`moonshine-ort`, benchmarks/moonshine_ort.py: moonshine-cpp's
own runtime crashes on CPUs without AVX-512). Peers run pinned to 1 core (sched_setaffinity, and one
thread where they have a setting) and unpinned (their default: all cores).

Every engine runs in fresh worker processes on the same 16 kHz 16-bit WAV copies of the data, reading
the file itself (path → text is timed, after one untimed warm-up call). Reported per engine: WER per
dataset, real-time factor (processing s / audio s over all files), peak RSS of the worker, model size
on disk, cold start (spawn of a new process → its first text, median of 3), and empty outputs.
Moonshine grows by tens of MB per call, so it runs in batches of --moonshine-batch files per process;
its growth per call is measured and reported. Results: OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vocable.errors import run_script  # noqa: E402
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_SETS = {"librivox-clips": SHARED / "librivox-clips", "alsa-prompts": SHARED / "alsa-prompts",
                "fsdd-test": SHARED / "fsdd" / "test"}
FSDD_SUBSET = 60  # fsdd-test utterances used (every k-th: all speakers and digits)
COLD_START_REPEATS = 3
NO_TORCH = "import sys; sys.modules['torch'] = None\n"  # the ONNX engines must never import torch


# -- machine ---------------------------------------------------------------------------------


def machine_info() -> dict:
    """CPU model, core count and load: every benchmark names the machine its figures come from."""
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16") if f" {f}" in flags]
    return {"cpu": cpu, "cores": os.cpu_count(), "simd": simd, "load_avg": [round(x, 2) for x in os.getloadavg()],
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "os": platform.platform(terse=True)}


def describe_machine(info: dict) -> str:
    return (f"{info['cpu']}, {info['cores']} cores ({'/'.join(info['simd']) or 'no AVX'}), "
            f"{info['memory_gb']} GiB, Python {info['python']}, load average {info['load_avg'][0]} at start")


def write_report(out: str | Path, report: dict, markdown) -> None:
    """`report` as OUT.json and its markdown(report) table as OUT.md; the table is printed too."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


# -- data ------------------------------------------------------------------------------------


def prepare_data(sets: dict[str, Path], workdir: Path, fsdd_subset: int) -> list[dict]:
    """Every utterance → a 16 kHz 16-bit mono WAV in `workdir` (what every engine reads)."""
    import soundfile as sf

    from vocable.audio import load_audio
    from vocable.data.manifest import read_dataset
    files = []
    for name, path in sets.items():
        utterances = [u for u in read_dataset(path) if u.text]
        if name == "fsdd-test" and len(utterances) > fsdd_subset:
            utterances = utterances[:: len(utterances) // fsdd_subset][:fsdd_subset]
        folder = workdir / "audio" / name
        folder.mkdir(parents=True, exist_ok=True)
        for u in utterances:
            audio = load_audio(u.audio)
            wav = folder / f"{u.id}.wav"
            sf.write(wav, audio, 16000, subtype="PCM_16")
            files.append({"dataset": name, "id": u.id, "path": str(wav), "text": u.text,
                          "duration": len(audio) / 16000})
    return files


# -- workers (one fresh process per engine run) -------------------------------------------------


def make_engine(kind: str, model: str, threads: int):
    """(path → text) callable for an engine. Runs inside the worker process."""
    if kind.startswith("vocable"):
        import vocable
        recognizer = vocable.load(model, threads=threads)
        return lambda path: recognizer.transcribe(path).text
    if kind == "pocketsphinx":
        import soundfile as sf
        from pocketsphinx import Decoder
        decoder = Decoder()  # defaults: bundled en-us model, LM and dictionary, 16 kHz

        def run(path):
            pcm, _ = sf.read(path, dtype="int16")
            decoder.start_utt()
            decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            return hyp.hypstr if hyp is not None else ""
        return run
    if kind == "moonshine":
        import moonshine_cpp
        model_ = moonshine_cpp.MoonshineModel()  # bundled base-en
        return model_.transcribe_wav
    if kind == "moonshine-ort":
        from moonshine_ort import MoonshineOrt
        return MoonshineOrt(threads=threads).transcribe_wav
    raise ValueError(kind)


def worker(args) -> None:
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    files = json.loads(Path(args.files).read_text())
    start = time.perf_counter()
    engine = make_engine(args.worker, args.model, args.threads[0])
    load_s = time.perf_counter() - start
    engine(files[0]["path"])  # warm-up: first-call allocations and lazy initialisation are not speed
    rss_before = _status_mb("VmRSS")
    texts, seconds, cpu_seconds = [], [], []
    for f in files:
        t, c = time.perf_counter(), time.process_time()
        texts.append(engine(f["path"]))
        seconds.append(time.perf_counter() - t)
        cpu_seconds.append(time.process_time() - c)
    result = {"texts": texts, "seconds": seconds, "cpu_seconds": cpu_seconds, "load_s": load_s,
              "rss_before_mb": rss_before, "rss_after_mb": _status_mb("VmRSS"), "peak_rss_mb": _status_mb("VmHWM"),
              "torch_imported": any(m.split(".")[0] == "torch" and v for m, v in sys.modules.items())}
    Path(args.result).write_text(json.dumps(result))


def _status_mb(key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MB. Unlike ru_maxrss, VmHWM starts afresh at exec,
    so it does not inherit the peak of the parent that forked the worker."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


# -- the parent: runs the workers and puts the table together -------------------------------------


def run_worker(kind: str, model: str, threads: int, cores: int, files: list[dict], workdir: Path,
               python: str) -> dict:
    listing, result = workdir / "files.json", workdir / "result.json"
    listing.write_text(json.dumps(files))
    result.unlink(missing_ok=True)
    prefix = NO_TORCH if kind.startswith("vocable-onnx") else ""
    code = prefix + f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import compare_peers; " \
                    "compare_peers.main()"
    cmd = [python, "-c", code, "--worker", kind, "--model", model, "--threads", str(threads),
           "--cores", str(cores), "--files", str(listing), "--result", str(result)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(threads))
    if done.returncode != 0 or not result.exists():
        raise WorkerFailed(f"{kind}: {failure_reason(done.returncode, done.stderr)}")
    return json.loads(result.read_text())


class WorkerFailed(RuntimeError):
    """An engine's worker process died or wrote no result; the table says so and the run goes on."""


def failure_reason(returncode: int, stderr: str) -> str:
    if returncode < 0:  # killed by a signal: a crash inside the engine's native code
        name = signal.Signals(-returncode).name
        why = " (an instruction this CPU does not have)" if name == "SIGILL" else ""
        return f"crashed with {name}{why}"
    last = stderr.strip().splitlines()[-1:] or ["no message"]
    return f"exit status {returncode}: {last[0][:300]}"


def worker_env(threads: int) -> dict:
    """Environment of a worker: vocable's source on the path; OpenMP capped unless the engine picks."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    return env | ({"OMP_NUM_THREADS": str(threads)} if threads else {})


def cold_start(kind: str, model: str, threads: int, cores: int, wav: str, python: str) -> float:
    """Median seconds from spawning a fresh process to its first line of text (import + load + decode)."""
    setup = f"import os; os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:{cores}]))\n" if cores else ""
    prefix = NO_TORCH if kind.startswith("vocable-onnx") else ""
    code = prefix + setup + (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import compare_peers\n"
        f"print(compare_peers.make_engine({kind!r}, {model!r}, {threads})({wav!r}), flush=True)\n")
    times, cpu = [], []
    for _ in range(COLD_START_REPEATS):
        start = time.perf_counter()
        process = subprocess.Popen([python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   env=worker_env(threads))
        process.stdout.readline()
        times.append(time.perf_counter() - start)
        _, _, usage = os.wait4(process.pid, 0)  # CPU time of the whole process (to exit): robust to load
        cpu.append(usage.ru_utime + usage.ru_stime)
        process.returncode = 0
    return statistics.median(times), statistics.median(cpu)


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


# peer → (the package that ships it, its model folder inside that package)
PEER_PACKAGES = {"pocketsphinx": ("pocketsphinx", "model/en-us"), "moonshine": ("moonshine_cpp", "models/base-en"),
                 "moonshine-ort": ("moonshine_cpp", "models/base-en")}


def peer_available(kind: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(PEER_PACKAGES[kind][0]) is not None


def peer_model_mb(kind: str) -> float:
    import importlib.util
    package, models = PEER_PACKAGES[kind]
    return dir_mb(Path(importlib.util.find_spec(package).origin).parent / models)


def random_model(config_path: str, workdir: Path) -> str:
    """A model with the architecture of a training config and random weights (speed only)."""
    import torch

    from vocable.config import load_config
    from vocable.modelfile import save_model
    from vocable.models import build_model
    from vocable.tokenizer import train_tokenizer
    config = load_config(config_path, {"data.train": ["unused.jsonl"]})
    tokenizer = train_tokenizer(["abcdefghijklmnopqrstuvwxyz '"], "char")
    torch.manual_seed(0)
    model = build_model(config.model, config.features.dim, tokenizer.vocab_size)
    path = workdir / "random.vocable"
    save_model(path, model, config.model, config.features, tokenizer, {"name": f"random {config.model.arch}"})
    return str(path)


def export_models(model: str, workdir: Path, check: list[str], engines: list[str]) -> tuple[dict, dict]:
    """The model file of each engine asked for, and why an export failed (its rows then say so; the other
    engines still run): ({kind: path}, {kind: reason})."""
    from vocable.errors import VocableError
    from vocable.export import ExportOptions, export_model
    from vocable.bundled import resolve_model_path
    paths, failures = {"vocable-torch": resolve_model_path(model)}, {}
    for kind, int8 in (("vocable-onnx-fp32", False), ("vocable-onnx-int8", True)):
        paths[kind] = workdir / f"model-{'int8' if int8 else 'fp32'}.onnx"
        if kind in engines:
            try:
                export_model(paths["vocable-torch"], paths[kind], ExportOptions(int8=int8, audio=check))
            except VocableError as e:  # e.g. int8 posteriors beyond the export's tolerance on this data
                failures[kind] = f"export refused: {e}"
    return paths, failures


def plan(paths: dict, thread_counts: list[int], engines: list[str], peer_cores: list[str]) -> list[dict]:
    """The engine runs: (kind, model, threads, cores) with a label."""
    runs = []
    for kind in ("vocable-torch", "vocable-onnx-fp32", "vocable-onnx-int8"):
        if kind in engines:
            runs += [{"kind": kind, "model": str(paths[kind]), "threads": t, "cores": t,
                      "label": f"{kind.replace('vocable-', 'vocable ')} {t}T"} for t in thread_counts]
    for kind in PEER_PACKAGES:
        if kind not in engines:
            continue
        if not peer_available(kind):
            print(f"skipping {kind}: not installed", file=sys.stderr)
            continue
        if "1" in peer_cores:
            runs.append({"kind": kind, "model": "", "threads": 1, "cores": 1, "label": f"{kind} 1 core"})
        if "all" in peer_cores:
            runs.append({"kind": kind, "model": "", "threads": 0, "cores": 0,
                         "label": f"{kind} {os.cpu_count()} cores"})
    return runs


def measure(run: dict, files: list[dict], workdir: Path, python: str, moonshine_batch: int) -> dict:
    batch = moonshine_batch if run["kind"] == "moonshine" else len(files)
    parts = [run_worker(run["kind"], run["model"], run["threads"], run["cores"], files[i: i + batch], workdir,
                        python) for i in range(0, len(files), batch)]
    texts = [t for p in parts for t in p["texts"]]
    seconds = [s for p in parts for s in p["seconds"]]
    cpu_seconds = [s for p in parts for s in p["cpu_seconds"]]
    growth = [(p["rss_after_mb"] - p["rss_before_mb"]) / len(p["texts"]) for p in parts]
    return {"texts": texts, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
            "growth_mb_per_call": statistics.mean(growth), "load_s": statistics.median(p["load_s"] for p in parts),
            "processes": len(parts), "torch_imported": any(p["torch_imported"] for p in parts)}


def run_fields(run: dict) -> dict:
    """What a table row says of the engine run itself, measured or failed."""
    return {k: run[k] for k in ("label", "kind", "threads", "cores")}


def score(run: dict, measured: dict, files: list[dict], size_mb: float, cold: tuple[float, float]) -> dict:
    from vocable.evaluate import cer, wer
    by_set: dict[str, tuple[list, list]] = {}
    for f, text in zip(files, measured["texts"]):
        refs, hyps = by_set.setdefault(f["dataset"], ([], []))
        refs.append(f["text"])
        hyps.append(text)
    audio = sum(f["duration"] for f in files)
    return {**run_fields(run),
            "wer": {name: wer(*pair) for name, pair in by_set.items()},
            "cer": {name: cer(*pair) for name, pair in by_set.items()},
            "rtf": sum(measured["seconds"]) / audio, "cpu_rtf": sum(measured["cpu_seconds"]) / audio,
            "ms_per_file": 1000 * statistics.mean(measured["seconds"]),
            "peak_rss_mb": measured["peak_rss_mb"], "model_mb": size_mb, "cold_start_s": cold[0],
            "cold_start_cpu_s": cold[1],
            "load_s": measured["load_s"], "empty": sum(not t.strip() for t in measured["texts"]),
            "growth_mb_per_call": measured["growth_mb_per_call"], "processes": measured["processes"],
            "torch_imported": measured["torch_imported"],
            "hyps": [{"id": f["id"], "ref": f["text"], "hyp": t} for f, t in zip(files, measured["texts"])]}


def decoding_note(model_path) -> str:
    """How vocable decodes in the table: the model file's own tuned decoding, if it has one (peers get none)."""
    from vocable.modelfile import load_model_file
    meta = load_model_file(model_path).meta
    if "lm_weight" not in meta:
        return ""
    return (f"vocable decodes with its model file's defaults: LM {meta.get('lm')}, weight {meta['lm_weight']}, word "
            f"bonus {meta.get('word_bonus', '-')}, blank penalty {meta.get('blank_penalty', '-')}, beam "
            f"{meta.get('beam_size', '-')}, tuned by its recipe (en-default's on the speechocean762 dev speakers, "
            f"so its figure there is optimistic: docs/models.md gives the cross-validated one); the peers run untuned.")


def markdown(report: dict) -> str:
    sets = list(report["datasets"])
    lines = [f"Machine: {describe_machine(report['machine'])}  ",
             f"Model: `{report['model']}`; data: " + ", ".join(f"{k} ({v['utterances']} utts, {v['seconds']:.0f} s)"
                                                           for k, v in report["datasets"].items()) + "  ",
             f"Reference row for speed ratios: {report['reference']}", "",
             "| engine | " + " | ".join(f"WER (CER) {s}" for s in sets) +
             " | RTF | CPU-s per audio-s | × slower than ref | ms/file | peak RSS MB | model MB "
             "| cold start s (CPU s) | empty |",
             "|---" * (len(sets) + 9) + "|"]
    ref = next((r for r in report["rows"] if r["label"] == report["reference"]), None)
    for r in report["rows"]:
        if "failed" in r:
            lines.append(f"| {r['label']}: failed, {r['failed']} | " + " | ".join(["–"] * (len(sets) + 8)) + " |")
            continue
        ratio = f"{r['rtf'] / ref['rtf']:.1f}" if ref else "-"
        lines.append(f"| {r['label']} | " + " | ".join(f"{100 * r['wer'].get(s, float('nan')):.1f} % "
                                                       f"({100 * r.get('cer', {}).get(s, float('nan')):.1f} %)"
                                                       for s in sets) +
                     f" | {r['rtf']:.4f} | {r['cpu_rtf']:.4f} | {ratio} | {r['ms_per_file']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['model_mb']:.1f} | {r['cold_start_s']:.2f} "
                     f"({r['cold_start_cpu_s']:.2f}) | {r['empty']} |")
    notes = [r for r in report["rows"] if r["kind"] == "moonshine" and "failed" not in r]
    if notes:
        lines += ["", f"Moonshine grew {notes[0]['growth_mb_per_call']:.1f} MB of RSS per call and ran in "
                      f"{notes[0]['processes']} processes of ≤ {report['moonshine_batch']} files."]
    if report.get("decoding"):
        lines += ["", report["decoding"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="default", help="bundled model name or .vocable file")
    p.add_argument("--random-from", metavar="CONFIG.toml",
                   help="instead: random weights with this training config's architecture (speed only)")
    p.add_argument("--dataset", action="append", default=[], metavar="NAME=PATH",
                   help="manifest or Kaldi folder (default: librivox-clips, alsa-prompts, fsdd-test subset)")
    p.add_argument("--fsdd-subset", type=int, default=FSDD_SUBSET)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--engines", nargs="+", default=["vocable-torch", "vocable-onnx-fp32", "vocable-onnx-int8",
                                                     "pocketsphinx", "moonshine", "moonshine-ort"])
    p.add_argument("--peer-cores", nargs="+", choices=["1", "all"], default=["1", "all"],
                   help="peers pinned to one core, unpinned (all cores), or both")
    p.add_argument("--moonshine-batch", type=int, default=25, help="files per Moonshine process")
    p.add_argument("--runtime-python", default=sys.executable,
                   help="python of a `pip install vocable[runtime]` venv for the ONNX rows (default: this one)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compare_peers"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--cores", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--files", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    if any("=" not in item for item in args.dataset):
        sys.exit(f"--dataset: expected NAME=PATH, got {next(i for i in args.dataset if '=' not in i)!r}")
    if args.fsdd_subset < 1:
        sys.exit(f"--fsdd-subset: expected a number of utterances >= 1, got {args.fsdd_subset}")
    if not os.access(args.runtime_python, os.X_OK):
        sys.exit(f"--runtime-python {args.runtime_python}: not an executable Python")
    sets = dict(item.split("=", 1) for item in args.dataset) if args.dataset else \
        {k: v for k, v in DEFAULT_SETS.items() if v.exists()}
    if not sets:
        sys.exit("no data: pass --dataset NAME=PATH (the shared evaluation sets are not on this machine)")
    info = machine_info()
    print(f"machine: {describe_machine(info)}", file=sys.stderr)
    from tqdm import tqdm
    with tempfile.TemporaryDirectory(prefix="vocable-peers-") as tmp:
        workdir = Path(tmp)
        files = prepare_data({k: Path(v) for k, v in sets.items()}, workdir, args.fsdd_subset)
        model = random_model(args.random_from, workdir) if args.random_from else args.model
        paths, export_failures = export_models(model, workdir, [f["path"] for f in files[:: max(1, len(files) // 16)]],
                                               args.engines)
        runs = plan(paths, args.threads, args.engines, args.peer_cores)
        short = min(files, key=lambda f: abs(f["duration"] - 2.0))["path"]  # a ~2 s clip for cold starts
        rows = []
        for run in tqdm(runs, desc="engines", unit="run"):
            python = args.runtime_python if run["kind"].startswith("vocable-onnx") else sys.executable
            try:
                if run["kind"] in export_failures:
                    raise WorkerFailed(export_failures[run["kind"]])
                measured = measure(run, files, workdir, python, args.moonshine_batch)
            except WorkerFailed as failure:
                rows.append({**run_fields(run), "failed": str(failure)})
                tqdm.write(f"{run['label']:28} failed: {failure}")
                continue
            size = Path(run["model"]).stat().st_size / 1e6 if run["model"] else peer_model_mb(run["kind"])
            cold = cold_start(run["kind"], run["model"], run["threads"], run["cores"], short, python)
            rows.append(score(run, measured, files, size, cold))
            tqdm.write(f"{rows[-1]['label']:28} RTF {rows[-1]['rtf']:.4f}  WER " +
                       "  ".join(f"{k} {100 * v:.1f}%" for k, v in rows[-1]["wer"].items()))
    report = {"machine": {**info, "load_avg_end": [round(x, 2) for x in os.getloadavg()]},
              "model": (f"random weights with the architecture of {args.random_from} (speed only: WER is "
                        f"meaningless)") if args.random_from else
                       str(paths["vocable-torch"].relative_to(ROOT) if paths["vocable-torch"].is_relative_to(ROOT)
                           else paths["vocable-torch"]),
              "datasets": {name: {"utterances": sum(f["dataset"] == name for f in files),
                                  "seconds": sum(f["duration"] for f in files if f["dataset"] == name),
                                  "path": str(path)} for name, path in sets.items()},
              "reference": "vocable onnx-int8 1T", "moonshine_batch": args.moonshine_batch,
              "runtime_python": args.runtime_python, "rows": rows,
              "decoding": decoding_note(paths["vocable-torch"]) if not args.random_from else ""}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    run_script(main)
