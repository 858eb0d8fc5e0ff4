"""VAEs: images ↔ diffusion latents."""

from emo_lightning.components.vae import pixel, sd, wan  # noqa: F401  (register built-ins)
