"""Backbone / ReferenceNet UNets."""

from emo_lightning.components.unet import sd  # noqa: F401  (register built-ins)
