"""Where the generator's memory codes come from (`model.memory.*` in the configs)."""

from __future__ import annotations

from dataclasses import dataclass

BOOTSTRAP = "bootstrap"
REFIT_MODES = ("keep", "rebuild", "refine")


@dataclass
class MemoryConfig:
    """`source` is a reference resolved by memory_bank.artifacts.references: `memory-bank:n80`
    (local registry, or W&B when online), `wandb:entity/project/memory-bank:v3`, a codes
    file path, or `bootstrap` (k-means of the untrained encoder's features: tests and quick
    experiments, not the method). `{n}` in it becomes the generator's num_codes, so a sweep
    over n picks the matching bank.

    `refit` is what a fine-tune (model.init_from) does with the base model's codes on the
    new data: keep them, rebuild them (k-means of the new lower faces encoded by the base's
    encoder), or refine them (Lloyd iterations from the base's codes, so code i keeps its
    meaning for the audio-mapping head)."""

    source: str = "memory-bank:n{n}"
    registry: str | None = None            # local registry root; null = $LIPMEM_REGISTRY or ./artifacts
    init_from_autoencoder: bool = False    # start image encoder + decoder from the bank's autoencoder
    bootstrap_frames: int = 2048           # frames encoded for bootstrap and refit
    seed: int = 0
    refit: str = "keep"                    # with model.init_from: keep | rebuild | refine

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("model.memory.source is empty: give a bank reference or 'bootstrap'")
        if self.refit not in REFIT_MODES:
            raise ValueError(f"model.memory.refit={self.refit!r}: expected one of {REFIT_MODES}")
        if self.bootstrap_frames <= 0:
            raise ValueError(f"model.memory.bootstrap_frames={self.bootstrap_frames}: must be > 0")

    def reference(self, num_codes: int) -> str:
        return self.source.replace("{n}", str(num_codes))

    @property
    def is_bootstrap(self) -> bool:
        return self.source == BOOTSTRAP
