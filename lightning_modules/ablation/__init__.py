"""The memory ablation (issue 7 section 3): `lipmem ablation run --config FILE`."""
