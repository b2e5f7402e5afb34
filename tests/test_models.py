from dataclasses import replace

import pytest
import torch

from vocable.errors import ConfigError
from vocable.models import ModelConfig, build_model, count_parameters
from vocable.models.common import attention_mask, chunk_attention_mask, padding_mask, subsampled_lengths
from vocable.models.conformer import deepened

ARCHS = ["cnn-rnn", "transformer", "conformer"]


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_lengths_and_padding_invariance(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, d_model=64, n_layers=2, n_heads=4), 80, 20).eval()
    x = torch.randn(2, 120, 80)
    logits, lengths = model(x, torch.tensor([120, 80]))
    assert logits.shape == (2, 29, 20) and lengths.tolist() == [29, 19]
    # The shorter utterance alone gives the same output as inside a padded batch.
    alone, _ = model(x[1:, :80], torch.tensor([80]))
    assert torch.allclose(alone[0], logits[1, :19], atol=1e-4)


def test_subsampled_lengths_match_convolutions():
    model = build_model(ModelConfig(arch="cnn-rnn", d_model=32, n_layers=1), 80, 5)
    for frames in (7, 8, 9, 50, 101):
        out, lengths = model.subsample(torch.randn(1, frames, 80), torch.tensor([frames]))
        assert out.shape[1] == int(lengths[0]) == int(subsampled_lengths(torch.tensor([frames]))[0])


def test_sizes_span_one_to_thirty_million():
    small = build_model(ModelConfig(arch="cnn-rnn", d_model=256, n_layers=2), 80, 30)
    large = build_model(ModelConfig(arch="conformer", d_model=320, n_layers=12, n_heads=4), 80, 30)
    assert 0.8e6 < count_parameters(small) < 2e6
    assert 25e6 < count_parameters(large) < 35e6


def test_chunked_attention_sees_no_future():
    mask = chunk_attention_mask(6, chunk=2, left_chunks=-1)
    assert mask[0].tolist() == [True, True, False, False, False, False]
    assert mask[5].tolist() == [True] * 6
    cfg = ModelConfig(arch="conformer", d_model=32, n_layers=2, n_heads=2, attention_chunk=2, causal_conv=True)
    assert cfg.streaming
    model = build_model(cfg, 80, 10).eval()
    x = torch.randn(1, 200, 80)
    full, _ = model(x, torch.tensor([200]))
    changed = x.clone()
    changed[:, 150:] = torch.randn(1, 50, 80)  # perturb the future only
    out, _ = model(changed, torch.tensor([200]))
    # output frames whose chunk ends before frame ~36 (150 input frames / 4 - conv context) are unchanged
    assert torch.allclose(full[0, :30], out[0, :30], atol=1e-5)
    assert not torch.allclose(full[0, -5:], out[0, -5:], atol=1e-5)


def test_unidirectional_cnn_rnn_streams_chunk_by_chunk():
    model = build_model(ModelConfig(arch="cnn-rnn", d_model=32, n_layers=2, bidirectional=False), 80, 10).eval()
    assert ModelConfig(arch="cnn-rnn", bidirectional=False).streaming
    x = torch.randn(1, 64, 80)
    full, _ = model(x, torch.tensor([64]))
    first, state = model.forward_chunk(x[:, :35], None)  # 35 frames → 8 outputs using frames 0..34
    second, _ = model.forward_chunk(x[:, 32:], state)  # overlap of 3 frames keeps the conv stride aligned
    assert torch.allclose(torch.cat([first, second], dim=1), full[:, : first.shape[1] + second.shape[1]], atol=1e-5)


def test_bad_model_config():
    with pytest.raises(ConfigError, match="arch"):
        ModelConfig(arch="lstm-transducer").validate()
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(arch="conformer", d_model=100, n_heads=3).validate()
    with pytest.raises(ConfigError, match="self_condition"):
        ModelConfig(arch="conformer", n_layers=6, self_condition=6).validate()  # after the last block: no feedback
    with pytest.raises(ConfigError, match="self_condition"):
        ModelConfig(arch="transformer", n_layers=6, self_condition=3).validate()


def test_deepened_conformer_starts_as_the_small_one_and_trains_its_new_blocks():
    torch.manual_seed(0)
    small = build_model(ModelConfig(arch="conformer", d_model=64, n_layers=3, n_heads=4), 80, 20).eval()
    for block in small.blocks:  # trained LayerNorms are not the identity: the copy must carry them over
        torch.nn.init.normal_(block.final_norm.weight, 1.0, 0.3)
        torch.nn.init.normal_(block.final_norm.bias, 0.0, 0.3)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    big = deepened(small).eval()
    x, lengths = torch.randn(2, 120, 80), torch.tensor([120, 90])
    with torch.no_grad():
        expected, _ = small(x, lengths)
        got, _ = big(x, lengths)
    assert len(big.blocks) == 6 and count_parameters(big) > 1.9 * count_parameters(small.blocks)
    assert torch.allclose(got, expected, atol=1e-3)
    assert all(torch.equal(v, small.state_dict()[k]) for k, v in before.items())  # the small model is untouched
    big.train()
    logits, _ = big(x, lengths)
    logits.square().mean().backward()
    twin = big.blocks[1]
    assert twin.attn.out.weight.grad.abs().sum() > 0 and twin.ff2[-2].weight.grad.abs().sum() > 0


def test_self_conditioned_conformer_starts_unchanged_and_feeds_its_prediction_back():
    torch.manual_seed(0)
    config = ModelConfig(arch="conformer", d_model=64, n_layers=3, n_heads=4)
    plain = build_model(config, 80, 20).eval()
    conditioned = build_model(replace(config, self_condition=1), 80, 20).eval()
    missing, unexpected = conditioned.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["condition.bias", "condition.weight"] and not unexpected
    x, lengths = torch.randn(2, 120, 80), torch.tensor([120, 90])
    with torch.no_grad():
        expected, _ = plain(x, lengths)
        logits, out_lengths, intermediate = conditioned(x, lengths, intermediate=True)
        mask, pad = attention_mask(out_lengths, logits.shape[1]), padding_mask(out_lengths, logits.shape[1])
        after_block_1 = plain.blocks[0](plain.subsample(plain.norm(x), lengths)[0], mask, pad)
    assert torch.allclose(logits, expected, atol=1e-5)  # the feedback layer starts at zero
    assert torch.allclose(intermediate, plain.head(after_block_1), atol=1e-5)  # the shared output layer, block 1
    torch.nn.init.normal_(conditioned.condition.weight)
    with torch.no_grad():
        fed_back, _ = conditioned(x, lengths)
    assert not torch.allclose(fed_back, expected, atol=1e-2)
    # Doubling the depth keeps the prediction after the same computation (block 1 and its twin).
    with torch.no_grad():
        assert torch.allclose(deepened(conditioned).eval()(x, lengths)[0], fed_back, atol=1e-3)
    assert build_model(config, 80, 20)(x, lengths, intermediate=True)[2] is None
