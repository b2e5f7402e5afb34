"""Evaluation statistics on constructed results whose true error rates are known (no model needed)."""

import json
import random

import numpy as np
import pytest

from vocable.cli import main
from vocable.data.manifest import Utterance
from vocable.errors import DataError
from vocable.evaluate import (StatsOptions, age_band, align, analyse, compare_results, dataset_hash, edit_distance,
                              error_analysis, format_comparison, group_report, length_bucket, load_rows, wer,
                              word_errors)


def simulate(rng, rates: dict, speakers: int = 20, utterances: int = 10, words: int = 8, spread: float = 0.1,
             field: str = "gender") -> list[dict]:
    """Rows of a fake evaluation: each speaker's own error rate is drawn around its group's rate (speakers
    differ, as real ones do), each utterance's errors are binomial. The group's true WER is its rate."""
    rows = []
    for group, rate in rates.items():
        for s in range(speakers):
            speaker_rate = float(np.clip(rng.normal(rate, spread), 0, 1))
            for u in range(utterances):
                errors = int(rng.binomial(words, speaker_rate))
                rows.append({"id": f"{group}-{s}-{u}", "speaker": f"{group}-{s}", field: group,
                             "word_errors": errors, "words": words, "char_errors": errors * 3,
                             "chars": words * 5, "duration": 2.5, "ref": "", "hyp": ""})
    return rows


FAST = StatsOptions(resamples=300, permutations=0)


def test_interval_covers_the_true_wer_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, covered, covered_if_utterances_were_independent = 150, 0, 0
    for trial in range(trials):
        rows = simulate(rng, {"f": 0.3, "m": 0.3})
        low, high = group_report(rows, "gender", FAST)["groups"][0]["wer_ci"]
        covered += low <= 0.3 <= high
        naive = [{**r, "speaker": r["id"]} for r in rows]  # every utterance its own "speaker"
        low, high = group_report(naive, "gender", FAST)["groups"][0]["wer_ci"]
        covered_if_utterances_were_independent += low <= 0.3 <= high
    assert 0.88 <= covered / trials <= 0.995
    # why speakers are resampled: utterance resampling ignores speaker variation and misses the truth often
    assert covered_if_utterances_were_independent / trials < 0.8


def test_intervals_stay_honest_with_five_speakers():
    """With few speakers a plain percentile interval is too narrow (about 80 % coverage at 5): the interval
    is widened as the Student t quantile says, so it still covers the truth about 95 % of the time."""
    rng = np.random.default_rng(5)
    trials, covered = 150, 0
    for trial in range(trials):
        rows = simulate(rng, {"f": 0.3}, speakers=5)
        low, high = group_report(rows, "gender", FAST)["groups"][0]["wer_ci"]
        covered += low <= 0.3 <= high
    assert covered / trials >= 0.88


def test_point_estimates_are_pooled_word_error_rates():
    rows = simulate(np.random.default_rng(1), {"a": 0.2, "b": 0.4}, speakers=5, spread=0.0)
    report = group_report(rows, "gender", FAST)
    for g in report["groups"]:
        members = [r for r in rows if r["gender"] == g["name"]]
        assert g["wer"] == pytest.approx(sum(r["word_errors"] for r in members) / sum(r["words"] for r in members),
                                         abs=1e-4)
        assert g["speakers"] == 5 and g["utterances"] == 50
        assert g["wer_ci"][0] <= g["wer"] <= g["wer_ci"][1]
    assert report["unit"] == "speaker"


def test_one_gender_spelt_by_two_corpora_is_one_group():
    rows = simulate(np.random.default_rng(1), {"F": 0.2, "male_masculine": 0.4}, speakers=3, spread=0.0)
    rows += [{**r, "id": r["id"] + "-cv", "speaker": r["speaker"] + "-cv",
              "gender": {"F": "female_feminine", "male_masculine": "m"}[r["gender"]]} for r in rows]
    assert [(g["name"], g["speakers"]) for g in group_report(rows, "gender", FAST)["groups"]] == [("f", 6), ("m", 6)]


