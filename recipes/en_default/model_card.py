"""The figures of docs/models.md's English model card, as Markdown, from what run.sh measured.

    python model_card.py > exp/model_card.md

Reads exp/{set}-greedy.json and exp/{set}-lm.json (vocable evaluate --json), exp/lm-tuning.json
(tune_lm.py), exp/{conformer,gpu-c}/metrics.csv (training on CPU, then on a GPU) and
benchmarks/results/compare_peers-en-default.md (vocable, pocketsphinx and Moonshine in one run).
Nothing here is typed in by hand.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXP = HERE / "exp"
PEERS = HERE.parent.parent / "benchmarks" / "results" / "compare_peers-en-default.json"  # and its .md
SETS = {"so762-dev": "so762-dev", "librivox": "librivox-clips", "alsa": "alsa-prompts", "fsdd-test": "fsdd-test"}


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def ci(summary: dict, key: str) -> str:
    low, high = summary["overall"][f"{key}_ci"]
    return f"{pct(summary[key])} ({100 * low:.1f}–{100 * high:.1f})"


def evaluation_table() -> list[str]:
    lines = ["| set | utterances | speakers | WER greedy | WER with LM (95 % CI) | CER greedy | CER with LM |",
             "|---|---|---|---|---|---|---|"]
    for name, label in SETS.items():
        greedy_path, lm_path = EXP / f"{name}-greedy.json", EXP / f"{name}-lm.json"
        if not (greedy_path.exists() and lm_path.exists()):
            continue
        greedy, lm = json.loads(greedy_path.read_text()), json.loads(lm_path.read_text())
        lines.append(f"| {label} | {lm['utterances']} | {lm['overall']['speakers']} | {pct(greedy['wer'])} | "
                     f"{ci(lm, 'wer')} | {pct(greedy['cer'])} | {pct(lm['cer'])} |")
    return lines


def peers_table() -> list[str]:
    """compare_peers' own Markdown table of that run (written next to its JSON)."""
    table = PEERS.with_suffix(".md")
    if not table.exists():
        return [f"({table.name} is missing: run the `peers` stage)"]
    return table.read_text().rstrip().splitlines()


def training_summary(run: str, every: int = 1) -> list[str]:
    """Dev WER/CER of run `exp/<run>` at every `every`-th epoch (and the last)."""
    metrics = EXP / run / "metrics.csv"
    if not metrics.exists():
        return []
    rows = list(csv.DictReader(metrics.open()))
    steps = [r for r in rows if r["loss"]]
    dev = [r for r in rows if r["dev_wer"]]
    shown = [r for k, r in enumerate(dev, 1) if k % every == 0 or k == 1 or k == len(dev)]
    lines = [f"Training, exp/{run}: {steps[-1]['step']} steps, {len(dev)} epochs; dev WER/CER (greedy):", "",
             "| epoch | step | dev WER | dev CER |", "|---|---|---|---|"]
    lines += [f"| {r['epoch']} | {r['step']} | {pct(float(r['dev_wer']))} | {pct(float(r['dev_cer']))} |"
              for r in shown]
    return lines


def tuning_summary() -> list[str]:
    path = EXP / "lm-tuning.json"
    if not path.exists():
        return []
    t = json.loads(path.read_text())
    return [f"LM: {t['lm']}, weight {t['lm_weight']:g}, word bonus {t['word_bonus']:g}, "
            f"blank penalty {t.get('blank_penalty', 0):g}, beam {t.get('beam_size', 8)}, "
            f"tuned on {Path(t['dev']).name} ({t['utterances']} utts): WER {pct(t['greedy_wer'])} greedy → "
            f"{pct(t['wer'])}."] + ([
        f"Cross-validated (each half of the speakers decoded with the point best on the other half): "
        f"WER {pct(t['cv_wer'])}: the figure to quote for unseen data."] if "cv_wer" in t else [])


def main() -> None:
    out = ["## Held-out sets (vocable evaluate, bundled en-default)", ""] + evaluation_table()
    out += ["", *tuning_summary(), "", "## Side by side (benchmarks/compare_peers.py, one run)", ""] + peers_table()
    out += ["", *training_summary("conformer"), "", *training_summary("gpu-c", every=5)]
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
