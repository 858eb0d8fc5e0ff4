"""Memory options: gradient checkpointing, bf16-mixed training on the CPU, audio features cached by preprocessing."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import tiny_batch, tiny_module

from emo_lightning.components.backbone.sd_unet.attention import CaptureReferenceProcessor
from emo_lightning.components.backbone.sd_unet.state import UNetState
from emo_lightning.data import SyntheticDataModule

STAGES = {1: ("model.stage=1", "model.trainable=null"), 3: ("model.stage=3", "model.trainable=null")}


def _randomise_zero_parameters(module) -> None:
    """Zero-initialised output layers (identity at start) would give every layer before them a zero gradient."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)


def _gradients(module, batch: dict, checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.model.set_gradient_checkpointing(checkpointing)
    module.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss = module.diffusion_loss(batch, training=True)
    loss.backward()
    # the ReferenceNet's last up block feeds nothing the backbone reads: no gradient there, with or without
    return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def _count_calls(modules) -> list[int]:
    counts = [0]

    def count(*_):
        counts[0] += 1

    for m in modules:
        m.register_forward_pre_hook(count)
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 3])
def test_gradient_checkpointing_leaves_gradients_unchanged(stage, monkeypatch):
    torch.manual_seed(0)
    module = tiny_module(*STAGES[stage])
    _randomise_zero_parameters(module)
    batch = tiny_batch(stage=stage, batch_size=1, num_frames=4)
    model = module.model.backbone
    blocks = _count_calls([model.unet.down_blocks[0].attentions[0].transformer_blocks[0],
                           *model.temporal_blocks.values()])
    captures = []
    original = CaptureReferenceProcessor.__call__

    def capture_spy(self, attn, hidden_states, *args, **kwargs):
        captures.append(self.state.capture)
        return original(self, attn, hidden_states, *args, **kwargs)

    monkeypatch.setattr(CaptureReferenceProcessor, "__call__", capture_spy)

    loss, plain = _gradients(module, batch, checkpointing=False)
    plain_calls, plain_captures = blocks[0], list(captures)
    blocks[0], captures[:] = 0, []
    loss_ckpt, checkpointed = _gradients(module, batch, checkpointing=True)

    assert torch.equal(loss, loss_ckpt)
    assert plain.keys() == checkpointed.keys() and len(plain) > 0
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert sum(g.abs().sum() for g in plain.values()) > 0
    # recomputation really happened (blocks ran again in the backward pass) and replayed the state without capturing
    assert blocks[0] > plain_calls
    assert captures.count("reference") == plain_captures.count("reference") > 0
    if stage == 1:  # the ReferenceNet trains: its blocks are recomputed too (in stage 3 nothing flows back to it)
        assert captures.count(None) > plain_captures.count(None) == 0
    state = {k: v for k, v in vars(model.state).items() if k not in ("captured", "gradient_checkpointing")}
    assert state == {k: v for k, v in vars(UNetState()).items() if k not in ("captured", "gradient_checkpointing")}


def test_gradient_checkpointing_from_the_config_and_in_a_deep_copy():
    """`model.gradient_checkpointing=true` switches it on everywhere; a deep copy (EMA) checkpoints with its state."""
    import copy

    module = tiny_module("model.gradient_checkpointing=true")
    model = module.model.backbone
    assert model.state.gradient_checkpointing
    assert model.unet.is_gradient_checkpointing and model.reference_net.is_gradient_checkpointing
    twin = copy.deepcopy(module.model).backbone
    funcs = [m._gradient_checkpointing_func for m in twin.unet.modules() if hasattr(m, "gradient_checkpointing")]
    assert funcs and all(f.state is twin.state for f in funcs)


def test_bf16_mixed_trains_on_the_cpu(tmp_path):
    """`trainer.precision=bf16-mixed` on the CPU: the UNet runs in bf16, the loss stays finite, weights change."""
    module = tiny_module("model/audio_encoder=wav2vec2_tiny", "model.gradient_checkpointing=true")
    dtypes = []
    module.model.backbone.unet.register_forward_hook(lambda m, a, out: dtypes.append(out.sample.dtype))
    before = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    trainer = pl.Trainer(max_steps=2, precision="bf16-mixed", accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, gradient_clip_val=1.0, default_root_dir=tmp_path)
    trainer.fit(module, SyntheticDataModule(stage=3, batch_size=1, num_frames=4, train_samples=2, val_samples=1))
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in module.parameters())  # master weights stay fp32
    assert any(not torch.equal(before[n], p) for n, p in module.named_parameters() if n in before)


def _wav2vec2_calls(module) -> list[int]:
    return _count_calls([module.model.audio_encoder.model])


