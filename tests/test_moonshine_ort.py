"""benchmarks/moonshine_ort.py: Moonshine's own model files, run by the onnxruntime Python package."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vocable.errors import AudioError, ModelError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import moonshine_ort  # noqa: E402

from .test_compare_peers import peers  # noqa: E402

installed = pytest.mark.skipif(importlib.util.find_spec("moonshine_cpp") is None,
                               reason="moonshine-cpp not installed (CI installs it)")


def test_tokenizer_is_read_in_id_order_and_a_long_token_is_refused(tmp_path):
    path = tmp_path / "tokenizer.bin"
    path.write_bytes(b"\x05<unk>\x03<s>\x04</s>\x00" + b"\x04\xe2\x96\x81a")
    assert moonshine_ort.read_tokenizer(path) == [b"<unk>", b"<s>", b"</s>", b"", "\u2581a".encode()]
    path.write_bytes(b"\x03<s>\x80" + b"x" * 128)
    with pytest.raises(ModelError, match="tokenizer.bin: token 1"):
        moonshine_ort.read_tokenizer(path)


@installed
def test_moonshine_reads_its_own_test_clip(tmp_path):
    model = moonshine_ort.MoonshineOrt(threads=1)
    clip = moonshine_ort.model_dir().parent.parent / "test-data" / "beckett.wav"
    text = model.transcribe_wav(str(clip)).lower()
    assert "try again" in text and "fail better" in text  # "Ever tried. Ever failed. No matter. ..."
    wav8k = tmp_path / "8k.wav"
    sf.write(wav8k, np.zeros(8000), 8000)
    with pytest.raises(AudioError, match="8k.wav: 8000 Hz"):
        model.transcribe_wav(str(wav8k))


@installed
def test_compare_peers_plans_the_onnxruntime_moonshine_row():
    runs = peers.plan({}, [1], ["moonshine-ort"], ["1"])
    assert [(r["label"], r["threads"], r["cores"]) for r in runs] == [("moonshine-ort 1 core", 1, 1)]
    assert peers.peer_model_mb("moonshine-ort") > 50  # encoder + decoder + tokenizer of base-en
