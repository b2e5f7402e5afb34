"""Edges of config loading, model-file checks, scoring and the report that the broader tests leave open:
each test guards one behaviour a user would notice if it broke (a bad value accepted, a field silently
ignored, a wrong count or interval). Fast: no training, no decoding beyond the bundled digits model's load."""

import json

import pytest

from vocable.bundled import ASSETS_DIR
from vocable.config import load_config
from vocable.errors import ConfigError, DataError, ModelError
from vocable.evaluate import StatsOptions, compare_results, group_report, load_rows, overall_interval
from vocable.modelfile import load_model_file

from .test_modelfile_errors import altered, blob  # noqa: F401 (blob is a fixture)

TRAIN = '[data]\ntrain = ["x.jsonl"]\n'
DIGITS = ASSETS_DIR / "fsdd-digits.vocable"
FAST = StatsOptions(resamples=100, permutations=0)


def config_file(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- config.py / checks.from_dict


@pytest.mark.parametrize("text, match", [
    ("[data]\ndev = []\n", r"c.toml: \[data\] train: at least one training manifest is required"),
    ("[optim]\nmin_lr_ratio = 1.5\n" + TRAIN, r"c.toml: \[optim\] min_lr_ratio: expected 0 to 1, got 1.5"),
    ("[augment]\npad_seconds = [0.4, 0.1]\n" + TRAIN, r"c.toml: \[augment\] pad_seconds: expected \[low, high\]"),
    ("[run]\nnew_head = true\n" + TRAIN, r"c.toml: \[run\] new_head: needs \[run\] init_from"),
    ("[optim]\nlr = true\n" + TRAIN, r"c.toml: field 'optim.lr': expected float, got bool True"),
    ("[optim]\nepochs = true\n" + TRAIN, r"c.toml: field 'optim.epochs': expected int, got bool True"),
    ('[augment]\nspeeds = [0.9, "fast"]\n' + TRAIN, r"c.toml: field 'augment.speeds': expected float, got str 'fast'"),
    ('[data]\ntrain = ["x.jsonl", 3]\n', r"c.toml: field 'data.train': expected str, got int 3"),
])
def test_a_bad_value_is_refused_naming_file_and_field(tmp_path, text, match):
    """Values that would train wrongly (or crash later) are one ConfigError naming the file and field:
    no training data, a cosine floor above the peak, a reversed silence range, new_head with nothing to
    take weights from, booleans passing for numbers, and list items of the wrong type."""
    with pytest.raises(ConfigError, match=match):
        load_config(config_file(tmp_path, text))


def test_noise_folders_in_a_config_are_relative_to_its_folder(tmp_path, monkeypatch):
    """[augment] noise_dirs, like [data] paths, are read relative to the config file, not the current folder."""
    (tmp_path / "configs").mkdir()
    path = config_file(tmp_path / "configs", '[augment]\nnoise_dirs = ["noise"]\n[data]\ntrain = ["x.jsonl"]\n'
                                             'dev = ["d.jsonl"]\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    assert config.augment.noise_dirs == [str(tmp_path / "configs" / "noise")]
    assert config.data.dev == [str(tmp_path / "configs" / "d.jsonl")]


def test_keys_a_config_gives_win_over_the_start_models(tmp_path):
    """With [run] init_from, the start model fills in only the [model] keys the config leaves out: a key it
    gives is kept (so that a mismatch can be refused), not silently replaced by the start model's."""
    start = load_model_file(DIGITS).model_config
    path = config_file(tmp_path, f'[run]\ninit_from = "{DIGITS}"\n[model]\nd_model = {start.d_model * 2}\n' + TRAIN)
    config = load_config(path)
    assert config.model.d_model == start.d_model * 2 and config.model.n_layers == start.n_layers


# ---------------------------------------------------------------- modelfile.py / checks.py


@pytest.mark.parametrize("change, fragment", [
    (lambda b: b["meta"].update(lm_weight=50.0), "meta.lm_weight: expected a number from 0 to 10, got 50.0"),
    (lambda b: b["meta"].update(word_bonus=-25), "meta.word_bonus: expected a number from -20 to 20, got -25"),
    (lambda b: b["meta"].update(beam_size=10**6), "meta.beam_size: expected a positive integer up to 4096"),
    (lambda b: b["meta"].update(shifts=2.0), "meta.shifts: expected a whole number from 1 to 8, got 2.0"),
    (lambda b: b["meta"].update(beam_size=True), "meta.beam_size"),
    (lambda b: b.update(version=True), "version: expected an integer model format version, got True"),
    (lambda b: b.pop("model_config"), "model_config: missing"),
    (lambda b: b.pop("state_dict"), "state_dict: missing"),
    (lambda b: b.update(format="another-format"), "not a vocable model file"),
])
def test_a_damaged_model_file_is_refused_naming_the_field(blob, tmp_path, change, fragment):
    """Decoding weights far out of range, a beam that would exhaust memory, a fractional or boolean count,
    a missing table or a foreign format: one ModelError naming the file and the field, not a model that
    decodes garbage or a vague "corrupt" message."""
    path = altered(blob, tmp_path, change)
    with pytest.raises(ModelError) as caught:
        load_model_file(path)
    assert str(caught.value).startswith(f"{path}: ") and fragment in str(caught.value)


def test_settings_a_newer_vocable_wrote_are_ignored_and_the_model_is_ready_to_decode(blob, tmp_path):
    """An unknown key in model_config or features (written by a newer vocable) does not make the file
    unreadable; the loaded network is in inference mode (no dropout), so its output is deterministic."""
    path = altered(blob, tmp_path, lambda b: (b["model_config"].update(future_knob=3), b["features"].update(future=1)))
    loaded = load_model_file(path)
    assert not loaded.model.training and not any(m.training for m in loaded.model.modules())


# ---------------------------------------------------------------- evaluate.py


def rows_for(groups: dict, field="accent", speakers=3, utterances=2, words=5) -> list[dict]:
    """Scored rows: for each group name, `speakers` speakers of `utterances` utterances, each with the
    group's error count out of `words` words."""
    rows = []
    for group, errors in groups.items():
        for s in range(speakers):
            for u in range(utterances):
                rows.append({"id": f"{group}-{s}-{u}", "speaker": f"{group}-{s}", field: group, "ref": "a b c d e",
                             "hyp": "a b c d e", "word_errors": errors, "words": words, "char_errors": errors,
                             "chars": 2 * words - 1, "duration": 1.5})
    return rows


def test_an_empty_field_is_the_unknown_group_and_unknown_comes_last():
    """A manifest field given as "" is the same "unknown" group as an absent one, listed after the named
    groups (not sorted among them: "unknown" < "us")."""
    rows = rows_for({"us": 1, "zh": 2})
    rows += [{**r, "id": r["id"] + "-x", "speaker": "x", "accent": ""} for r in rows[:2]]
    rows += [{k: v for k, v in r.items() if k != "accent"} | {"id": r["id"] + "-y", "speaker": "y"} for r in rows[:2]]
    names = [g["name"] for g in group_report(rows, "accent", FAST)["groups"]]
    assert names == ["us", "zh", "unknown"]


def test_a_group_with_exactly_the_minimum_words_is_compared():
    """MIN_GROUP_WORDS (10) reference words is enough to be picked as best or worst for the gap."""
    rows = rows_for({"a": 0, "b": 3}, speakers=2, utterances=1)  # b: 2 utterances of 5 words = 10 words
    rows += [{**r, "id": r["id"] + "-more"} for r in rows if r["accent"] == "a"]  # a: 20 words
    report = group_report(rows, "accent", FAST)
    assert [g["words"] for g in report["groups"]] == [20, 10]
    assert report["gap"]["worst"] == "b" and report["gap"]["left_out"] == [] and "no_gap" not in report


def test_a_gap_test_p_value_equal_to_alpha_is_not_significant():
    """The page says a gap is significant when p < alpha: with 19 shuffles the smallest p is exactly 0.05."""
    rows = rows_for({"a": 0, "b": 4}, speakers=10, utterances=1)
    gap = group_report(rows, "accent", StatsOptions(resamples=50, permutations=19))["gap"]
    assert gap["p_value"] == 0.05 and not gap["significant"]


def test_groups_with_equal_error_rates_have_a_gap_p_value_of_one():
    """Equal groups: every shuffle reproduces the observed gap (0), so p is 1, not smaller."""
    rows = rows_for({"a": 1, "b": 1}, speakers=4, utterances=2)
    gap = group_report(rows, "accent", StatsOptions(resamples=50, permutations=50))["gap"]
    assert gap["wer_gap"] == 0 and gap["p_value"] == 1.0 and not gap["significant"]


def test_a_group_without_reference_words_is_not_listed_as_too_small_to_compare():
    """left_out names groups with some but too few words; a group of silences (0 words) has no WER at all."""
    rows = rows_for({"a": 0, "b": 2}, speakers=2, utterances=2)
    rows += [{**r, "id": "silence", "speaker": "q", "accent": "quiet", "words": 0, "word_errors": 1, "chars": 0}
             for r in rows[:1]]
    gap = group_report(rows, "accent", FAST)["gap"]
    assert gap["left_out"] == []


def test_ten_speakers_are_enough_for_no_few_speakers_note():
    """FEW_SPEAKERS = 10: below it the overall interval carries a note; at 10 speakers it does not."""
    assert "note" not in overall_interval(rows_for({"a": 1}, speakers=10), FAST)
    assert "only 9 speaker(s)" in overall_interval(rows_for({"a": 1}, speakers=9), FAST)["note"]


def test_compare_counts_unreadable_rows_apart_and_ties_as_neither_better_nor_worse():
    """only_in_a/b count scored utterances the other lacks (an unreadable row is in neither); an utterance
    with the same errors in both is neither better nor worse; a differing reference anywhere is refused."""
    a = rows_for({"x": 2}, speakers=3, utterances=2)
    b = [dict(r) for r in a]
    b[0]["word_errors"], b[1]["word_errors"] = 1, 3  # one better, one worse, four ties
    c = compare_results(a + [{"id": "gone", "error": "gone.wav: no such audio file"}], b, FAST)
    assert (c["only_in_a"], c["only_in_b"], c["utterances"]) == (0, 0, 6)
    assert (c["b_better_utterances"], c["b_worse_utterances"]) == (1, 1)
    b[-1]["ref"] = "something else"
    with pytest.raises(DataError, match=f"utterance {b[-1]['id']}: the two results have different reference"):
        compare_results(a, b, FAST)


def test_saved_rows_with_a_fractional_word_count_are_refused(tmp_path):
    """Counts are whole numbers: 2.5 words is not evaluate's output (a hand-edited or foreign file)."""
    rows = rows_for({"x": 1}, speakers=1, utterances=2)
    rows[1]["words"] = 2.5
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"rows.jsonl: row 2 \(x-0-1\): words: expected a count of 0 or more, got 2.5"):
        load_rows(path)


def test_a_one_utterance_output_file_can_be_compared(tmp_path):
    """`vocable evaluate --limit 1 --output rows.jsonl` writes one row: --compare must read it as rows."""
    row = rows_for({"x": 1}, speakers=1, utterances=1)[0]
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert load_rows(path) == [row]


def test_the_summary_reports_the_character_error_rate():
    """EvalSummary.to_dict (what `evaluate --json` prints at the top) has the CER, not a copy of the WER."""
    from types import SimpleNamespace

    from tests.conftest import FSDD_FIXTURES
    from vocable.data.manifest import Utterance
    from vocable.evaluate import evaluate_dataset
    utterances = [Utterance("u", str(FSDD_FIXTURES / "1_theo_0.flac"), "one two", speaker="s")]
    recognizer = SimpleNamespace(tokenizer=SimpleNamespace(normalizer="english"))
    summary = evaluate_dataset(recognizer, utterances, show_progress=False, transcribe=lambda audio: "one too")
    assert summary.to_dict()["wer"] == 0.5 and summary.to_dict()["cer"] == round(1 / 7, 4)


def test_intervals_are_widened_for_few_clusters():
    """The expanded-percentile tail for 5 clusters at 95 %: Student t with 4 degrees of freedom (2.776)
    times sqrt(5/4), so each tail is about 0.1 %, not the 2.5 % of a plain percentile interval."""
    from statistics import NormalDist

    from vocable.evaluate import _expanded_tail
    expected = NormalDist().cdf(-2.7764 * (5 / 4) ** 0.5)
    assert _expanded_tail(5, 0.95)[0] == pytest.approx(expected, rel=0.05)


# ---------------------------------------------------------------- report.py


def report_result(rows):
    from vocable.evaluate import analyse
    return {**analyse(rows, ["accent"], FAST), "utterances": len(rows), "failed": 0, "audio_hours": 0.01,
            "rtf": 0.01, "conditions": [], "dataset_sha256": "0" * 64, "vocable_version": "0", "rows": rows,
            "options": {"resamples": 100, "alpha": 0.05}}


def test_error_bars_reach_from_the_interval_low_to_high_end():
    from vocable.report import _errorbars
    low, high = _errorbars([{"wer": 0.2, "wer_ci": [0.1, 0.35]}, {"wer": 0.0, "wer_ci": [None, None]}])
    assert low == pytest.approx([10.0, 0]) and high == pytest.approx([15.0, 0])


def test_the_page_shows_the_cer_interval_and_substitutions_as_said_then_heard():
    from vocable.report import render_html
    rows = rows_for({"us": 1, "zh": 3}, speakers=3, utterances=2)
    for r in rows:
        r["hyp"], r["char_errors"] = "a x c d e", 7 * r["word_errors"]
    result = report_result(rows)
    result["overall"]["cer_ci"] = [0.111, 0.222]
    page = render_html(result, {}, [], {})
    assert "CER <b>" in page and "(11.1% &ndash; 22.2%)" in page
    assert "<tr><td>b</td><td>x</td><td>12</td></tr>" in page  # said "b", heard "x", 12 times


def test_a_plot_of_many_groups_keeps_the_best_and_the_worst(tmp_path, monkeypatch):
    """Beyond MAX_PLOT_GROUPS bars the plot shows the best and the worst halves: the worst group is the one
    a reader most needs to see."""
    pytest.importorskip("matplotlib")
    from vocable import report
    axes = []
    real = report._figure
    monkeypatch.setattr(report, "_figure", lambda w, h: axes.append(real(w, h)) or axes[-1])
    groups = [{"name": f"g{i:02d}", "wer": i / 100, "wer_ci": [None, None], "speakers": 1, "utterances": 1}
              for i in range(report.MAX_PLOT_GROUPS + 10)]
    report.plot_groups({"field": "accent", "groups": groups}, tmp_path / "p.png")
    labels = [t.get_text().split()[0] for t in axes[0][1].get_yticklabels()]
    assert len(labels) == report.MAX_PLOT_GROUPS and "g00" in labels and f"g{len(groups) - 1}" in labels
