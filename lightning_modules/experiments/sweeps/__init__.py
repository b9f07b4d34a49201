"""W&B sweep files (`sweeps/*.yaml`) read without a server: the offline `lipmem sweep run`.

spec.py loads and checks a sweep file, sampling.py draws trials, command.py builds a trial's
command the way `wandb agent` does, wandb_runs.py reads a finished run's summary from the
transaction log W&B writes, state.py keeps `sweep.json`. The CLI is lightning_modules.experiments.sweeps.runner.
"""
