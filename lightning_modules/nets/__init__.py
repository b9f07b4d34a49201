"""Plain `torch.nn` building blocks of the generator and discriminator: no Lightning here."""

from lightning_modules.nets.audio_encoder import AudioEncoder
from lightning_modules.nets.audio_mapping import AudioMapping
from lightning_modules.nets.decoder import Decoder
from lightning_modules.nets.discriminator import PatchDiscriminator
from lightning_modules.nets.generator import GeneratorOutput, LipSyncGenerator
from lightning_modules.nets.image_encoder import ImageEncoder
from lightning_modules.nets.memory_fusion import MemoryFusion
from lightning_modules.nets.mouth_autoencoder import MouthAutoencoderNet, copy_matching

__all__ = [
    "AudioEncoder",
    "AudioMapping",
    "Decoder",
    "GeneratorOutput",
    "ImageEncoder",
    "LipSyncGenerator",
    "MemoryFusion",
    "MouthAutoencoderNet",
    "PatchDiscriminator",
    "copy_matching",
]
