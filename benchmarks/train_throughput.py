"""Training throughput: audio seconds trained per wall second for each architecture at ~5 M parameters.

    python benchmarks/train_throughput.py [--threads 1 2] [--steps 6] [--precision fp32 bf16]

Each configuration runs in its own process (so peak memory is its own): random log-mel features for
a batch of BATCH utterances of SECONDS each, forward + CTC loss + backward + AdamW step. The first
step is a warm-up and is not timed. Prints a table naming the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vocable.errors import run_script  # noqa: E402
from compare_peers import describe_machine, machine_info  # noqa: E402

BATCH, SECONDS = 8, 10.0  # 80 s of audio per step
VOCAB = 30
CONFIGS = {  # ~5 M parameters each
    "cnn-rnn": dict(arch="cnn-rnn", d_model=512, n_layers=3),
    "transformer": dict(arch="transformer", d_model=256, n_layers=6, n_heads=4),
    "conformer": dict(arch="conformer", d_model=160, n_layers=8, n_heads=4),
}


def run_one(name: str, threads: int, steps: int, precision: str) -> dict:
    import torch

    from vocable.models import ModelConfig, build_model, count_parameters
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig(**CONFIGS[name]), 80, VOCAB)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    frames = int(SECONDS * 100)
    feats, lengths = torch.randn(BATCH, frames, 80), torch.full((BATCH,), frames)
    targets = torch.randint(1, VOCAB, (BATCH * 40,))
    target_lengths = torch.full((BATCH,), 40)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits, out_lengths = model(feats, lengths)
        log_probs = torch.log_softmax(logits.float(), -1).transpose(0, 1)
        loss = torch.nn.functional.ctc_loss(log_probs, targets, out_lengths, target_lengths, zero_infinity=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:
            times.append(time.perf_counter() - start)
    return {"arch": name, "params_m": count_parameters(model) / 1e6, "threads": threads, "precision": precision,
            "audio_s_per_s": BATCH * SECONDS * len(times) / sum(times),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--arch", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration as JSON
    args = parser.parse_args()
    if args.steps < 1 or any(t < 1 for t in args.threads):
        parser.error("--steps and --threads: at least 1")
    if args.one:
        name, threads, precision = args.one.split(",")
        print(json.dumps(run_one(name, int(threads), args.steps, precision)))
        return
    print(f"machine: {describe_machine(machine_info())}\ndata: random log-mel features, {BATCH} x {SECONDS:.0f} s per batch, "
          f"{args.steps} timed steps after 1 warm-up\n")
    print("| arch | params | threads | precision | audio-s/s | peak RSS |\n|---|---|---|---|---|---|")
    for name in args.arch:
        for threads in args.threads:
            for precision in args.precision:
                out = subprocess.run([sys.executable, __file__, "--one", f"{name},{threads},{precision}",
                                      "--steps", str(args.steps)], capture_output=True, text=True)
                if out.returncode:
                    print(f"| {name} | - | {threads} | {precision} | failed: {out.stderr.strip()[-200:]} | |")
                    continue
                r = json.loads(out.stdout)
                print(f"| {name} | {r['params_m']:.1f} M | {threads} | {precision} | {r['audio_s_per_s']:.1f} "
                      f"| {r['peak_rss_gb']:.2f} GB |", flush=True)


if __name__ == "__main__":
    run_script(main)
