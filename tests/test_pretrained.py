"""Real users load pretrained weights from a hub id or a local folder. Here the folders are written by the
libraries themselves (tiny random models saved with save_pretrained), then loaded through our configs."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from transformers import Wav2Vec2Config, Wav2Vec2Model

from emo_lightning.components.backbone.sd_unet.hooks import block_key
from emo_lightning.components.vae.sd import TINY_VAE
from emo_lightning.training import EMOLightningModule


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    unet_config = {**tiny_config()["model"]["backbone"]["config"], "in_channels": 4, "out_channels": 4}
    torch.manual_seed(0)
    UNet2DConditionModel(**unet_config).save_pretrained(root / "sd" / "unet")
    AutoencoderKL(**TINY_VAE).save_pretrained(root / "sd" / "vae")
    MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=4,
                  motion_norm_num_groups=8).save_pretrained(root / "motion")
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                 conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
                  ).save_pretrained(root / "wav2vec2")
    return root


def test_everything_loads_from_local_folders_and_checkpoints_leave_frozen_weights_out(folders, tmp_path):
    cfg = tiny_config("model/backbone=sd15", f"model.backbone.pretrained={folders / 'sd'}",
                      "model/vae=sd", f"model.vae.pretrained={folders / 'sd'}",
                      f"+model.temporal_block.pretrained={folders / 'motion'}",
                      "model/audio_encoder=wav2vec2", f"model.audio_encoder.pretrained={folders / 'wav2vec2'}",
                      "model.resolution=16")
    module = EMOLightningModule(**cfg["model"])
    model = module.model
    backbone = model.backbone

    unet = UNet2DConditionModel.from_pretrained(folders / "sd", subfolder="unet")
    for name, tensor in unet.state_dict().items():
        assert torch.equal(backbone.reference_net.state_dict()[name], tensor), name
        if ".attn2.to_out." in name:  # audio-attention is a new layer: it starts as a no-op
            assert not backbone.unet.state_dict()[name].any(), name
        else:
            assert torch.equal(backbone.unet.state_dict()[name], tensor), name
    adapter = MotionAdapter.from_pretrained(folders / "motion")
    for location, key in (("down_blocks.1.attentions.0", "down_blocks.1.motion_modules.0"),
                          ("up_blocks.1.attentions.1", "up_blocks.1.motion_modules.1"),
                          ("mid_block", "mid_block.motion_modules.0")):
        ours = backbone.temporal_blocks[block_key(location)].motion.state_dict()
        theirs = adapter.get_submodule(key).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), location

    # frozen pretrained parts are rebuilt from their source, not stored in checkpoints
    assert set(model.external_weight_prefixes()) == {"vae.model.", "audio_encoder.model."}
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert not any(k.startswith(("model.vae.model.", "model.audio_encoder.model.")) for k in checkpoint["state_dict"])
    assert any(k.startswith("model.audio_encoder.proj.") for k in checkpoint["state_dict"])
    assert not any(p.requires_grad for p in model.audio_encoder.model.parameters())

    # and such a checkpoint loads back into a freshly built model
    rebuilt = EMOLightningModule(**cfg["model"])
    rebuilt.on_load_checkpoint(checkpoint)
    rebuilt.load_state_dict(checkpoint["state_dict"], strict=False)
    assert torch.equal(rebuilt.model.backbone.unet.conv_in.weight, backbone.unet.conv_in.weight)


def test_vae_channel_mismatch_is_a_clear_error(folders):
    cfg = tiny_config("model/backbone=sd15", f"model.backbone.pretrained={folders / 'sd'}")  # 4 vs the pixel VAE's 12
    with pytest.raises(ValueError, match="UNet takes 4 latent channels and makes 4, but the VAE's latents have 12"):
        EMOLightningModule(**cfg["model"])