def test_cached_audio_features_give_the_same_loss_as_the_waveform():
    """The frozen part's features in the batch replace the waveform: same loss, and the frozen wav2vec2 never runs."""
    module = tiny_module("model/audio_encoder=wav2vec2_tiny", "model.audio_encoder.freeze=true")
    encoder = module.model.audio_encoder
    batch = tiny_batch(stage=3, batch_size=1, num_frames=4)
    with torch.no_grad():
        features = encoder.features(batch["audio"], 4)
    assert features.shape == (1, 4, encoder.feature_dim)
    torch.manual_seed(0)
    from_waveform = module.diffusion_loss(batch, training=True)
    calls = _wav2vec2_calls(module)
    torch.manual_seed(0)
    from_features = module.diffusion_loss({**batch, "audio_features": features}, training=True)
    assert calls == [0]
    torch.testing.assert_close(from_features, from_waveform, rtol=1e-6, atol=1e-7)

    mel = tiny_module()  # the mel encoder has no frozen part: cached features cannot stand in for it
    with pytest.raises(ValueError, match="no frozen feature part"):
        mel.diffusion_loss({**batch, "audio_features": features}, training=True)


@pytest.fixture(scope="module")
def cached_audio(sample, tmp_path_factory) -> dict:
    """2 s of the HDTF clip preprocessed with `cache_audio` of a wav2vec2 saved in a local folder (as a user's)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emo_lightning.components.audio_encoder.wav2vec2 import TINY_WAV2VEC2
    from emo_lightning.media import Mp4Writer, load_audio, read_video
    from emo_lightning.preprocess import Settings
    from emo_lightning.preprocess.runner import run

    source, root = sample("hdtf_clip.mp4"), tmp_path_factory.mktemp("audio_cache")
    frames, _ = read_video(source)
    with Mp4Writer(root / "videos" / "WDA_KatieHill_000.mp4", 25, 512, 512, audio=load_audio(source)[:32000]) as w:
        w.write(frames[:50])
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(root / "wav2vec2")
    spec = {"name": "wav2vec2", "pretrained": str(root / "wav2vec2"), "layers": [1, 2]}
    settings = Settings(fps=25, resolution=32, segment_seconds=2.0, cache_audio=spec)
    run(root / "videos", root / "out", settings, {"name": "opencv_haar"}, {"name": "flow"}, progress=False)
    return {"output": root / "out", "spec": spec}


def _wav2vec2_from(folder: str, layers: list[int]) -> tuple[str, str]:
    return "~model.audio_encoder", f"+model.audio_encoder={{name: wav2vec2, pretrained: '{folder}', layers: {layers}}}"


def _fit_one_step(module, data, tmp_path) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    return trainer


@pytest.mark.slow
def test_preprocess_caches_audio_features_and_training_uses_them(cached_audio, tmp_path):
    from litdata import StreamingDataset

    from emo_lightning.data.preprocessed import PreprocessedDataModule
    from emo_lightning.preprocess.process import encode_audio_features

    spec = cached_audio["spec"]
    module = tiny_module(*_wav2vec2_from(spec["pretrained"], [1, 2]))
    item = StreamingDataset(str(cached_audio["output"] / "data"))[0]  # the stored segment
    stored, frames = item["audio_features"], len(item["offsets"]) - 1
    assert stored.dtype == np.float16 and stored.shape == (frames, module.model.audio_encoder.feature_dim)
    expected = encode_audio_features(module.model.audio_encoder, item["audio"], frames)
    np.testing.assert_allclose(stored.astype(np.float32), expected.astype(np.float32), atol=2e-3)

    calls = _wav2vec2_calls(module)
    data = PreprocessedDataModule(str(cached_audio["output"]), stage=3, resolution=32, batch_size=1, val_fraction=0.0)
    batches = []
    module.on_train_batch_start = lambda batch, batch_idx: batches.append(batch)
    trainer = _fit_one_step(module, data, tmp_path)
    assert batches[0]["audio_features"].shape == (1, 8, module.model.audio_encoder.feature_dim)
    assert calls == [0] and torch.isfinite(trainer.callback_metrics["train/loss"])

    other = tiny_module(*_wav2vec2_from(spec["pretrained"], [2]))
    calls, batches = _wav2vec2_calls(other), []
    other.on_train_batch_start = lambda batch, batch_idx: batches.append(batch)
    data = PreprocessedDataModule(str(cached_audio["output"]), stage=3, resolution=32, batch_size=1, val_fraction=0.0)
    with pytest.warns(UserWarning, match="other layers"):
        _fit_one_step(other, data, tmp_path)
    assert "audio_features" not in batches[0] and calls[0] > 0
