"""Where the generator's memory codes come from (`model.memory.*` in the configs)."""

from __future__ import annotations

from dataclasses import dataclass

BOOTSTRAP = "bootstrap"


@dataclass
class MemoryConfig:
    """`source` is a reference resolved by memory_bank.artifacts.references: `memory-bank:n80`
    (local registry, or W&B when online), `wandb:entity/project/memory-bank:v3`, a codes
    file path, or `bootstrap` (k-means of the untrained encoder's features: tests and quick
    experiments, not the method). `{n}` in it becomes the generator's num_codes, so a sweep
    over n picks the matching bank."""

    source: str = "memory-bank:n{n}"
    registry: str | None = None            # local registry root; null = $LIPMEM_REGISTRY or ./artifacts
    init_from_autoencoder: bool = False    # start image encoder + decoder from the bank's autoencoder
    bootstrap_frames: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("model.memory.source is empty: give a bank reference or 'bootstrap'")
        if self.bootstrap_frames <= 0:
            raise ValueError(f"model.memory.bootstrap_frames={self.bootstrap_frames}: must be > 0")

    def reference(self, num_codes: int) -> str:
        return self.source.replace("{n}", str(num_codes))

    @property
    def is_bootstrap(self) -> bool:
        return self.source == BOOTSTRAP
