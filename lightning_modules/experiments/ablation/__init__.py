"""The memory ablation: `lipmem ablation run --config FILE`."""
