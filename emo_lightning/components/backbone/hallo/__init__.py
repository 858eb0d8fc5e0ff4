"""Hallo (fudan-generative-vision/hallo) expressed on diffusers' UNets: see :mod:`.denoiser`."""
