"""The evaluation report: one HTML page plus PNG plots in a folder that can be zipped and sent.

Input is the dict that evaluate.run_evaluation returns (what `vocable evaluate --json` prints).
The page needs no JavaScript and no network: plots are PNG files next to it, audio clips are copied
into clips/, errors are marked with <mark>/<del>/<ins> so they stay visible even without the CSS.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

from .evaluate import LENGTH_FIELD, MIN_GROUP_WORDS, interval_level, word_alignment

SWEEP_PLOT = "wer-vs-snr.png"
REPORT_FILES = "report-files.txt"  # inside the report folder: what a report wrote besides index.html
CLIPS_FOLDER = "clips"  # inside the report folder: copies of the audio in the listening table
MAX_CLIPS = 50  # utterances in the listening table (their audio is copied into the report folder)
MAX_PLOT_GROUPS = 60  # bars in one group plot; beyond it the best and worst halves are shown
DPI = 110  # PNG resolution: ~900 px wide plots
LOSS_SMOOTHING = 50  # steps in the running mean of the training-curve plot
ORDERED_FIELDS = ("age", LENGTH_FIELD)  # fields whose groups have a natural order (kept in plots)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.95em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; }
.meta { color: #555; font-size: 0.9em; } .meta code { font-size: 0.95em; }
.big { font-size: 1.25em; }
.sig { background: #c62828; color: #fff; padding: 0.1em 0.4em; border-radius: 3px; font-weight: bold; }
.nosig { background: #e0e0e0; padding: 0.1em 0.4em; border-radius: 3px; }
.note { color: #8a5a00; }
mark.sub { background: #ffe08a; } small.was { color: #8a5a00; }
del { background: #ffd6d6; color: #a00; } ins { background: #d4f5d4; color: #060; text-decoration: underline; }
.errors { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
audio { width: 220px; height: 32px; }
"""


def write_report(result: dict, out_dir: str | Path, max_clips: int = MAX_CLIPS) -> Path:
    """Write index.html, PNG plots and copied audio clips into `out_dir`; returns the page's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_earlier_report(out)
    source = f"{Path(str(result.get('dataset', '-'))).name}, model {Path(str(result.get('model', '-'))).name}"
    plots = {}
    for name, report in [*result["groups"].items(), (LENGTH_FIELD, result["length"])]:
        if len(report["groups"]) > 1:  # one bar says no more than the table
            plots[name] = plot_groups(report, out / f"by-{_slug(name)}.png", source, interval_level(result))
    sweep_plot = None
    if len(result.get("conditions", [])) > 1:
        sweep_plot = plot_conditions(result["conditions"], out / SWEEP_PLOT, source, interval_level(result))
    listened = listening_rows(result["rows"], max_clips)
    clips = copy_clips(listened, out / CLIPS_FOLDER)
    page = out / "index.html"
    page.write_text(render_html(result, plots, listened, clips, sweep_plot), encoding="utf-8")
    written = [Path(p).name for p in [*plots.values(), sweep_plot] if p] + list(clips.values())  # relative to `out`
    (out / REPORT_FILES).write_text("".join(f"{name}\n" for name in written), encoding="utf-8")
    return page


def remove_earlier_report(out: Path) -> None:
    """Delete the plots and clips an earlier report listed in REPORT_FILES: stale ones would show (or ship)
    other data. Nothing else: a folder's other files (a user's own by-month.png) are not the report's."""
    listing = out / REPORT_FILES
    if not listing.is_file():
        return
    for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
        path = (out / line).resolve()
        if line and path.is_relative_to(out.resolve()) and path.is_file():  # never outside the report folder
            path.unlink()


# ---------------------------------------------------------------- plots

def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    fig = Figure(figsize=(width, height), dpi=DPI)
    return fig, fig.add_subplot()


