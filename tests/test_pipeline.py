"""The generation pipeline: one object behind the module, `emo predict` and checkpoint loading, with its settings
defined once."""

from __future__ import annotations

import dataclasses
import typing
import wave

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_module
from PIL import Image

from emo_lightning.cli import main
from emo_lightning.lightning_cli import predict_config
from emo_lightning.media import read_video
from emo_lightning.pipeline import EMOPipeline, GenerationSettings
from emo_lightning.pipeline.loading import load_pipeline
from emo_lightning.pipeline.settings import CONTROL_HELP, CONTROLS
from emo_lightning.training import EMOLightningModule

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A portrait file (already square: face_detector=none crops nothing away) and 1.2 s of speech-like audio."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / "face.png")
    t = np.arange(19200) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 180 * t) * np.abs(np.sin(2 * np.pi * 4 * t)) * 32767).astype("<i2")
    with wave.open(str(folder / "voice.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(samples.tobytes())
    return folder / "face.png", folder / "voice.wav"


def test_settings_are_defined_once_and_the_config_and_module_read_them():
    defaults = GenerationSettings()
    model = tiny_config("experiment=stage2")["model"]  # a config that sets none of them itself
    assert (model["num_inference_steps"], model["guidance_reference"], model["guidance_audio"], model["speed"],
            model["fps"]) == (defaults.steps, defaults.guidance_reference, defaults.guidance_audio, defaults.speed,
                              defaults.fps)
    module = tiny_module()  # experiment=tiny sets its own steps and audio guidance: the pipeline takes those
    settings = module.pipeline().settings
    assert (settings.steps, settings.guidance_audio, settings.sampler) == (2, 5.0, "ddim")
    assert settings.override(steps=None, seed=3) == dataclasses.replace(settings, seed=3)
    with pytest.raises(ValueError, match="unknown generation controls"):
        settings.override(stride=2)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        settings.override(steps=0)
    assert set(CONTROLS) == {f.name for f in dataclasses.fields(GenerationSettings)}


def test_pipeline_emo_predict_and_the_module_give_the_same_frames(tiny_checkpoint, inputs, tmp_path, monkeypatch):
    image, audio = inputs
    controls = {"seed": 5, "steps": 2, "guidance_audio": 2.0}
    pipeline = load_pipeline(tiny_checkpoint)
    frames = pipeline(image, audio, face_detector="none", **controls)
    assert frames.shape == (1, 3, 30, 32, 32)  # 1.2 s at 25 fps, at the model's resolution

    # the training module loaded by Lightning (as `emo validate`/`test` do) generates through the same pipeline
    module = EMOLightningModule.load_from_checkpoint(tiny_checkpoint, map_location="cpu", weights_only=True).eval()
    module_frames = module.pipeline()(image, audio, face_detector="none", **controls)
    torch.testing.assert_close(module_frames, frames, rtol=0, atol=0)

    other_seed = pipeline(image, audio, face_detector="none", **{**controls, "seed": 6})
    assert (other_seed - frames).abs().mean() > 1e-3

    monkeypatch.chdir(tmp_path)
    pipeline.write_video("pipeline.mp4", image, audio, face_detector="none", **controls)
    main(["predict", f"ckpt_path={tiny_checkpoint}", f"image={image}", f"audio={audio}", "output=predict.mp4",
          "face_detector=none", *(f"{k}={v}" for k, v in controls.items())])
    written, predicted = read_video(tmp_path / "pipeline.mp4")[0], read_video(tmp_path / "predict.mp4")[0]
    assert np.array_equal(written, predicted)  # the same frames, encoded the same way
    exact = ((frames[0].permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).numpy()
    # these frames are noise (one training step), whose detail H.264 at 32x32 drops: compare each frame's mean colour
    assert np.abs(predicted.mean((1, 2)) - exact.mean((1, 2))).max() < 4


def test_clips_stream_with_motion_frames_re_encoded_from_the_frames_made():
    """With an image VAE, re-encoding the decoded frames gives back the clip's own latents: the motion frames are the
    previous clip's last latents, as the sampler always fed them."""
    module = tiny_module().eval()
    pipeline = module.pipeline()
    encoded = []
    original = module.model.motion_features

    def spy(latents):
        encoded.append(latents)
        return original(latents)

    module.model.motion_features = spy
    clips = list(pipeline.clips(torch.zeros(1, 3, 32, 32), torch.randn(1, 16000) * 0.1, torch.ones(1, 1, 32, 32),
                                total_frames=20, steps=1))
    assert [c.shape[2] for c in clips] == [8, 8, 4]
    assert len(encoded) == 3 and not encoded[0].any()  # the first clip: zeros
    torch.testing.assert_close(module.model.vae.decode_video(encoded[1]).clamp(-1, 1), clips[0][:, :, -4:], atol=1e-6,
                               rtol=0)


def test_a_portrait_tensor_needs_its_mask_and_a_size_the_model_can_make():
    module = tiny_module().eval()
    pipeline = EMOPipeline.from_model(module.model, module.hparams)
    with pytest.raises(ValueError, match="needs its face mask"):
        next(pipeline.clips(torch.zeros(3, 32, 32), torch.zeros(8000)))
    side = 32 + pipeline.size_multiple // 2
    with pytest.raises(ValueError, match=f"multiples of {pipeline.size_multiple}, not {side}x{side}"):
        next(pipeline.clips(torch.zeros(3, side, side), torch.zeros(8000), torch.ones(1, side, side)))


def test_a_3d_vae_makes_each_clip_from_its_latent_frames_and_motion_from_the_frames_made():
    """A causal 3-D VAE (4x in time) under the Wan backbone: a clip of n frames is latent_frames(n) latent frames,
    decoded and cropped to n; the motion frames are encode_video of the last motion_frames frames made (zeros of that
    shape for the first clip)."""
    from emo_lightning import registry

    if "wan" not in {entry.name for entry in registry.entries("vae")}:
        pytest.skip("needs the causal 3-D VAE `wan` (issue 12's Wan backbone)")
    module = tiny_module("model/backbone=wan_tiny", "model/vae=wan_tiny").eval()
    pipeline, vae = module.pipeline(), module.model.vae
    decoded, motion = [], []
    decode_video, motion_features = vae.decode_video, module.model.motion_features
    vae.decode_video = lambda latents: decoded.append(latents.shape[2]) or decode_video(latents)
    module.model.motion_features = lambda latents: motion.append(latents) or motion_features(latents)
    clips = list(pipeline.clips(torch.zeros(1, 3, 32, 32), torch.randn(12800) * 0.1, torch.ones(1, 1, 32, 32),
                                total_frames=20, steps=1))
    assert [c.shape[2] for c in clips] == [8, 8, 4] and decoded == [3, 3, 2]  # 1 + ceil((n - 1) / 4)
    assert [m.shape[2] for m in motion] == [2, 2, 2] and not motion[0].any()  # 4 motion frames: 2 latent frames
    assert not torch.equal(motion[1], motion[2])  # each clip's own last frames




def test_generation_controls_are_declared_once():
    """GenerationSettings declares every control (type, default, help); `emo predict`'s config and data module take
    them all, by the same names and types."""
    from emo_lightning.pipeline.predict import PredictDataModule

    generation = typing.get_type_hints(PredictDataModule.__init__)["generation"]
    assert {f.name for f in dataclasses.fields(typing.get_args(generation)[0])} == set(CONTROLS)
    assert set(predict_config(["ckpt_path=x.ckpt", *(f"{c}=null" for c in CONTROLS)])["data"]["init_args"]
               ["generation"]) == set(CONTROLS)  # conf/predict.yaml takes every control by its own name
    with pytest.raises(ValueError, match="steps=many: Value 'many' .* Integer .steps: denoising steps per clip"):
        predict_config(["ckpt_path=x.ckpt", "steps=many"])  # typed as declared, and the error says what steps are
    assert all(CONTROL_HELP[c] for c in CONTROLS)


def test_emo_predict_takes_every_generation_control(tiny_checkpoint, inputs, tmp_path, monkeypatch):
    """Each control of GenerationSettings is an `emo predict` argument; the fast-generation ones run under Lightning's
    inference mode (the reference keys/values cache meets inference tensors there)."""
    image, audio = inputs
    monkeypatch.chdir(tmp_path)
    main(["predict", f"ckpt_path={tiny_checkpoint}", f"image={image}", f"audio={audio}", "output=fast.mp4",
          "face_detector=none", "steps=3", "precision=bf16", "cache_threshold=0.05", "guidance_min_noise=0.3",
          "channels_last=true"])
    assert read_video(tmp_path / "fast.mp4")[0].shape[0] == 30  # 1.2 s at 25 fps


def test_emo_predict_reads_its_checkpoint_once_and_builds_no_training_parts(tiny_checkpoint, inputs, tmp_path,
                                                                            monkeypatch):
    """`emo predict` builds the pipeline from the checkpoint alone: one torch.load, no LightningModule of training
    (optimiser, loss, training scheduler, trainable groups) and no sampler but the model's."""
    from emo_lightning import registry

    loads, schedulers = [], []
    load, build = torch.load, registry.build
    monkeypatch.setattr(torch, "load", lambda f, *args, **kwargs: loads.append(str(f)) or load(f, *args, **kwargs))
    monkeypatch.setattr(registry, "build", lambda kind, spec, *args, **kwargs: (
        schedulers.append(spec if isinstance(spec, str) else spec["name"]) if kind == "scheduler" else None)
        or build(kind, spec, *args, **kwargs))

    def refuse(*args, **kwargs):
        raise AssertionError("emo predict built a part of training")

    monkeypatch.setattr(EMOLightningModule, "__init__", refuse)
    monkeypatch.setattr(torch.optim.Optimizer, "__init__", refuse)
    image, audio = inputs
    monkeypatch.chdir(tmp_path)
    main(["predict", f"ckpt_path={tiny_checkpoint}", f"image={image}", f"audio={audio}", "output=once.mp4",
          "face_detector=none", "steps=1"])
    assert loads == [str(tiny_checkpoint)]
    assert schedulers == ["ddim"]  # the sampler alone: no training (DDPM) scheduler
    assert (tmp_path / "once.mp4").is_file()
