"""Putting a memory bank into a generator: the checked codes, optionally the autoencoder's
weights, and the run's record of which bank it used.

The training module decides *when* (after any checkpoint restore, so a resumed model keeps
its codes); this module does the *what*. It reaches the generator only through its narrow
memory interface (``memory.load_codes``, ``num_codes``, ``code_dim``, ``image_size``) and the
nets' weight-copy helpers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from lightning_modules.nets import LipSyncGenerator, copy_matching
from lightning_modules.nets.mouth_autoencoder import silence_audio_inputs
from memory_bank.artifacts.registry import LocalRegistry
from memory_bank.bank import LoadedBank, check_bank, load_bank, load_bank_encoder
from memory_bank.memory_config import MemoryConfig


def _registry(memory: MemoryConfig) -> LocalRegistry | None:
    return LocalRegistry(memory.registry) if memory.registry else None


def load_checked_bank(memory: MemoryConfig, generator: LipSyncGenerator,
                      mask: dict[str, Any] | None) -> LoadedBank:
    """The bank ``memory`` names for this generator's n, checked against its code size, image
    size and (when the data is known) the mask the bank was encoded with."""
    bank = load_bank(memory.reference(generator.num_codes), _registry(memory))
    unchecked = check_bank(bank, num_codes=generator.num_codes,
                           code_dim=generator.memory.code_dim,
                           image_size=generator.image_size, mask=mask)
    if unchecked:
        rank_zero_warn(f"memory bank {bank.ref}: could not check {unchecked} (not recorded "
                       "in the bank's metadata or no datamodule); make sure they match")
    return bank


def init_from_autoencoder(generator: LipSyncGenerator, bank: LoadedBank,
                          memory: MemoryConfig) -> None:
    """Start the image encoder and decoder from the autoencoder that made the bank.

    A context autoencoder's decoder already draws a mouth from a code into a masked face,
    exactly the generator's decoder job; its audio inputs never saw anything but zeros, so
    they start at zero (silence_audio_inputs) instead of as untrained noise.
    """
    if not (bank.meta.get("encoder") or {}).get("ref"):
        rank_zero_warn(f"lipmem: memory bank {bank.ref} names no autoencoder; the generator "
                       "starts from random weights (model.memory.init_from_autoencoder)")
        return
    net = load_bank_encoder(bank, _registry(memory))
    encoder, decoder = net.generator_parts()
    copied, skipped = copy_matching(encoder, generator.image_encoder)
    copied_dec, skipped_dec = copy_matching(decoder, generator.decoder)
    if net.context:
        silence_audio_inputs(generator.decoder, generator.image_encoder.embed_dim,
                             generator.audio_encoder.dim)
    rank_zero_info(f"lipmem: generator initialised from autoencoder "
                   f"{bank.meta['encoder']['ref']}: {len(copied) + len(copied_dec)} tensors "
                   f"copied, skipped {skipped + skipped_dec or 'none'}")


@rank_zero_only
def record_bank(loggers: Iterable[Any], bank: LoadedBank) -> None:
    """The run says which bank version it used: config entry + W&B lineage."""
    for logger in loggers:
        logger.log_hyperparams({"memory_bank": bank.describe()})
        run = getattr(logger, "experiment", None) if hasattr(logger, "mode") else None
        if run is not None and bank.target is not None:
            from memory_bank.artifacts.wandb_artifacts import record_input

            record_input(run, "memory_bank", bank.ref, bank.target, logger.mode)