def test_gap_flag_fires_on_a_planted_gap_and_rarely_on_equal_groups():
    options = StatsOptions(resamples=200, permutations=500)
    rng = np.random.default_rng(2)
    planted = [group_report(simulate(rng, {"f": 0.15, "m": 0.35}, speakers=12), "gender",
                            StatsOptions(resamples=200, permutations=500, seed=i))["gap"] for i in range(5)]
    assert all(g["significant"] and g["worst"] == "m" and g["best"] == "f" for g in planted)
    assert all(g["wer_gap_ci"][0] > 0 for g in planted)
    # four equal groups: the max-min statistic must not be fooled by picking the extreme pair
    equal = [group_report(simulate(rng, {"a": 0.3, "b": 0.3, "c": 0.3, "d": 0.3}, speakers=8), "gender",
                          StatsOptions(resamples=200, permutations=500, seed=i))["gap"] for i in range(20)]
    assert sum(g["significant"] for g in equal) <= 3
    assert all(g["test"] == "permutation of group labels over speakers" for g in equal)
    assert options.alpha == 0.05


def test_field_that_varies_within_speakers_is_tested_within_speakers():
    rng = np.random.default_rng(3)
    rows = simulate(rng, {"all": 0.3}, speakers=10, utterances=20)
    for r in rows:  # half of each speaker's utterances on a bad microphone that adds errors
        bad = int(r["id"].rsplit("-", 1)[1]) % 2
        r["mic"] = "cheap" if bad else "good"
        r["word_errors"] = min(r["words"], r["word_errors"] + 3 * bad)
    report = group_report(rows, "mic", StatsOptions(resamples=200, permutations=500))
    assert report["unit"] == "speaker"
    assert report["gap"]["test"] == "permutation of group labels within each speaker"
    assert report["gap"]["significant"] and report["gap"]["worst"] == "cheap"
    for r in rows:  # labels unrelated to errors: no effect
        r["mic"] = random.Random(r["id"]).choice(["x", "y"])
    assert not group_report(rows, "mic", StatsOptions(resamples=200, permutations=500))["gap"]["significant"]


def test_groups_with_one_speaker_fall_back_to_utterances_and_say_so():
    rows = simulate(np.random.default_rng(4), {"a": 0.2, "b": 0.2}, speakers=1, utterances=30)
    report = group_report(rows, "gender", FAST)
    assert report["unit"] == "utterance" and "fewer than 2 speakers" in report["note"]
    by_speaker = group_report(rows, "speaker", FAST)
    assert by_speaker["unit"] == "utterance" and len(by_speaker["groups"]) == 2


def test_age_bands_and_length_buckets():
    assert [age_band(a) for a in (6, 12, 13, 17, 18, 59, 60, 81)] == \
        ["child", "child", "teen", "teen", "adult", "adult", "60+", "60+"]
    assert age_band("9") == "child" and age_band("twenties") == "twenties"
    assert [age_band(a, (10, 30)) for a in (5, 10, 29, 30)] == ["<10", "10-29", "10-29", "30+"]
    assert [length_bucket(s) for s in (0.4, 1.0, 3.9, 20.0)] == ["<1 s", "1-2 s", "2-4 s", "≥16 s"]
    rows = simulate(np.random.default_rng(5), {"x": 0.2}, speakers=4)
    for i, r in enumerate(rows):
        r["age"] = [7, 15, 30, 70][i % 4]
    names = [g["name"] for g in group_report(rows, "age", FAST)["groups"]]
    assert names == ["child", "teen", "adult", "60+"]  # natural order, not alphabetical


def test_alignment_backtrace_is_a_minimal_edit_script():
    rng = random.Random(0)
    for _ in range(200):
        ref = [rng.choice("abcd") for _ in range(rng.randint(0, 8))]
        hyp = [rng.choice("abcd") for _ in range(rng.randint(0, 8))]
        ops = align(ref, hyp)
        assert sum(op != "ok" for op, _, _ in ops) == edit_distance(ref, hyp)
        assert [r for _, r, _ in ops if r is not None] == ref
        assert [h for _, _, h in ops if h is not None] == hyp
    assert align("the cat sat".split(), "the bat sat down".split()) == [
        ("ok", "the", "the"), ("sub", "cat", "bat"), ("ok", "sat", "sat"), ("ins", None, "down")]


