"""The LightningModule: EMO assembled from the config and trained stage by stage; generation is its pipeline's
(:mod:`emo_lightning.pipeline`)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from diffusers.optimization import SchedulerType, get_scheduler
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from emo_lightning import registry
from emo_lightning.model import EMO, Conditions
from emo_lightning.model.checkpoint import (
    check_state_dict,
    expected_weights,
    generation_weights,
    load_adapter,
    load_weights,
    read_checkpoint,
    without_external_weights,
)
from emo_lightning.model.lora import add_lora, base_keys_to_wrapped, is_lora_key, lora_spec
from emo_lightning.model.stages import GROUPS, STAGE_GROUPS, Stage, apply_trainable
from emo_lightning.pipeline import EMOPipeline, GenerationSettings, build_scheduler, noise_schedule_of
from emo_lightning.training.draws import SampleDraws

LR_SCHEDULERS = [s.value for s in SchedulerType]
GENERATION = GenerationSettings()


class EMOLightningModule(pl.LightningModule):
    """EMO, built from registered components.

    Args:
        backbone, vae, audio_encoder, face_locator, temporal_block, speed_encoder: component specs, each a
            mapping with the registered ``name`` and that component's keyword arguments (the backbone places
            the temporal blocks).
        noise_schedule: diffusers scheduler keywords shared by the training and sampling schedulers
            (``prediction_type``: ``epsilon``, ``v_prediction`` or ``sample``).
        train_scheduler, sample_scheduler: ``scheduler`` component specs (DDPM / DDIM by default).
        stage: 1 (images), 2 (video + audio) or 3 (video + audio + speed); sets the data layout, the
            active condition paths and, unless ``trainable`` is given, the trainable groups.
        trainable: parameter groups to train (see :mod:`emo_lightning.model.stages`).
        condition_dropout: per-sample probability of dropping ``reference``, ``audio`` and ``motion``
            (classifier-free guidance and first-clip training).
        lr_scheduler: a diffusers learning-rate schedule (``constant``, ``cosine``, ``linear``, …) over the
            run's ``trainer.max_steps``, after ``lr_warmup_steps`` of linear warm-up.
        num_frames, motion_frames, fps, resolution: the clips it trains on (frames per clip, motion frames fed back,
            frame rate, side in pixels).
        num_inference_steps, guidance_reference, guidance_audio, speed, fps, sample_scheduler: the model's own
            generation settings (:class:`~emo_lightning.pipeline.GenerationSettings`, whose defaults these are);
            ``generation``: any other of its controls, e.g. the fast-generation ones (``{precision: bf16,
            guidance_min_noise: 0.5}``).
        lip_loss_weight: how much more the mouth region counts in the loss than the rest (1 = EMO's plain
            loss). The lips are a small part of the frame but all of the lip sync; weighting them, as Hallo
            does, makes the audio's share of the loss large enough to learn. Needs ``lip_mask`` in the batch.
        gradient_checkpointing: recompute the backbone's activations (with its reference path and temporal blocks)
            in the backward pass instead of keeping them (less memory, about one more forward pass of time).
        init_from: a checkpoint of an earlier stage to start from (weights only, non-strict).
        lora: ``{targets: [groups], rank, alpha, dropout, weights}``: train LoRA adapters on those parameter groups
            instead of the groups themselves; checkpoints then hold only the adapters (see
            :mod:`emo_lightning.model.lora`). ``weights``: an adapter checkpoint to apply.
        plugins: plugin files/directories to import before building (see :mod:`emo_lightning.registry`).
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        vae: dict[str, Any],
        audio_encoder: dict[str, Any],
        face_locator: dict[str, Any],
        temporal_block: dict[str, Any],
        speed_encoder: dict[str, Any],
        noise_schedule: dict[str, Any] | None = None,
        train_scheduler: dict[str, Any] | None = None,
        sample_scheduler: dict[str, Any] | None = None,
        stage: int | str = 2,
        trainable: list[str] | None = None,
        lr: float = 1e-5,
        weight_decay: float = 1e-2,
        lr_scheduler: str = "constant",
        lr_warmup_steps: int = 0,
        condition_dropout: dict[str, float] | None = None,
        lip_loss_weight: float = 1.0,
        num_frames: int = 12,
        motion_frames: int = 4,
        fps: float = GENERATION.fps,
        resolution: int = 512,
        num_inference_steps: int = GENERATION.steps,
        guidance_reference: float = GENERATION.guidance_reference,
        guidance_audio: float = GENERATION.guidance_audio,
        speed: float = GENERATION.speed,
        generation: dict[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        init_from: str | None = None,
        lora: dict[str, Any] | None = None,
        plugins: list[str] | None = None,
    ):
        super().__init__()
        stage = int(Stage.of(stage))  # a name is kept as its number (the saved hyper-parameters hold numbers)
        if lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {LR_SCHEDULERS}, got {lr_scheduler!r}")
        if lip_loss_weight <= 0:
            raise ValueError(f"lip_loss_weight must be positive, got {lip_loss_weight}")
        self.save_hyperparameters()
        registry.load_plugin_paths(plugins or [])
        self.model = EMO(backbone, vae, audio_encoder, face_locator, temporal_block, speed_encoder,
                         gradient_checkpointing=gradient_checkpointing)
        self.noise_schedule = noise_schedule_of(self.hparams)
        self.train_scheduler = build_scheduler(train_scheduler or {"name": "ddpm"}, self.noise_schedule)
        self.trainable_counts = apply_trainable(self.model, trainable or STAGE_GROUPS[stage])
        self.lora = lora_spec(self.hparams)
        if self.lora:
            self.trainable_counts = add_lora(self.model, self.lora)
        self.dropout = {"reference": 0.05, "audio": 0.05, "motion": 0.1, **(condition_dropout or {})}
        self.strict_loading = False  # frozen pretrained weights are left out of checkpoints: see checkpoint.py

    # ---- stages -------------------------------------------------------------------------------------
    @property
    def uses_video(self) -> bool:
        return self.hparams.stage >= Stage.VIDEO

    @property
    def uses_speed(self) -> bool:
        return self.hparams.stage >= Stage.SPEED

    def setup(self, stage: str) -> None:
        if self.hparams.init_from and (stage == "fit" or self.lora):  # an adapted model's base, in every stage
            report = load_weights(self.model, self.hparams.init_from)
            rank_zero_info(f"initialised from {self.hparams.init_from}: {report}")
        if self.lora and self.lora["weights"]:
            path = self.lora["weights"]
            rank_zero_info(f"LoRA adapter {path}: {load_adapter(self.model, read_checkpoint(path), path)}")

    def on_fit_start(self) -> None:
        lines = [f"EMO stage {self.hparams.stage}: trainable parameters by group"]
        lines += [f"  {g:<14} {'train' if n else 'frozen':<7} {n:>12,}" for g, n in self.trainable_counts.items()]
        rank_zero_info("\n".join(lines))
        for logger in self.loggers:
            logger.log_hyperparams({f"trainable/{g}": n for g, n in self.trainable_counts.items()})

    # ---- training -----------------------------------------------------------------------------------
    def _latents(self, batch: dict[str, Tensor], key: str) -> Tensor:
        """5-D VAE latents (B, C, F', h, w) of ``batch[key]`` (a video, or an image: one frame):
        ``batch[key + "_latents"]`` where the data cached them (`emo preprocess cache_vae=…`), else encoded here."""
        if f"{key}_latents" in batch:
            latents = batch[f"{key}_latents"].to(batch[key].dtype)
            return latents[:, :, None] if latents.ndim == 4 else latents
        pixels = batch[key]
        return self.model.vae.encode_video(pixels[:, :, None] if pixels.ndim == 4 else pixels)

    def _audio_tokens(self, batch: dict[str, Tensor], num_frames: int) -> Tensor:
        """Audio tokens of ``batch["audio"]``, or of ``batch["audio_features"]`` where the data cached the audio
        encoder's frozen part (`emo preprocess cache_audio=…`): then only its trainable part runs here."""
        encoder = self.model.audio_encoder
        if "audio_features" not in batch:
            return encoder(batch["audio"], num_frames)
        if not encoder.caches_features:
            raise ValueError(f"the batch holds cached audio features but this model's audio encoder "
                             f"({type(encoder).__name__}) has no frozen feature part to replace: set "
                             "data.use_audio_features=false")
        return encoder.tokens(batch["audio_features"])

    def _keep(self, name: str, draws: SampleDraws, training: bool) -> Tensor:
        """Per-sample 1 = keep / 0 = drop mask for condition dropout."""
        p = self.dropout[name] if training else 0.0
        return (draws.uniform() >= p).float()

    def _draws(self, batch: dict[str, Tensor], training: bool) -> SampleDraws:
        return SampleDraws.for_batch(batch, self.global_step if self._trainer is not None else 0, training,
                                     self.device)

    def conditions(self, batch: dict[str, Tensor], training: bool, draws: SampleDraws | None = None) -> Conditions:
        """A batch's conditions (:meth:`EMO.conditions <emo_lightning.model.EMO.conditions>`), with condition dropout
        when ``training``."""
        draws = draws or self._draws(batch, training)
        with torch.no_grad():
            reference = self._latents(batch, "reference")
            motion = self._latents(batch, "motion") if self.uses_video else None
        paths = ("reference", "motion", "audio") if self.uses_video else ("reference",)
        keep = {name: self._keep(name, draws, training) for name in paths}  # drawn in this order
        audio = self._audio_tokens(batch, batch["frames"].shape[2]) if self.uses_video else None
        return self.model.conditions(reference, batch["mask"], self._landmark_map(batch), motion, audio,
                                     batch["speed"] if self.uses_speed else None, keep)

    def _landmark_map(self, batch: dict[str, Tensor]) -> Tensor | None:
        """``batch["landmark_map"]`` (B, 1, F, H, W) for a face locator that draws landmarks, else None."""
        if self.model.face_locator.landmark_style is None:
            return None
        if "landmark_map" not in batch:
            raise ValueError(f"face locator {self.hparams.face_locator['name']!r} needs a `landmark_map` in every "
                             "batch, and this data gives none: train on data with landmarks (data=synthetic, or "
                             "data=preprocessed from `emo preprocess landmarks=mediapipe_mesh`, the default) with "
                             "the model attached to the data module, or choose model/face_locator=conv")
        return batch["landmark_map"]

    def diffusion_loss(self, batch: dict[str, Tensor], training: bool) -> Tensor:
        with torch.no_grad():
            latents = self._latents(batch, "frames")
        draws = self._draws(batch, training)
        conditions = self.conditions(batch, training, draws)
        noise = draws.normal(latents.shape, latents.dtype)
        sched = self.train_scheduler
        t = draws.integers(sched.config.num_train_timesteps)
        noisy = sched.add_noise(latents, noise, t)
        prediction_type = sched.config.prediction_type
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "v_prediction":
            target = sched.get_velocity(latents, noise, t)
        elif prediction_type == "sample":
            target = latents
        else:
            raise ValueError(f"unsupported prediction_type {prediction_type!r}")
        pred = self.model.denoise(noisy, t, conditions, temporal=self.uses_video)
        squared_error = (pred.float() - target.float()) ** 2
        if self.hparams.lip_loss_weight != 1:
            squared_error = squared_error * self._lip_weights(batch, latents)
        return squared_error.mean()

    def _lip_weights(self, batch: dict[str, Tensor], latents: Tensor) -> Tensor:
        """Per-latent-pixel loss weights (B, 1, F, h, w): ``lip_loss_weight`` where a latent pixel covers any
        of the mouth, 1 elsewhere."""
        if "lip_mask" not in batch:
            raise ValueError(f"lip_loss_weight={self.hparams.lip_loss_weight} needs a `lip_mask` (B, 1, F, H, W) "
                             "in every batch, and this data gives none: set model.lip_loss_weight=1 or use a data "
                             "set that marks the mouth")
        lips = F.adaptive_max_pool3d(batch["lip_mask"].float(), latents.shape[2:])
        return 1 + (self.hparams.lip_loss_weight - 1) * lips

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.diffusion_loss(batch, training=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["reference"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.diffusion_loss(batch, training=False)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["reference"].shape[0])
        return loss

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.diffusion_loss(batch, training=False)
        self.log("test/loss", loss, sync_dist=True, batch_size=batch["reference"].shape[0])
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"nothing to train: groups {hp.trainable} of {GROUPS} have no parameters")
        # the fused kernel is one op for all parameters: on small models the per-tensor loop dominates the step.
        # Lightning's mixed-precision plugin refuses to clip a fused optimizer's gradients: no fusing there.
        mixed = self._trainer is not None and str(self.trainer.precision).endswith("-mixed")
        fused = not mixed and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, fused=fused)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        if hp.lr_scheduler != "constant" and not 0 < total < float("inf"):
            raise ValueError(f"lr_scheduler={hp.lr_scheduler!r} decays over the run: set trainer.max_steps")
        schedule = get_scheduler(hp.lr_scheduler, optimizer, num_warmup_steps=hp.lr_warmup_steps,
                                 num_training_steps=int(total) if total < float("inf") else None)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ---- checkpoints --------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = without_external_weights(self.model, checkpoint["state_dict"])
        if self.lora:  # adapters only: the base model comes from init_from / ckpt_path
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if is_lora_key(k)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming a fit loads the training weights (the EMA callback takes the averages); validate, test and
        predict load the averages where the checkpoint has them."""
        fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        if not fitting:
            checkpoint["state_dict"] = generation_weights(checkpoint)
        state = checkpoint["state_dict"] = without_external_weights(self.model, checkpoint["state_dict"])
        if not self.lora:
            check_state_dict(self.model, state, source="checkpoint")
            return
        # a base model's checkpoint (its adapter comes from lora.weights), or an adapter-only one (its base from
        # init_from)
        state = checkpoint["state_dict"] = base_keys_to_wrapped(state, expected_weights(self.model))
        adapter_only = all(is_lora_key(k) for k in state)
        check_state_dict(self.model, state, source="checkpoint",
                         subset=is_lora_key if adapter_only else lambda k: not is_lora_key(k))

    # ---- generation ---------------------------------------------------------------------------------
    def pipeline(self) -> EMOPipeline:
        """The generation pipeline over this module's model, with the model's own settings (see
        :class:`~emo_lightning.pipeline.EMOPipeline`)."""
        return EMOPipeline.from_model(self.model, self.hparams)

    @property
    def fsdp_wrap_classes(self) -> tuple[type[torch.nn.Module], ...]:
        """The block classes FSDP shards one by one (the backbone's; see :mod:`emo_lightning.training.fsdp`)."""
        return tuple(self.model.backbone.fsdp_wrap_classes)
