"""LoRA fine-tuning (`model.lora`): adapters through peft on chosen parameter groups train alone, checkpoints hold
only them, and generation applies them (`emo predict … lora=`, an adapter alone, the demo's loader)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_module

from emo_lightning.data import SyntheticDataModule
from emo_lightning.model.checkpoint import read_checkpoint
from emo_lightning.model.lora import base_keys_to_wrapped, is_lora_key
from emo_lightning.pipeline.loading import load_pipeline

LORA = "model.lora={targets: [backbone, audio, temporal], rank: 1}"


@pytest.fixture(scope="module")
def lora_run(tiny_checkpoint, tmp_path_factory):
    """The tiny EMO of `tiny_checkpoint` fine-tuned with rank-1 adapters for 3 steps, saved as `emo fit` saves."""
    module = tiny_module(f"model.init_from={tiny_checkpoint}", LORA, "model.lr=0.05")
    trainer = pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", devices=1)
    trainer.fit(module, SyntheticDataModule(stage=3, batch_size=1, train_samples=3, val_samples=1))
    path = tmp_path_factory.mktemp("lora") / "adapter.ckpt"
    trainer.save_checkpoint(path)
    return module, path


def test_a_lora_fit_changes_only_the_adapter_weights(tiny_checkpoint, lora_run):
    module, path = lora_run
    state = module.state_dict()
    base = base_keys_to_wrapped(read_checkpoint(tiny_checkpoint)["state_dict"], state)
    assert all(torch.equal(state[k], v) for k, v in base.items())  # every base weight as it was
    # peft starts lora_B at zero; the audio-attention's query and key get no gradient in the tiny model (its mel
    # window 0 gives one audio token per frame, so the attention weights are constant): every other one trains
    trained = {k: v for k, v in state.items() if ".lora_B." in k and not (".attn2.to_q." in k or ".attn2.to_k." in k)}
    assert trained and all(v.abs().sum() > 0 for v in trained.values())
    assert {n for n, p in module.named_parameters() if p.requires_grad} == {k for k in state if is_lora_key(k)}
    saved = read_checkpoint(path)
    assert saved["state_dict"] and all(is_lora_key(k) for k in saved["state_dict"])


def test_the_adapter_checkpoint_is_under_5_percent_of_a_full_one(tiny_checkpoint, lora_run):
    ratio = lora_run[1].stat().st_size / tiny_checkpoint.stat().st_size
    assert ratio < 0.05, f"adapter / full checkpoint = {ratio:.1%}"


def frames(pipeline) -> torch.Tensor:
    torch.manual_seed(0)
    image, mask, audio = torch.rand(1, 3, 32, 32) * 2 - 1, torch.ones(1, 1, 32, 32), torch.randn(1, 8000) * 0.1
    return pipeline(image, audio, mask, total_frames=12, steps=1, seed=0)


def test_generation_with_the_adapter_differs_from_the_base_and_an_adapter_alone_finds_its_base(tiny_checkpoint,
                                                                                                lora_run, monkeypatch):
    base = frames(load_pipeline(tiny_checkpoint))
    with_adapter = frames(load_pipeline(tiny_checkpoint, lora=lora_run[1]))
    loads, load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda f, *args, **kwargs: loads.append(str(f)) or load(f, *args, **kwargs))
    alone = frames(load_pipeline(lora_run[1]))  # the demo's loader: the adapter names its base (init_from)
    assert loads == [str(lora_run[1]), str(tiny_checkpoint)]  # each file read once
    assert (with_adapter - base).abs().mean() * 127.5 > 0.5  # in 8-bit levels: visible in the video
    torch.testing.assert_close(alone, with_adapter)


def test_lora_on_an_unknown_group_is_a_clear_error():
    with pytest.raises(ValueError, match="choose among the parameter groups"):
        tiny_module("model.lora={targets: [attention], rank: 2}")


@pytest.mark.slow
def test_emo_predict_applies_an_adapter(tiny_checkpoint, lora_run, tmp_path):
    import wave

    from PIL import Image
    from skimage.data import astronaut
    from test_cli import emo

    from emo_lightning.media import read_video

    Image.fromarray(astronaut()).save(tmp_path / "portrait.png")
    with wave.open(str(tmp_path / "speech.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((torch.randn(8000) * 3000).short().numpy().tobytes())
    common = ["image=portrait.png", "audio=speech.wav", "steps=1", "face_detector=none"]
    emo("predict", f"ckpt_path={tiny_checkpoint}", "output=base.mp4", *common, cwd=tmp_path)
    emo("predict", f"ckpt_path={tiny_checkpoint}", f"lora={lora_run[1]}", "output=lora.mp4", *common, cwd=tmp_path)
    base, adapted = read_video(tmp_path / "base.mp4")[0], read_video(tmp_path / "lora.mp4")[0]
    assert base.shape == adapted.shape
    assert abs(base.astype(float) - adapted.astype(float)).mean() > 0.1, "the adapter changed nothing"