def test_error_analysis_counts_substitutions_deletions_insertions():
    rows = [{"id": "1", "ref": "turn the light on", "hyp": "turn a light on please", "word_errors": 2, "words": 4},
            {"id": "2", "ref": "the light", "hyp": "a light", "word_errors": 1, "words": 2},
            {"id": "3", "ref": "switch it off", "hyp": "switch off", "word_errors": 1, "words": 3},
            {"id": "4", "ref": "hello", "hyp": "hello", "word_errors": 0, "words": 1}]
    for r in rows:
        assert word_errors(r["ref"], r["hyp"])[0] == r["word_errors"]
    e = error_analysis(rows)
    assert e["substitutions"][0] == {"ref": "the", "hyp": "a", "count": 2}
    assert e["deletions"] == [{"word": "it", "count": 1}] and e["insertions"] == [{"word": "please", "count": 1}]
    assert e["counts"] == {"correct": 7, "substitutions": 2, "deletions": 1, "insertions": 1}
    assert [w["id"] for w in e["worst"]] == ["1", "2", "3"]  # by utterance WER, then errors; correct ones left out


def test_a_gap_between_two_single_utterance_groups_has_no_interval():
    """Every bootstrap replicate of two one-utterance groups gives the same gap: no interval, not [g, g]."""
    rows = [{"id": str(i), "speaker": f"s{i}", "age": age, "ref": "a b c d", "hyp": "a b c d",
             "word_errors": errors, "words": 4, "char_errors": errors, "chars": 7} for i, (age, errors) in
            enumerate([(8, 0), (15, 2), (30, 1), (70, 3)])]
    gap = analyse(rows, ["age"], FAST)["groups"]["age"]["gap"]
    assert gap["wer_gap"] == 0.75 and gap["wer_gap_ci"] == [None, None]


def test_analyse_rejects_an_unknown_field_naming_the_ones_there():
    rows = simulate(np.random.default_rng(6), {"f": 0.2}, speakers=3)
    with pytest.raises(DataError, match="--by accent: no utterance has this field.*gender"):
        analyse(rows, ["accent"], FAST)
    with pytest.raises(DataError, match="no utterance could be scored"):
        analyse([{"id": "x", "error": "x.wav: no such file"}], [], FAST)
    silent = [{**r, "ref": "", "words": 0, "word_errors": 1} for r in rows]
    with pytest.raises(DataError, match="no scored utterance has reference words"):
        analyse(silent, [], FAST)


def test_length_is_reported_once_even_when_asked_for():
    rows = simulate(np.random.default_rng(7), {"f": 0.2}, speakers=3)
    result = analyse(rows, ["length", "gender"], FAST)
    assert list(result["groups"]) == ["gender"] and result["length"]["groups"]


def paired_systems(rng, improvement: float) -> tuple[list[dict], list[dict]]:
    """System B makes `improvement` fewer errors per word than A on the same utterances."""
    a = simulate(rng, {"all": 0.3}, speakers=15)
    b = []
    for r in a:
        fixed = int(rng.binomial(r["word_errors"], improvement / 0.3)) if improvement > 0 else 0
        b.append({**r, "word_errors": r["word_errors"] - fixed})
    for r in a + b:
        r["ref"] = "one two three four five six seven eight"
    return a, b