def plot_training(metrics_csv: Path, path: Path) -> Path:
    """A run's metrics.csv → PNG: training loss by step (each step faint, a running mean over
    LOSS_SMOOTHING steps drawn over it) and, on a second axis, dev WER and CER at each epoch's end."""
    import csv
    import numpy as np
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [(int(r["step"]), float(r["loss"])) for r in rows if r.get("loss")]
    dev = [(int(r["step"]), float(r["dev_wer"]) * 100, float(r["dev_cer"]) * 100) for r in rows if r.get("dev_wer")]
    fig, ax = _figure(8, 4)
    if steps:
        x, loss = np.array(steps).T
        ax.plot(x, loss, color="tab:blue", alpha=0.25, linewidth=0.8)
        window = min(LOSS_SMOOTHING, len(loss))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(x[window - 1:], smooth, color="tab:blue", label="training loss (CTC, per step)")
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if dev:
        right = ax.twinx()
        x, wer, cer = np.array(dev).T
        right.plot(x, wer, "o-", color="tab:red", label="dev WER %")
        right.plot(x, cer, "s--", color="tab:orange", label="dev CER %")
        right.set_ylabel("dev error rate (%)")
        right.set_ylim(0, max(100.0, float(wer.max()) * 1.05))
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        right.legend(handles=handles, loc="upper right", fontsize="small")
    else:
        ax.legend(loc="upper right", fontsize="small")
    ax.set_title(f"{metrics_csv.parent.name}: training curve", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _errorbars(groups: list[dict]) -> list[list[float]]:
    """Asymmetric error-bar lengths (in %) from each group's WER and its CI."""
    low = [max(0.0, (g["wer"] - g["wer_ci"][0]) * 100) if g["wer_ci"][0] is not None else 0 for g in groups]
    high = [max(0.0, (g["wer_ci"][1] - g["wer"]) * 100) if g["wer_ci"][1] is not None else 0 for g in groups]
    return [low, high]


def plot_groups(report: dict, path: Path, source: str = "", level: str = "95%") -> str:
    """Horizontal bars: WER per group with its `level` interval; `source` (data and model) under the title."""
    groups = [g for g in report["groups"] if g["wer"] is not None]
    if report["field"] not in ORDERED_FIELDS:
        groups.sort(key=lambda g: g["wer"])
    if len(groups) > MAX_PLOT_GROUPS:
        half = MAX_PLOT_GROUPS // 2
        groups = groups[:half] + groups[-half:]
    fig, ax = _figure(8, 1.2 + 0.38 * max(1, len(groups)))
    y = list(range(len(groups)))[::-1]  # first group on top
    ax.barh(y, [g["wer"] * 100 for g in groups], xerr=_errorbars(groups), color="#4c78a8",
            error_kw={"ecolor": "#222", "capsize": 3})
    ax.set_yticks(y, [f"{g['name']}  ({_who(g)})" for g in groups])
    for yi, g in zip(y, groups):  # value just right of the interval, where it never hides in a short bar
        end = max(g["wer"], g["wer_ci"][1] if g["wer_ci"][1] is not None else 0.0) * 100
        ax.annotate(f"{g['wer']:.1%}", (end, yi), xytext=(5, 0), textcoords="offset points", va="center",
                    fontsize=8)
    ax.margins(x=0.12)
    ax.set_xlabel(f"WER (%), lines: {level} interval")
    ax.set_xlim(left=0)
    title = f"WER by {report['field']}"
    gap = report.get("gap")
    if gap:
        verdict = ", significant" if gap["significant"] else ""
        title += f"  (gap {gap['wer_gap']:.1%}, p = {gap['p_value']:.2g}{verdict})"
    ax.set_title(f"{title}\n{source}" if source else title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path.name


def plot_conditions(conditions: list[dict], path: Path, source: str = "", level: str = "95%") -> str:
    """WER against SNR (clean at the right) with `level` intervals; reverberation as a separate band;
    `source` (data and model) under the title."""
    noisy = sorted((c for c in conditions if c.get("snr_db") is not None), key=lambda c: c["snr_db"])
    clean = next((c for c in conditions if c["name"] == "clean"), None)
    reverb = [c for c in conditions if c.get("reverb")]
    fig, ax = _figure(8, 4.2)
    xs = [c["snr_db"] for c in noisy]
    step = (xs[-1] - xs[0]) / max(1, len(xs) - 1) if len(xs) > 1 else 10.0
    points = noisy + ([clean] if clean else [])
    px = xs + ([xs[-1] + step if xs else 0.0] if clean else [])
    if points:
        ax.errorbar(px, [c["wer"] * 100 for c in points], yerr=_errorbars(points), marker="o", color="#4c78a8",
                    capsize=3, label=f"added {noisy[0]['noise']} noise" if noisy else "clean")
        ax.set_xticks(px, [f"{x:g}" for x in xs] + (["clean"] if clean else []))
        for x, c in zip(px, points):
            ax.annotate(f"{c['wer']:.1%}", (x, c["wer"] * 100), xytext=(6, 3), textcoords="offset points",
                        ha="left", fontsize=8, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"})
    for c in reverb:
        ax.axhline(c["wer"] * 100, color="#e45756", linestyle="--", label=f"simulated rooms: {c['wer']:.1%}")
        if None not in c["wer_ci"]:
            ax.axhspan(c["wer_ci"][0] * 100, c["wer_ci"][1] * 100, color="#e45756", alpha=0.12)
    ax.set_xlabel("signal-to-noise ratio (dB)")
    ax.set_ylabel("WER (%)")
    top = max([c["wer_ci"][1] or c["wer"] for c in conditions if c["wer"] is not None] + [0.01])
    ax.set_ylim(0, top * 100 * 1.15)  # room for the value labels above the points
    title = f"WER under noise and reverberation (bars and band: {level} interval)"
    ax.set_title(f"{title}\n{source}" if source else title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path.name


# ---------------------------------------------------------------- listening table

def listening_rows(rows: list[dict], limit: int) -> list[dict]:
    """Utterances to listen to: the worst first (by utterance WER), then correct ones, up to `limit`."""
    scored = [r for r in rows if "error" not in r]
    scored.sort(key=lambda r: (-r["word_errors"] / max(1, r["words"]), -r["word_errors"], r["id"]))
    return scored[: max(0, limit)]


def copy_clips(rows: list[dict], folder: Path) -> dict[str, str]:
    """Copy each row's audio into `folder`; returns id → path relative to the report page."""
    clips = {}
    for number, r in enumerate(rows):
        source = Path(r.get("audio") or "")
        if not source.is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{number:04d}-{_slug(r['id'])}{source.suffix.lower()}"
        shutil.copyfile(source, folder / name)
        clips[r["id"]] = f"{folder.name}/{name}"
    return clips


def highlight(ref: str, hyp: str, normalizer: str = "english") -> str:
    """The hypothesis as HTML with its errors against the reference marked.

    substitution: <mark>heard</mark><small>(said)</small>; deletion: <del>missed</del>; insertion: <ins>extra</ins>
    """
    parts = []
    for op, r, h in word_alignment(ref, hyp, normalizer):
        if op == "ok":
            parts.append(html.escape(h))
        elif op == "sub":
            parts.append(f'<mark class="sub" title="reference: {html.escape(r)}">{html.escape(h)}</mark>'
                         f'<small class="was">({html.escape(r)})</small>')
        elif op == "del":
            parts.append(f'<del title="missed">{html.escape(r)}</del>')
        else:
            parts.append(f'<ins title="inserted">{html.escape(h)}</ins>')
    return " ".join(parts) or "<em>(empty)</em>"


# ---------------------------------------------------------------- the page

def render_html(result: dict, plots: dict[str, str], listened: list[dict], clips: dict[str, str],
                sweep_plot: str | None = None) -> str:
    e = html.escape
    o, level = result["overall"], interval_level(result)
    dataset, model = str(result.get("dataset", "-")), str(result.get("model", "-"))
    title = f"vocable evaluation: {Path(dataset).name} / {Path(model).name}"
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>",
           f"<h1>{e(title)}</h1>",
           f"<p class='big'>WER <b>{_pct(o['wer'])}</b> ({level} interval {_ci(o['wer_ci'])}) &middot; "
           f"CER <b>{_pct(o['cer'])}</b> ({_ci(o['cer_ci'])}) &middot; {result['utterances']} utterances, "
           f"{result['audio_hours'] * 60:.1f} min of audio</p>",
           f"<p class='note'>Note: {e(o['note'])}.</p>" if o.get("note") else "",
           "<p class='meta'>" + " &middot; ".join([
               f"dataset <code>{e(dataset)}</code> sha256 <code>{e(result['dataset_sha256'][:16])}</code>",
               f"model <code>{e(model)}</code> sha256 <code>{e(result.get('model_sha256', '-')[:16])}</code>",
               f"vocable {e(result['vocable_version'])}", f"RTF {result['rtf']:.4f}",
               f"{result['failed']} unreadable file(s)"]) + "</p>",
           f"<p class='meta'>Intervals resample {e(o['unit'])}s (cluster bootstrap, {result['options']['resamples']} "
           "replicates, expanded percentile); a gap is called significant when a permutation test of the "
           f"best-worst spread gives p &lt; {result['options']['alpha']}.</p>"]
    for name, report in result["groups"].items():
        out.append(f"<h2>WER by {e(name)}</h2>")
        out += _group_section(report, plots.get(name), level)
    if sweep_plot:
        out.append("<h2>Noise and reverberation</h2>")
        out.append(f"<img src='{sweep_plot}' alt='WER against signal-to-noise ratio'>")
        out.append(f"<table><tr><th>condition</th><th>WER</th><th>{level} interval</th><th>CER</th></tr>")
        for c in result["conditions"]:
            out.append(_tr(e(c["name"]), _pct(c["wer"]), _ci(c["wer_ci"]), _pct(c["cer"])))
        out.append("</table><p class='meta'>The same noise (or room) per utterance at every level, so the curve "
                   "compares like with like.</p>")
    out.append("<h2>WER by utterance length</h2>")
    out += _group_section(result["length"], plots.get(LENGTH_FIELD), level)
    out += _error_section(result["errors"])
    out += _listening_section(result, listened, clips)
    out.append("</body></html>")
    return "\n".join(out)


def _group_section(report: dict, plot: str | None, level: str) -> list[str]:
    e = html.escape
    out = [f"<img src='{plot}' alt='WER by {e(report['field'])} with {level} intervals'>"] if plot else []
    out.append("<table><tr><th>group</th><th>speakers</th><th>utterances</th><th>words</th><th>WER</th>"
               f"<th>{level} interval</th><th>CER</th><th>{level} interval</th></tr>")
    for g in report["groups"]:
        name = e(g["name"]) + (" <small>(few words)</small>" if g.get("small") else "")
        out.append(_tr(name, g["speakers"] or "-", g["utterances"], g["words"], _pct(g["wer"]), _ci(g["wer_ci"]),
                       _pct(g["cer"]), _ci(g["cer_ci"])))
    out.append("</table>")
    gap = report.get("gap")
    if gap:
        badge = ("<span class='sig'>significant</span>" if gap["significant"]
                 else "<span class='nosig'>not significant</span>")
        out.append(f"<p>Gap between worst (<b>{e(gap['worst'])}</b>) and best (<b>{e(gap['best'])}</b>): "
                   f"<b>{_pct(gap['wer_gap'])}</b> {badge}<br>p = {gap['p_value']:.3g} ({e(gap['test'])}, "
                   f"which allows for the pair being the extremes of {len(report['groups'])} groups); "
                   f"{level} interval of this pair's gap {_ci(gap['wer_gap_ci'])} (not so corrected).</p>")
        if gap.get("left_out"):
            out.append(f"<p class='meta'>Too few words to compare (fewer than {MIN_GROUP_WORDS}; listed, not picked "
                       "as best or worst): "
                       f"{e(', '.join(gap['left_out']))}.</p>")
    if report.get("no_gap"):
        out.append(f"<p class='meta'>{e(report['no_gap'])}.</p>")
    out.append(f"<p class='meta'>Intervals resample {e(report['unit'])}s.</p>")
    if report.get("note"):
        out.append(f"<p class='note'>Note: {e(report['note'])}.</p>")
    return out


def _error_section(errors: dict) -> list[str]:
    e = html.escape
    c = errors["counts"]
    out = ["<h2>Error analysis</h2>",
           f"<p>{c['correct']} words correct, {c['substitutions']} substituted, {c['deletions']} deleted, "
           f"{c['insertions']} inserted.</p><div class='errors'>"]
    tables = [("Substitutions", ["said", "heard", "times"],
               [(s["ref"], s["hyp"], s["count"]) for s in errors["substitutions"]]),
              ("Deletions", ["missed word", "times"], [(d["word"], d["count"]) for d in errors["deletions"]]),
              ("Insertions", ["extra word", "times"], [(d["word"], d["count"]) for d in errors["insertions"]])]
    for caption, head, rows in tables:
        out.append(f"<table><caption><b>{caption}</b></caption><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in rows]
        if not rows:
            out.append(f"<tr><td colspan='{len(head)}'>none</td></tr>")
        out.append("</table>")
    out.append("</div>")
    return out


def _listening_section(result: dict, listened: list[dict], clips: dict[str, str]) -> list[str]:
    e = html.escape
    total = sum("error" not in r for r in result["rows"])
    normalizer = result.get("normalizer", "english")  # results written before it was recorded were English
    out = ["<h2>Listen: utterances, worst first</h2>",
           f"<p class='meta'>{len(listened)} of {total} utterances. In the hypothesis: "
           "<mark class='sub'>heard</mark><small class='was'>(said)</small> substitution, "
           "<del>missed</del> deletion, <ins>extra</ins> insertion.</p>",
           "<table><tr><th>#</th><th>audio</th><th>id / speaker</th><th>reference</th><th>hypothesis</th>"
           "<th>WER</th></tr>"]
    for number, r in enumerate(listened, 1):
        clip = clips.get(r["id"])
        player = (f"<audio controls preload='none' src='{e(clip)}'><a href='{e(clip)}'>play</a></audio>"
                  if clip else "<em>audio not found</em>")
        who = f"{e(r['id'])}<br><small>{e(str(r.get('speaker', '')))}</small>"
        out.append(f"<tr><td class='num'>{number}</td><td>{player}</td><td>{who}</td><td>{e(r['ref'])}</td>"
                   f"<td>{highlight(r['ref'], r['hyp'], normalizer)}</td>"
                   f"<td class='num'>{r['word_errors']}/{r['words']}</td></tr>")
    out.append("</table>")
    return out


def _tr(first: str, *numbers) -> str:
    """A table row: `first` (HTML) in a text cell, the rest right-aligned."""
    return f"<tr><td>{first}</td>" + "".join(f"<td class='num'>{n}</td>" for n in numbers) + "</tr>"


def _who(group: dict) -> str:
    """"3 spk, 40 utt", or "40 utt" when the data has no speaker labels."""
    return f"{group['speakers']} spk, {group['utterances']} utt" if group["speakers"] else f"{group['utterances']} utt"


def _pct(x) -> str:
    return "&ndash;" if x is None else f"{x:.1%}"


def _ci(ci) -> str:
    return "&ndash;" if ci is None or None in ci else f"{ci[0]:.1%} &ndash; {ci[1]:.1%}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:80] or "x"
