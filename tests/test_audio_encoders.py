"""The pretrained-model audio encoders (wav2vec2 by any compatible hub id, HuBERT, Whisper): they load a folder
written by transformers' save_pretrained with its weights, give the frames asked for at 25 and 30 fps, and long
audio encoded in windows matches one pass (exactly where the encoder looks only at nearby audio or windows itself).
"""

from __future__ import annotations

import pytest
import torch

from emo_lightning import registry
from emo_lightning.components.audio_encoder.wav2vec2 import TINY_WAV2VEC2
from emo_lightning.components.audio_encoder.whisper import TINY_WHISPER
from emo_lightning.model.audio_windows import encode_audio

# name -> (transformers model class, config class, tiny config); xlsr-53 and chinese-wav2vec2 differ from base in
# their layer norm placement, which the config carries
SOURCES = {
    "wav2vec2": ("Wav2Vec2Model", "Wav2Vec2Config", TINY_WAV2VEC2),
    "wav2vec2-xlsr": ("Wav2Vec2Model", "Wav2Vec2Config",
                      {**TINY_WAV2VEC2, "do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
    "hubert": ("HubertModel", "HubertConfig", TINY_WAV2VEC2),
    "whisper": ("WhisperModel", "WhisperConfig", TINY_WHISPER),
}
ENCODERS = ("mel", "wav2vec2", "hubert", "whisper")


def tiny(name: str, **overrides) -> registry.Entry:
    torch.manual_seed(0)
    entry = registry.entry("audio_encoder", name)
    return registry.build("audio_encoder", name, **{**entry.tiny_config(), "output_dim": 16, **overrides}).eval()


@pytest.mark.parametrize("source", SOURCES)
def test_loads_a_save_pretrained_folder_with_its_weights_frozen(source, tmp_path):
    import transformers

    model_class, config_class, config = SOURCES[source]
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**config))
    model.save_pretrained(tmp_path)
    encoder = registry.build("audio_encoder", source.split("-")[0], pretrained=str(tmp_path), output_dim=16,
                             layers=[0, -1])
    expected = (model.get_encoder() if source == "whisper" else model).state_dict()
    loaded = encoder.model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert not any(p.requires_grad for p in encoder.model.parameters())  # frozen by default
    assert all(p.requires_grad for p in encoder.proj.parameters())  # the head trains
    assert encoder.pretrained_submodules == ("model",)  # left out of checkpoints, reloaded from the folder


def test_a_folder_of_another_architecture_is_a_clear_error(tmp_path):
    from transformers import HubertConfig, HubertModel

    HubertModel(HubertConfig(**TINY_WAV2VEC2)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 'hubert' model, not 'wav2vec2'"):
        registry.build("audio_encoder", "wav2vec2", pretrained=str(tmp_path), output_dim=16)


def test_layers_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match=r"layers \[5\] out of range .* 3 hidden states"):
        tiny("hubert", layers=[5])


@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("fps", [25, 30])
def test_gives_the_frames_asked_for(name, fps):
    encoder = tiny(name)
    assert encoder.sample_rate == 16000 and encoder.feature_rate in (50.0, 100.0)
    seconds = 3.4  # longer than the tiny Whisper's 3-s window
    with torch.no_grad():
        tokens = encoder(torch.randn(2, int(seconds * encoder.sample_rate)) * 0.1, round(seconds * fps))
    assert tokens.shape == (2, round(seconds * fps), 2 * encoder.window + 1, 16)
    assert torch.isfinite(tokens).all()


@pytest.mark.parametrize("name", ["mel", "whisper"])
@pytest.mark.parametrize("fps", [25, 30])
def test_windowed_encoding_of_40_s_equals_one_pass(name, fps):
    """mel looks only at nearby audio; Whisper windows itself, and the cuts fall on its windows."""
    encoder = tiny(name)
    waveform = torch.randn(1, 40 * encoder.sample_rate) * 0.1
    with torch.no_grad():
        whole = encoder(waveform, 40 * fps)
        windowed = encode_audio(encoder, waveform, 40 * fps)
        if name == "whisper":  # its frozen part alone, as `emo preprocess cache_audio=…` stores it
            torch.testing.assert_close(encode_audio(encoder, waveform, 40 * fps, features=True),
                                       encoder.features(waveform, 40 * fps), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(windowed, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["wav2vec2", "hubert"])
def test_windowed_encoding_of_global_attention_models_deviates_only_slightly(name):
    """wav2vec2 and HuBERT attend over the whole input, so 10-s windows with 2 s of context are not one pass; the
    deviation (docs/guides/architecture.md, audio encoders) stays small next to the tokens' unit scale."""
    encoder = tiny(name)
    waveform = torch.randn(1, 40 * encoder.sample_rate) * 0.1
    with torch.no_grad():
        whole = encoder(waveform, 1000)
        windowed = encode_audio(encoder, waveform, 1000)
    deviation = (windowed - whole).abs().max().item()
    assert 0 < deviation < 0.25 * whole.abs().mean().item()


def test_an_encoder_with_tokens_of_its_own_trains_in_emo():
    """Hallo's encoder emits ``context_tokens`` tokens per frame, not window slots: EMO adds no slot positions,
    the backbone attends to those tokens, and its projection gets gradients."""
    from conftest import tiny_batch, tiny_module

    module = tiny_module("model/audio_encoder=hallo_wav2vec2_tiny", "model.audio_encoder.window=2")
    encoder = module.model.audio_encoder
    assert module.model.audio_positions is None and encoder.tokens_per_frame == 4 != 2 * encoder.window + 1
    with torch.no_grad():  # give the zero-initialised audio-attention outputs some weight, so gradients reach it
        for p in module.model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    module.training_step(tiny_batch(stage=3), 0).backward()
    assert encoder.proj.proj3.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.model.parameters())