def test_compare_gives_a_margin_for_a_real_improvement_and_none_for_a_tie():
    rng = np.random.default_rng(7)
    a, b = paired_systems(rng, 0.1)
    c = compare_results(a, b, StatsOptions(resamples=500, permutations=500))
    true_diff = (sum(r["word_errors"] for r in b) - sum(r["word_errors"] for r in a)) / sum(r["words"] for r in a)
    assert c["wer_diff"] == pytest.approx(true_diff, abs=1e-4)
    assert c["wer_diff_ci"][1] < 0 and c["p_value"] < 0.01 and c["verdict"].startswith("B is better")
    assert c["unit"] == "speaker" and c["speakers"] == 15 and c["utterances"] == 150
    same = compare_results(a, [dict(r) for r in a], StatsOptions(resamples=500, permutations=500))
    assert same["wer_diff"] == 0 and same["verdict"].startswith("no significant difference")
    with pytest.raises(DataError, match="share no scored utterance"):
        compare_results(a, [{**r, "id": "other-" + r["id"]} for r in b])
    with pytest.raises(DataError, match="different reference texts"):
        compare_results(a, [{**r, "ref": "nine"} for r in b])


def test_intervals_are_labelled_with_the_level_they_were_computed_at(tmp_path):
    from vocable.evaluate import format_comparison, format_summary
    from vocable.report import render_html
    rows = simulate(np.random.default_rng(2), {"f": 0.2, "m": 0.3}, speakers=4, utterances=3)
    for confidence, label in [(0.5, "50%"), (0.95, "95%")]:
        result = {**analyse(rows, ["gender"], StatsOptions(confidence=confidence, resamples=200, permutations=0)),
                  "utterances": len(rows), "failed": 0, "audio_hours": 0.1, "rtf": 0.01,
                  "conditions": [], "dataset_sha256": "0" * 64, "vocable_version": "0", "rows": rows,
                  "options": {"resamples": 200, "alpha": 0.05}}
        assert f"({label} CI" in format_summary(result)
        page = render_html(result, {}, [], {})
        assert f"{label} interval" in page and ("95%" in page) == (label == "95%")
        c = compare_results(rows, [dict(r) for r in rows], StatsOptions(confidence=confidence, resamples=200,
                                                                        permutations=0))
        assert f"({label} CI" in format_comparison(c)


