"""Synthetic talking-face corpus (`lipmem data synth`): runs anywhere in under a minute.

Audio and video are rendered from one random timed phone sequence, so the mouth is
predictable from the audio, and the corpus ships the ground-truth mouth track.
"""

from datamodules.synth.corpus import SynthConfig, synthesize

__all__ = ["SynthConfig", "synthesize"]
