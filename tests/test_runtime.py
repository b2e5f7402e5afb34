"""The torch-free runtime: numpy features equal the torch ones, exported models transcribe without
importing torch (checked in a subprocess where `import torch` fails), batching, threads, bad files."""

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

import vocable
from vocable import features, features_np
from vocable.audio import load_audio
from vocable.cli import main
from vocable.errors import ModelError
from vocable.export import ExportOptions, export_model
from vocable.models.common import Conv2dSubsampling
from vocable.runtime import load_onnx

from .conftest import FSDD_FIXTURES, ROOT
from .test_export import FIXTURE_AUDIO, fixture_audio, random_model

pytest.importorskip("onnxruntime")
NO_TORCH = "import sys; sys.modules['torch'] = None  # `import torch` raises ImportError from here on\n"


def espeak(tmp_path: Path, text: str) -> np.ndarray:
    """16 kHz synthetic speech: energy up to 8 kHz, unlike the 8 kHz FSDD clips."""
    if not any((Path(d) / "espeak-ng").exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("espeak-ng is not installed")
    wav = tmp_path / "espeak.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    return load_audio(wav)


@pytest.mark.parametrize("config", [features.FeatureConfig(), features.FeatureConfig(n_mels=40, pitch=True),
                                    features.FeatureConfig(kind="mfcc", n_mfcc=20)],
                         ids=["logmel80", "logmel40+pitch", "mfcc"])
def test_numpy_features_match_torch(tmp_path, config):
    clips = [load_audio(p) for p in FIXTURE_AUDIO[::3]] + [espeak(tmp_path, "the quick brown fox, 42 times")]
    for audio in clips:
        ours = features_np.compute_features(audio, config)
        theirs = features.compute_features(torch.from_numpy(audio), config).numpy()
        assert ours.shape == theirs.shape == (1, features.num_frames(len(audio)), config.dim)
        dim = config.n_mfcc if config.kind == "mfcc" else config.n_mels
        if config.kind == "logmel":
            # Linear power agrees to 0.1 % wherever it is above a millionth of the clip's peak; below that
            # both sides are float32 FFT rounding noise (8 kHz clips have nothing above 4 kHz).
            power, reference = np.exp(ours[..., :dim]), np.exp(theirs[..., :dim])
            np.testing.assert_allclose(power, reference, rtol=1e-3, atol=1e-6 * reference.max())
            loud = theirs[..., :dim] > np.log(1e-4 * reference.max())
            assert np.abs(ours[..., :dim] - theirs[..., :dim])[loud].max() < 1e-4
        else:  # cepstra mix all bands, so the noise floor of empty bands shows: compare to their spread
            assert np.abs(ours - theirs)[..., :dim].max() < 2e-3 * np.abs(theirs[..., :dim]).max()
        if config.pitch:
            np.testing.assert_allclose(ours[..., dim:], theirs[..., dim:], atol=1e-4)


def test_torch_free_constants_and_frame_arithmetic_match_the_torch_modules():
    for name in ("SAMPLE_RATE", "WIN_LENGTH", "HOP_LENGTH", "N_FFT", "LOG_FLOOR", "PITCH_MIN_HZ", "PITCH_MAX_HZ"):
        assert getattr(features_np, name) == getattr(features, name), name
    assert [(f.name, f.default) for f in fields(features_np.FeatureConfig)] == \
        [(f.name, f.default) for f in fields(features.FeatureConfig)]
    assert features_np.SUBSAMPLING == Conv2dSubsampling.FACTOR
    subsample = Conv2dSubsampling(80, 8)  # the shortest input the runtime pads to yields one output frame
    n = features_np.MIN_INPUT_FRAMES
    assert subsample(torch.zeros(1, n, 80), torch.tensor([n]))[0].shape[1] == 1
    with pytest.raises(RuntimeError):  # and one frame fewer is too short for the convolutions
        subsample.conv(torch.zeros(1, 1, n - 1, 80))
    assert [features_np.num_frames(n) for n in (1, 399, 400, 16000)] == \
        [features.num_frames(n) for n in (1, 399, 400, 16000)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("runtime")
    model = random_model(tmp, "m", arch="cnn-rnn", d_model=64, n_layers=2)
    out = tmp / "m.onnx"
    export_model(model, out, ExportOptions(audio=FIXTURE_AUDIO[:4]))
    return out


def run_without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", NO_TORCH + code, *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)


def test_exported_model_transcribes_without_torch(exported):
    clips = [str(p) for p in FIXTURE_AUDIO[:5]]
    code = ("import json, sys, vocable\n"
            "r = vocable.load(sys.argv[1], threads=1)\n"
            "print(json.dumps([r.transcribe(f).to_dict() for f in sys.argv[2:]]))\n"
            "print(json.dumps(sorted(m for m, v in sys.modules.items() if m.split('.')[0] == 'torch' and v)))\n")
    done = run_without_torch(code, str(exported), *clips)
    assert done.returncode == 0, done.stderr
    results, torch_modules = [json.loads(line) for line in done.stdout.splitlines()]
    assert torch_modules == []
    in_process = load_onnx(exported, threads=1)
    assert [r["text"] for r in results] == [in_process.transcribe(c).text for c in clips]
    assert all(r["duration"] > 0.1 for r in results)


def test_cli_transcribes_many_files_in_batches_without_torch(exported):
    clips = [str(p) for p in FIXTURE_AUDIO[:7]]
    cli = "import sys; from vocable.cli import main; sys.exit(main(sys.argv[1:]))"
    one = run_without_torch(cli, "transcribe", "--model", str(exported), "--threads", "1", "--format", "json", *clips)
    three = run_without_torch(cli, "transcribe", "--model", str(exported), "--batch-size", "3", "--format", "json",
                              *clips, str(FSDD_FIXTURES / "missing.wav"))
    assert one.returncode == 0, one.stderr
    assert three.returncode == 2 and "missing.wav: no such audio file" in three.stderr  # the others still printed
    rows_one = [json.loads(line) for line in one.stdout.splitlines()]
    rows_three = [json.loads(line) for line in three.stdout.splitlines()]
    assert [r["file"] for r in rows_one] == [r["file"] for r in rows_three] == clips
    assert [r["text"] for r in rows_one] == [r["text"] for r in rows_three]


def test_what_needs_torch_says_so_in_one_line_without_it():
    """The [runtime] install has no torch: a .vocable model, training or export is one line naming what to
    install, exit 2 (was a ModuleNotFoundError traceback); in Python a ModelError."""
    cli = "import sys; from vocable.cli import main; sys.exit(main(sys.argv[1:]))"
    clip = str(FIXTURE_AUDIO[0])
    for args in (["transcribe", clip], ["transcribe", "--model", "fsdd-digits", clip],
                 ["export", "fsdd-digits", "-o", "/tmp/vocable-never.onnx"], ["align", clip, "one"]):
        done = run_without_torch(cli, *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
        assert done.stderr.strip().splitlines()[-1].endswith("pip install 'vocable[torch]' (an exported .onnx model "
                                                             "transcribes without it: --model MODEL.onnx)"), done.stderr
    done = run_without_torch("import vocable\ntry:\n    vocable.load('fsdd-digits')\nexcept vocable.ModelError as e:\n"
                             "    print(e)\n")
    assert done.stdout.startswith("fsdd-digits: a .vocable model needs PyTorch"), done.stderr


def test_padded_batch_equals_one_at_a_time(exported):
    recognizer = load_onnx(exported)
    clips = fixture_audio(6)
    for alone, batched in zip([recognizer.log_probs(a) for a in clips], recognizer.log_probs_batch(clips)):
        assert alone.shape == batched.shape
        np.testing.assert_allclose(alone, batched, atol=1e-4)
    torch_model = vocable.load("fsdd-digits")
    for engine in (recognizer, torch_model):  # an empty batch is an empty answer, not a numpy error
        assert engine.log_probs_batch([]) == [] and engine.decode_audio(engine.decoder(), []) == []


def test_threads_reach_onnxruntime_and_numpys_blas(exported):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> set:
        return {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}

    with threadpoolctl.threadpool_limits(limits=None):  # restore the test process's own limits afterwards
        for threads in (1, 2):
            recognizer = load_onnx(exported, threads=threads)
            assert recognizer.engine.session.get_session_options().intra_op_num_threads == threads
            assert blas_threads() in ({threads}, set())  # set(): a numpy without a BLAS threadpool


def test_bad_model_files_give_one_line_errors(tmp_path, exported, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="junk.onnx: not a loadable ONNX model"):
        load_onnx(junk)
    import onnx
    foreign = tmp_path / "foreign.onnx"
    graph = onnx.load(str(exported))
    del graph.metadata_props[:]  # a valid ONNX file that vocable did not export
    onnx.save(graph, str(foreign))
    with pytest.raises(ModelError, match="not an ONNX model exported by vocable"):
        load_onnx(foreign)
    assert main(["transcribe", "--model", str(tmp_path / "nothing.onnx"), str(FIXTURE_AUDIO[0])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vocable: error:") and "no such ONNX model file" in err and err.count("\n") == 1


def test_streaming_model_streams_on_the_runtime_without_torch(tmp_path):
    """vocable.stream's incremental decoder on an exported unidirectional model, chunk by chunk, in a
    process without torch, gives the offline log-probs of the same audio."""
    model = random_model(tmp_path, "s", arch="cnn-rnn", d_model=64, n_layers=2, bidirectional=False)
    out = tmp_path / "s.onnx"
    export_model(model, out, ExportOptions(audio=FIXTURE_AUDIO[:3]))
    code = ("import sys, numpy as np, vocable\n"
            "from vocable.audio import load_audio\n"
            "from vocable.stream import IncrementalDecoder\n"
            "r = vocable.load(sys.argv[1], threads=1)\n"
            "audio = load_audio(sys.argv[2])\n"
            "decoder = IncrementalDecoder(r)\n"
            "for i in range(0, len(audio), 1600):  # 100 ms chunks\n"
            "    decoder.push(audio[i: i + 1600]); decoder.log_probs()\n"
            "streamed, offline = decoder.log_probs(), r.log_probs(audio)\n"
            "print(len(streamed), len(offline), float(np.abs(streamed - offline[: len(streamed)]).max()))\n")
    done = run_without_torch(code, str(out), str(FIXTURE_AUDIO[0]))
    assert done.returncode == 0, done.stderr
    streamed, offline, diff = done.stdout.split()
    assert int(offline) - 2 <= int(streamed) <= int(offline) and int(streamed) > 10
    assert float(diff) < 1e-4


@pytest.mark.parametrize("key, edit, fragment", [
    ("meta", lambda m: {**m, "lm_weight": "heavy"}, "meta.lm_weight: expected a finite number"),
    ("meta", lambda m: {**m, "beam_size": 0}, "meta.beam_size: expected a positive integer"),
    ("features", lambda f: {**f, "n_mels": -4}, "n_mels"),
    ("features", lambda f: {**f, "pitch": "yes"}, "pitch"),
    ("features", lambda f: {**f, "n_mels": 64}, "features: 64 per frame, the graph takes 40"),
    ("tokenizer", lambda t: [1, 2], "tokenizer: expected a table"),
    ("tokenizer", lambda t: {**t, "kind": "morse"}, "morse"),
    ("model_config", lambda c: "conformer", "model_config: expected a table"),
    ("tokenizer", lambda t: {**t, "normalizer": "klingon"}, "unknown text normalizer 'klingon'"),
    ("tokenizer", lambda t: {**t, "chars": t["chars"][:-2]}, "tokenizer: 15 tokens, the graph scores 17"),
    ("state", lambda s: [{"input": "state_x", "output": "next_state_x", "shape": [2, 64]}],
     "state: the graph has no tensor 'state_x'"),
])
def test_exported_metadata_is_checked_like_a_model_files_fields(tmp_path, exported, key, edit, fragment):
    """An exported file's metadata passes the checks a .vocable file's tables pass: one ModelError that
    names the file and the field, not a TypeError at transcription time."""
    import onnx
    graph = onnx.load(str(exported))
    entry = next(p for p in graph.metadata_props if p.key == key)
    entry.value = json.dumps(edit(json.loads(entry.value)))
    edited = tmp_path / "edited.onnx"
    onnx.save(graph, str(edited))
    with pytest.raises(ModelError) as caught:
        load_onnx(edited)
    message = str(caught.value)
    assert message.startswith(f"{edited}:") and fragment in message and "\n" not in message


def test_a_file_from_a_newer_vocable_is_refused_and_the_current_format_loads(tmp_path, exported):
    import onnx

    from vocable.runtime import ONNX_FORMAT_VERSION
    graph = onnx.load(str(exported))
    entry = next(p for p in graph.metadata_props if p.key == "format_version")
    assert entry.value == str(ONNX_FORMAT_VERSION)
    entry.value = str(ONNX_FORMAT_VERSION + 1)
    newer = tmp_path / "newer.onnx"
    onnx.save(graph, str(newer))
    with pytest.raises(ModelError, match="exported with a newer vocable"):
        load_onnx(newer)


def test_models_are_listed_without_torch_with_what_they_need(capsys):
    """`vocable models` imported torch to list file names: the runtime install got the one-line error."""
    cli = "import sys; from vocable.cli import main; sys.exit(main(sys.argv[1:]))"
    done = run_without_torch(cli, "models")
    assert done.returncode == 0, done.stderr
    assert "en-default  (default)" in done.stdout.splitlines() and "fsdd-digits" in done.stdout.splitlines()
    assert "needs PyTorch" in done.stderr and "vocable[torch]" in done.stderr
    from vocable.cli import main
    assert main(["models"]) == 0
    out = capsys.readouterr()
    assert out.out == done.stdout and out.err == ""


def test_an_onnx_model_without_onnxruntime_is_one_line_naming_the_extra(exported):
    """The [torch] install has no onnxruntime: an exported model was a ModuleNotFoundError traceback."""
    block = ("import sys\n"
             "class NoOnnxruntime:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'onnxruntime':\n"
             "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
             "sys.meta_path.insert(0, NoOnnxruntime())\n")
    cli = block + "from vocable.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", cli, "transcribe", "--model", str(exported), str(FIXTURE_AUDIO[0])],
                          capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"vocable: error: {exported}: an .onnx model needs onnxruntime, "
                                                f"which is not installed: pip install 'vocable[runtime]'"]
    api = block + "import vocable\ntry:\n    vocable.load(sys.argv[1])\nexcept vocable.VocableError as e:\n    print(e)\n"
    done = subprocess.run([sys.executable, "-c", api, str(exported)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=ROOT)
    assert "needs onnxruntime" in done.stdout, done.stderr
