"""Face locators: face-region mask → latent residual."""

from emo_lightning.components.face_locator import conv  # noqa: F401  (register built-ins)
