"""The names under which training checkpoints store what inference reads back (one owner for both sides).

Systems write them into Lightning ``.ckpt`` files; :func:`pix2nerf.inference.load_model` reads them. A base module:
every layer may import it.
"""

NETWORK_SPECS = "network_specs"
"""Checkpoint key: ``{network name: {"class": ..., "init_args": {...}}}`` of the networks inference rebuilds."""
CAMERA_PRIOR = "camera_prior"
"""Checkpoint key: the :class:`~pix2nerf.cameras.PosePrior` fields the model was trained with."""
TRAINING_SECONDS = "training_seconds"
"""Checkpoint key: wall seconds spent in training steps so far (carried across resumes)."""
INFERENCE_PREFIXES = {"generator": "generator_ema.", "encoder": "encoder.", "residual": "residual."}
"""Inference network name -> the prefix of its weights in a system's ``state_dict`` (the generator is the EMA)."""
