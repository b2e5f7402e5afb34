"""ONNX export: every architecture reproduces torch on real speech, dynamic batch and length, streaming
state, int8, self-contained metadata, and refusal to write a model that does not match."""

import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from vocable import export
from vocable.audio import load_audio
from vocable.cli import main
from vocable.features import FeatureConfig, compute_features
from vocable.bundled import resolve_model_path
from vocable.modelfile import LoadedModel, load_model_file, save_model
from vocable.models import ModelConfig, build_model
from vocable.runtime import load_onnx, read_onnx_metadata
from vocable.tokenizer import train_tokenizer
from vocable.transcribe import load

from .conftest import FSDD_FIXTURES

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
FEATURES = FeatureConfig(n_mels=40)
FIXTURE_AUDIO = sorted(FSDD_FIXTURES.glob("*.flac"))  # 30 real digits, 0.2-0.9 s


def fixture_audio(n: int = 6) -> list[np.ndarray]:
    """Utterances of different lengths (jackson's takes are ~3x nicolas')."""
    return [load_audio(p) for p in FIXTURE_AUDIO[:n]]


def random_model(tmp_path: Path, name: str, features: FeatureConfig = FEATURES, **config) -> Path:
    """An untrained model normalised with real feature statistics (so activations are realistic)."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer(["zero one two three four five six seven eight nine"], "char")
    model_config = ModelConfig(**config)
    model = build_model(model_config, features.dim, tokenizer.vocab_size).eval()
    if model_config.self_condition:  # the feedback layer starts at zero: give it weights the export must carry
        torch.nn.init.normal_(model.condition.weight, std=0.5)
    feats = torch.cat([compute_features(torch.from_numpy(a), features)[0] for a in fixture_audio(10)])
    model.norm.set_stats(feats.mean(0), feats.std(0))
    path = tmp_path / f"{name}.vocable"
    save_model(path, model, model_config, features, tokenizer, {"name": name})
    return path


@pytest.fixture(scope="module")
def bundled() -> Path:
    return resolve_model_path("fsdd-digits")


@pytest.mark.parametrize("int8", [False, True])
def test_bundled_model_exports_and_transcribes_like_torch(bundled, tmp_path, int8):
    out = tmp_path / "digits.onnx"
    comparison = export.export_model(bundled, out, export.ExportOptions(int8=int8, audio=FIXTURE_AUDIO[:8]))
    assert out.is_file() and comparison.utterances == 8
    assert comparison.max_prob_diff < (0.05 if int8 else 1e-4)
    assert comparison.batch_max_prob_diff < (0.05 if int8 else 1e-4)
    torch_texts = [r.text for r in load(bundled).transcribe_batch(fixture_audio(30))]
    onnx_texts = [load_onnx(out, threads=1).transcribe(a).text for a in fixture_audio(30)]
    agree = np.mean([a == b for a, b in zip(torch_texts, onnx_texts)])
    assert agree >= (0.9 if int8 else 1.0)
    # self-contained: configs, tokenizer and meta travel in the file
    loaded = load_model_file(bundled)
    meta = read_onnx_metadata(out)
    assert meta["model_config"] == asdict(loaded.model_config)
    assert meta["features"] == asdict(loaded.features)
    assert meta["tokenizer"] == loaded.tokenizer.to_dict()
    assert meta["meta"]["precision"] == ("int8" if int8 else "fp32")
    graph = onnx.load(str(out)).graph
    ops = {node.op_type for node in graph.node}
    assert ("MatMulInteger" in ops) == int8 and "ConvInteger" not in ops  # int8 MatMuls; convolutions stay fp32
    if int8:  # activations get one scale per tensor: a batch's other utterances must not change one's output
        runtime = load_onnx(out, threads=1)
        clips = fixture_audio(6)
        for alone, batched in zip([runtime.log_probs(a) for a in clips], runtime.log_probs_batch(clips)):
            np.testing.assert_array_equal(alone, batched)
    if int8:  # 7-bit weights, which do not saturate the int16 products of CPUs without VNNI
        weights = [onnx.numpy_helper.to_array(t) for t in graph.initializer
                   if t.data_type == onnx.TensorProto.INT8 and t.dims]
        assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64


@pytest.mark.parametrize("config", [dict(arch="cnn-rnn", d_model=64, n_layers=2),
                                    dict(arch="cnn-rnn", d_model=64, n_layers=2, rnn_type="lstm")],
                         ids=["bigru", "bilstm"])
def test_cnn_rnn_keeps_dynamic_batch_and_length(tmp_path, config):
    path = random_model(tmp_path, "m", **config)
    comparison = export.export_model(path, tmp_path / "m.onnx", export.ExportOptions(audio=FIXTURE_AUDIO[:6]))
    # six lengths one at a time, then one zero-padded batch of six (packed sequences in ONNX)
    assert comparison.max_prob_diff < 1e-4 and comparison.batch_max_prob_diff < 1e-4


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_streaming_cnn_rnn_carries_state_like_torch(tmp_path, rnn_type):
    path = random_model(tmp_path, "s", d_model=64, n_layers=2, arch="cnn-rnn", bidirectional=False,
                        rnn_type=rnn_type)
    out = tmp_path / "s.onnx"
    export.export_model(path, out, export.ExportOptions(audio=FIXTURE_AUDIO[:4]))
    recognizer = load_onnx(out)
    engine = recognizer.engine
    assert engine.streaming and recognizer.loaded.model_config.streaming
    assert [i.name for i in engine.session.get_inputs()][2:] == (["state_h", "state_c"] if rnn_type == "lstm"
                                                                 else ["state_h"])
    model = load_model_file(path).model
    feats = compute_features(torch.from_numpy(fixture_audio(1)[0]), FEATURES)  # (1, T, F)
    # chunks of 4k+3 frames advance the subsampling by k output frames and keep its 3-frame context
    torch_state, onnx_state, torch_out, onnx_out = None, None, [], []
    for start in range(0, feats.shape[1] - 7, 16):
        chunk = feats[:, start: start + 19]
        with torch.no_grad():
            logits, torch_state = model.forward_chunk(chunk, torch_state)
        torch_out.append(torch.log_softmax(logits, -1)[0].numpy())
        log_probs, onnx_state = engine.forward_chunk(chunk.numpy(), onnx_state)
        onnx_out.append(log_probs[0])
    np.testing.assert_allclose(np.concatenate(onnx_out), np.concatenate(torch_out), atol=1e-4)
    # ... and with zero state the same graph is the offline model
    whole, _, _ = engine.forward(feats.numpy(), np.array([feats.shape[1]]))
    assert np.abs(np.concatenate(onnx_out) - whole[0, : sum(len(o) for o in onnx_out)]).max() < 1e-4


def test_attention_models_export_with_dynamic_length(tmp_path):
    """transformer and conformer (chunked attention, causal conv: the streaming kind; self-conditioned) via the
    dynamo exporter."""
    for name, arch, extra in [("transformer", "transformer", dict(n_layers=1)),
                              ("conformer", "conformer", dict(n_layers=1, attention_chunk=4, causal_conv=True)),
                              ("conditioned", "conformer", dict(n_layers=2, self_condition=1))]:
        path = random_model(tmp_path, name, arch=arch, d_model=32, n_heads=2, **extra)
        out = tmp_path / f"{name}.onnx"
        comparison = export.export_model(path, out, export.ExportOptions(audio=FIXTURE_AUDIO[:6]))
        assert comparison.max_prob_diff < 1e-4 and comparison.batch_max_prob_diff < 1e-4, arch
        lengths = {len(load_onnx(out).log_probs(a)) for a in fixture_audio(6)}
        assert len(lengths) >= 3  # several lengths through one graph: nothing was frozen at trace time


def export_one_weight_off(monkeypatch, offset: float = 3.0) -> None:
    """Make export write a graph with one output bias moved by `offset`, as an exporter bug would."""
    real_export_graph = export.export_graph

    def broken_exporter(loaded: LoadedModel, graph: Path) -> None:
        with torch.no_grad():
            loaded.model.head.bias[1] += offset
        real_export_graph(loaded, graph)
        with torch.no_grad():
            loaded.model.head.bias[1] -= offset

    monkeypatch.setattr(export, "export_graph", broken_exporter)


def test_export_refuses_a_graph_that_does_not_match(tmp_path, monkeypatch, capsys):
    path = random_model(tmp_path, "m", arch="cnn-rnn", d_model=64, n_layers=1)
    export_one_weight_off(monkeypatch)
    out = tmp_path / "new" / "folder" / "bad.onnx"
    with pytest.raises(export.ExportError, match=r"not written.*posteriors differ by up to \d\.\d\de[-+]\d\d"):
        export.export_model(path, out, export.ExportOptions(audio=FIXTURE_AUDIO[:3]))
    assert not (tmp_path / "new").exists()  # no folders made for a refused model
    out = tmp_path / "bad.onnx"
    with pytest.raises(export.ExportError, match="not written.*posteriors differ"):
        export.export_model(path, out, export.ExportOptions(audio=FIXTURE_AUDIO[:3]))
    assert not out.exists() and not list(tmp_path.glob("bad.onnx*"))
    code = main(["export", str(path), "-o", str(out), "--audio", *map(str, FIXTURE_AUDIO[:3])])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "vocable: error:" in err and "3 utterances of your audio" in err and "--check DATASET" in err


def test_cli_export_with_check_prints_wer_and_speed_of_both(tmp_path, capsys):
    path = random_model(tmp_path, "m", arch="cnn-rnn", d_model=64, n_layers=1)
    out = tmp_path / "m.onnx"
    assert main(["export", str(path), "-o", str(out), "--int8", "--check", str(FSDD_FIXTURES), "--limit", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {out}")
    assert lines[2].split()[:4] == ["model", "WER", "RTF", "MB"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:] if line.strip()}
    assert set(rows) >= {"m.vocable", "m.onnx"}
    assert all(r[0].endswith("%") and float(r[1]) > 0 for r in rows.values())  # WER and a measured RTF
    assert main(["export", str(path), "-o", str(tmp_path / "m.bin")]) == 2  # must be .onnx
    capsys.readouterr()
    assert main(["export", str(out), "-o", str(tmp_path / "again.onnx")]) == 2  # an export is no model file
    assert "an ONNX export, which transcribes but is not a vocable model file" in capsys.readouterr().err
    if shutil.which("espeak-ng"):  # checked on espeak-ng's speech: its pipe's WAV header read as "cut short"
        capsys.readouterr()
        assert main(["export", str(path), "-o", str(tmp_path / "plain.onnx")]) == 0
        assert "warning" not in capsys.readouterr().err


def test_an_export_fails_on_a_posterior_gap_anywhere_and_int8_on_frames_that_disagree():
    fp32, int8 = export.ExportOptions(), export.ExportOptions(int8=True)
    assert export.Comparison(3, 1e-6, 1.0, 1.0, 1e-6).failures(fp32) == []
    batch_only = export.Comparison(3, 1e-6, 1.0, 1.0, 0.5).failures(fp32)  # the padded batch differs
    assert len(batch_only) == 1 and "posteriors differ by up to 5.00e-01" in batch_only[0]
    disagreeing = export.Comparison(3, 0.01, 0.5, 1.0, 0.01)  # within int8's tolerance, not fp32's
    assert disagreeing.failures(int8) == ["best token agrees on 50.0% of frames (need 95%)"]