def test_compare_on_the_command_line(tmp_path, capsys):
    a, b = paired_systems(np.random.default_rng(8), 0.15)
    (tmp_path / "a.json").write_text(json.dumps({"rows": a}))  # the shape `evaluate --json` prints
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in b))  # the shape of --output
    assert main(["evaluate", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.jsonl"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["wer_diff"] < 0 and out["wer_diff_ci"][1] < 0 and "b.jsonl is better" in out["verdict"]
    assert len(load_rows(tmp_path / "b.jsonl")) == len(b)
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["evaluate", "--compare", str(tmp_path / "a.json"), str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vocable: error:") and "bad.json" in err and "\n" not in err


@pytest.mark.parametrize("argv, message", [
    (["evaluate"], "give a DATASET"),
    (["evaluate", "x", "--age-bands", "18,13"], "--age-bands"),
    (["evaluate", "x", "--bootstrap", "2"], "--bootstrap"),
    (["evaluate", "x", "--bootstrap", "1000000000000"], "--bootstrap: expected 10 to 10000"),  # memory, after decoding
    (["evaluate", "/nonexistent/data.jsonl", "--model", "/nonexistent/m.vocable"], "no such model"),
    (["evaluate", "x", "--seed", "-1"], "--seed"),  # was a traceback after the whole decoding pass
    (["evaluate", "x", "--clips", "-1"], "--clips"),
    (["evaluate", "x", "--compare", "a.json", "b.json"], "not both"),
    # destinations are checked before the model loads (the bogus model would be named otherwise)
    (["evaluate", "x", "--model", "/nonexistent/m.vocable", "--output", "/"], "--output /: a folder"),
    (["evaluate", "x", "--model", "/nonexistent/m.vocable", "--report", __file__], "is a file, not a folder"),
    (["evaluate", "x", "--model", "/nonexistent/m.vocable", "--output", f"{__file__}/rows.jsonl"], "not a folder"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vocable: error:") and message in err and "\n" not in err


def test_dataset_hash_follows_content_and_file_sizes_not_paths(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.wav").write_bytes(b"x" * 100)
    one = [Utterance("a", str(tmp_path / "one" / "a.wav"), "hello", speaker="s", meta={"gender": "f"})]
    two = [Utterance("a", str(tmp_path / "two" / "a.wav"), "hello", speaker="s", meta={"gender": "f"})]
    assert dataset_hash(one) == dataset_hash(two) and len(dataset_hash(one)) == 64
    assert dataset_hash(one) != dataset_hash([Utterance("a", one[0].audio, "hello there", speaker="s")])
    (tmp_path / "two" / "a.wav").write_bytes(b"x" * 101)
    assert dataset_hash(one) != dataset_hash(two)


def test_old_api_still_works():
    assert wer(["a b c d"], ["a x c"]) == 0.5
    from vocable.evaluate import cer
    # no reference words: no rate (it was 2.0, "perfect" 0.0 with nothing heard)
    assert np.isnan(wer([""], ["hello world"])) and np.isnan(wer([], [])) and np.isnan(cer(["..."], ["ab"]))


def test_a_flawless_group_still_gets_an_honest_upper_bound():
    rows = simulate(np.random.default_rng(9), {"a": 0.0, "b": 0.3}, speakers=5, spread=0.0)
    a = group_report(rows, "gender", FAST)["groups"][0]
    assert a["wer"] == 0 and a["wer_ci"][0] == 0
    assert a["wer_ci"][1] == pytest.approx(1 - 0.025 ** (1 / a["words"]), abs=1e-4)  # 0 errors in 400 words


def test_tiny_groups_are_listed_but_not_picked_for_the_gap():
    rows = simulate(np.random.default_rng(10), {"a": 0.2, "b": 0.2}, speakers=5)
    rows.append({**rows[0], "id": "lonely", "speaker": "z", "gender": "c", "word_errors": 8})  # one 8-word utterance
    report = group_report(rows, "gender", StatsOptions(resamples=200, permutations=300))
    assert report["groups"][2]["name"] == "c" and report["groups"][2]["small"]
    assert report["gap"]["left_out"] == ["c"] and "c" not in (report["gap"]["best"], report["gap"]["worst"])


def test_compare_with_three_speakers_claims_nothing():
    # B fixes errors for every speaker, but three speakers cannot show it generalises:
    # the exact sign-flip test's smallest two-sided p-value is 2/8
    a, b = paired_systems(np.random.default_rng(11), 0.15)
    keep = {f"all-{s}" for s in range(3)}
    a, b = [r for r in a if r["speaker"] in keep], [r for r in b if r["speaker"] in keep]
    c = compare_results(a, b, StatsOptions(resamples=500))
    assert c["wer_diff"] < 0 and c["p_value"] == pytest.approx(0.25) and not c["significant"]
    assert not c["verdict"].startswith("B is better")
    one = [r for r in a if r["speaker"] == "all-0"], [r for r in b if r["speaker"] == "all-0"]
    c = compare_results(*one, StatsOptions(resamples=500))  # one speaker: utterances are the unit, and it says so
    assert c["unit"] == "utterance" and c["verdict"].endswith("(on one speaker's utterances: it may not hold for "
                                                              "other speakers)")
    unlabelled = [[{k: v for k, v in r.items() if k != "speaker"} for r in rows] for rows in (a, b)]
    c = compare_results(*unlabelled, StatsOptions(resamples=500))  # no labels: no speakers claimed
    assert (c["unit"], c["speakers"]) == ("utterance", 0) and "no speaker labels" in c["verdict"]
    assert format_comparison(c).startswith(f"{len(a)} shared utterances, no speakers")


def test_scoring_uses_the_models_normaliser_not_always_english(tmp_path):
    """Scored with the English normaliser, a Spanish model's "ano" for "año" was right (accents folded),
    German "straße" was three words, and a Russian reference had no words at all (WER 400 %)."""
    from types import SimpleNamespace

    from tests.conftest import FSDD_FIXTURES
    from vocable.evaluate import char_errors, evaluate_dataset, run_evaluation, unscorable_references
    assert word_errors("tengo un año", "tengo un ano") == (0, 3)  # English: what an English model is scored on
    assert word_errors("tengo un año", "tengo un ano", "basic") == (1, 3)
    assert word_errors("die straße", "die stra e", "basic") == (2, 2)
    assert char_errors("río", "rio", "basic") == (1, 3)
    russian = [Utterance("ru", str(FSDD_FIXTURES / "0_theo_0.flac"), "привет мир", speaker="s")]
    assert unscorable_references(russian) == ["ru"] and unscorable_references(russian, "basic") == []
    spanish_model = SimpleNamespace(tokenizer=SimpleNamespace(normalizer="basic"))
    utterances = [Utterance(f"u{i}", str(FSDD_FIXTURES / f"{i}_theo_0.flac"), "el niño come", speaker="s")
                  for i in range(3)]
    summary = evaluate_dataset(spanish_model, utterances, show_progress=False, transcribe=lambda audio: "el nino come")
    assert summary.wer == pytest.approx(1 / 3)
    result = run_evaluation(spanish_model, utterances, show_progress=False, transcribe=lambda audio: "el nino come")
    assert result["normalizer"] == "basic" and result["errors"]["substitutions"][0]["ref"] == "niño"


def test_data_without_speaker_labels_resamples_utterances_and_says_so():
    """Unlabelled utterances each passed for a speaker: "resampling speakers", "only 5 speaker(s)"."""
    rows = [{**r, "speaker": ""} for r in simulate(np.random.default_rng(12), {"a": 0.2, "b": 0.3}, speakers=3)]
    report = group_report(rows, "gender", FAST)
    assert report["unit"] == "utterance" and "no speaker labels" in report["note"]
    assert [g["speakers"] for g in report["groups"]] == [0, 0]
    overall = analyse(rows, [], FAST)["overall"]
    assert overall["unit"] == "utterance" and "no speaker labels" in overall["note"]


def test_a_group_of_one_utterance_has_no_interval_unless_flawless():
    rows = simulate(np.random.default_rng(13), {"a": 0.2, "b": 0.3}, speakers=4)
    one = {**rows[0], "id": "x", "speaker": "lone", "gender": "c", "word_errors": 3, "words": 12}
    groups = {g["name"]: g for g in group_report(rows + [one], "gender", FAST)["groups"]}
    assert groups["c"]["wer"] == 0.25 and groups["c"]["wer_ci"] == [None, None]  # was [0.25, 0.25]
    long = {**one, "speaker": rows[0]["speaker"], "duration": 30.0}  # a speaker in two length groups
    by_length = group_report(rows + [long], "length", FAST)  # so all speakers are resampled together
    assert by_length["unit"] == "speaker" and by_length["groups"][-1]["wer_ci"] == [None, None]
    groups = {g["name"]: g for g in group_report(rows + [{**one, "word_errors": 0}], "gender", FAST)["groups"]}
    assert groups["c"]["wer_ci"][0] == 0 and groups["c"]["wer_ci"][1] == pytest.approx(1 - 0.025 ** (1 / 12), abs=1e-4)


def test_why_there_is_no_gap_is_said():
    rows = simulate(np.random.default_rng(14), {"a": 0.2}, speakers=4)
    rows.append({**rows[0], "id": "tiny", "speaker": "z", "gender": "b", "words": 3, "word_errors": 1})
    report = group_report(rows, "gender", FAST)
    assert "gap" not in report and report["no_gap"] == "no gap test: only a has 10 or more reference words"


def test_compare_refuses_a_manifest_and_repeated_ids(tmp_path, capsys):
    rows = simulate(np.random.default_rng(15), {"a": 0.2}, speakers=2, utterances=2)
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(json.dumps({"id": r["id"], "audio": "a.wav", "text": "hi"}) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"test.jsonl: row 1 \(a-0-0\) lacks 'ref', 'hyp', 'word_errors', 'words'"):
        load_rows(manifest)
    twice = tmp_path / "twice.jsonl"
    twice.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:1]))
    with pytest.raises(DataError, match="twice.jsonl: utterance id 'a-0-0' appears 2 times"):
        load_rows(twice)
    assert main(["evaluate", "--compare", str(manifest), str(twice)]) == 2  # was a KeyError traceback
    assert "lacks" in capsys.readouterr().err
    for key, value in (("word_errors", "x"), ("ref", None), ("words", -2)):  # were tracebacks, deep in the statistics
        edited = tmp_path / f"{key}.jsonl"
        edited.write_text("".join(json.dumps({**r, key: value} if i == 1 else r) + "\n" for i, r in enumerate(rows)))
        assert main(["evaluate", "--compare", str(edited), str(edited)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"vocable: error: {edited}: row 2 ({rows[1]['id']}): {key}: expected") and err.count("\n") == 1


def test_evaluate_checks_its_by_fields_before_decoding_and_keeps_error_metadata_apart(tmp_path, capsys):
    """--by with a field no utterance has was refused only after the whole decoding; a manifest field named
    "error" made a readable utterance count as unreadable."""
    from tests.conftest import FSDD_FIXTURES
    from vocable.data import read_dataset, write_manifest
    utterances = read_dataset(FSDD_FIXTURES)[:3]
    utterances[0].meta["error"] = "none"
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, utterances)
    import vocable.evaluate as evaluate_module
    decoded = []
    real = evaluate_module.run_evaluation
    evaluate_module.run_evaluation = lambda *a, **k: decoded.append(1) or real(*a, **k)
    try:
        assert main(["evaluate", str(manifest), "--model", "fsdd-digits", "--by", "accent"]) == 2
        assert "--by accent: no utterance has this field" in capsys.readouterr().err and not decoded
    finally:
        evaluate_module.run_evaluation = real
    assert main(["evaluate", str(manifest), "--model", "fsdd-digits", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["utterances"] == 3


def test_the_report_page_puts_the_worst_first_and_counts_and_marks_errors_as_analysed():
    from vocable.report import highlight, listening_rows, render_html

    def row(uid, speaker, ref, hyp, errors):
        return {"id": uid, "speaker": speaker, "ref": ref, "hyp": hyp, "word_errors": errors, "words": len(ref.split()),
                "char_errors": errors, "chars": len(ref), "duration": 1.0}
    rows = [row("good", "s1", "the cat sat", "the cat sat", 0), row("dropped", "s2", "the cat sat on", "the sat", 2),
            row("extra", "s3", "a dog", "a big dog", 1)]
    assert [r["id"] for r in listening_rows(rows, 2)] == ["dropped", "extra"]  # by utterance WER, worst first
    assert highlight("the cat sat", "the sat") == 'the <del title="missed">cat</del> sat'
    assert highlight("a dog", "a big dog") == 'a <ins title="inserted">big</ins> dog'
    result = {**analyse(rows, [], StatsOptions(resamples=100, permutations=0)), "utterances": 3, "failed": 0,
              "audio_hours": 0.001, "rtf": 0.01, "conditions": [], "dataset_sha256": "0" * 64,
              "vocable_version": "0", "rows": rows, "options": {"resamples": 100, "alpha": 0.05}}
    counts = result["errors"]["counts"]
    assert (counts["deletions"], counts["insertions"]) == (2, 1)
    page = render_html(result, {}, listening_rows(rows, 3), {})
    assert "2 deleted, 1 inserted" in page
    assert page.index("<td>dropped<br>") < page.index("<td>extra<br>") < page.index("<td>good<br>")


def test_each_noise_condition_adds_noise_at_its_own_snr():
    from vocable.evaluate import SweepOptions, sweep_conditions
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    utterance = Utterance("u", "", "", 1.0)
    for name, description, perturb in sweep_conditions(SweepOptions(snrs=[20.0, 0.0])):
        noise = perturb(tone, utterance) - tone
        measured = 10 * np.log10(np.mean(tone ** 2) / np.mean(noise ** 2))
        assert abs(measured - description["snr_db"]) < 0.5, (name, measured)
