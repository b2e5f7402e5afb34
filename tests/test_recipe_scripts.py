"""recipes/en_default helper scripts: pack.py (Opus transport copies) and average.py (finish a cut run)."""

import subprocess
import sys
from pathlib import Path

import torch

from vocable.config import load_config
from vocable.data import read_dataset
from vocable.modelfile import load_model_file
from vocable.train import train

from .conftest import FSDD_FIXTURES
from .test_train import write_config

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "en_default"


def run(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPE / script), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_pack_writes_opus_copies_with_the_same_utterances(tmp_path):
    result = run("pack.py", tmp_path / "pack", FSDD_FIXTURES, "--jobs", "1")
    assert result.returncode == 0, result.stderr
    original = {u.id: u for u in read_dataset(FSDD_FIXTURES)}
    packed = read_dataset(tmp_path / "pack" / "fsdd.jsonl")
    assert sorted(u.id for u in packed) == sorted(original)
    for u in packed:
        assert u.audio.endswith(".opus") and Path(u.audio).is_file()
        assert u.text == original[u.id].text and u.speaker == original[u.id].speaker
    from vocable.audio import audio_info
    duration, rate = audio_info(packed[0].audio)
    assert rate == 16000 and abs(duration - audio_info(original[packed[0].id].audio)[0]) < 0.05
    assert run("pack.py", tmp_path / "again", tmp_path / "missing.jsonl").returncode != 0


def test_average_rebuilds_the_final_model_of_a_run(tmp_path):
    config_path = write_config(tmp_path, epochs=2, max_steps=0)
    config_path.write_text(config_path.read_text().replace('dev = []', f'dev = ["{FSDD_FIXTURES}"]')
                           .replace("average_last = 1", "average_last = 2") + "\n")
    config = load_config(config_path, {"data.allow_overlap": True})
    final = load_model_file(train(config, show_progress=False))
    result = run("average.py", tmp_path / "out", tmp_path / "again.vocable", "--last", "2")
    assert result.returncode == 0, result.stderr
    again = load_model_file(tmp_path / "again.vocable")
    expected = final.model.state_dict()
    # average.py stores fp16 (as bundled models are); the run above kept fp32
    assert all(torch.allclose(expected[k].float(), v.float(), rtol=1e-3, atol=1e-4)
               for k, v in again.model.state_dict().items())
    assert again.meta["averaged_epochs"] == 2
