"""The ablation runner: the planned grid, its overrides through the real CLI, resume, report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from lightning_modules.checkpoints.digest import verify_digest, write_digest
from lightning_modules.cli.main import run_trainer_cli
from lightning_modules.experiments.ablation.commands import CHECKPOINT, Layout, fit_command
from lightning_modules.experiments.ablation.report import aggregate, markdown
from lightning_modules.experiments.ablation.runner import (
    RESULT_JSON,
    JobFailed,
    link_best_checkpoint,
    run_ablation,
)
from lightning_modules.experiments.ablation.spec import AblationConfigError, load_spec
from lightning_modules.nets import LipSyncGenerator
from memory_bank.memory_config import MemoryConfig

REPO = Path(__file__).resolve().parents[3]
CPU = REPO / "configs" / "ablation" / "cpu.yaml"
GPU = REPO / "configs" / "ablation" / "gpu.yaml"
MODE = "--model.generator.init_args.memory_mode="
# run_trainer_cli(args) in-process, under pytest's own argv
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


def test_cpu_dry_run_lists_the_21_intended_runs(tmp_path, capsys):
    assert run_ablation(["run", "--config", str(CPU), "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    fits = [line for line in out.splitlines() if " fit: " in line]
    evals = [line for line in out.splitlines() if " eval: " in line]
    assert len(fits) == 21 and len(evals) == 21
    arms = Counter(line.split(" ")[0].rsplit("-s", 1)[0] for line in fits)
    assert arms == {"softmax-n80": 3, "none-n80": 3, "argmax-n80": 3, "random_members-n80": 3,
                    "no_ae_decoder-n80": 3, "softmax-n20": 3, "softmax-n160": 3}
    for line in fits:
        name = line.split(" ")[0]
        variant, n, seed = name.rsplit("-", 2)
        mode = "softmax" if variant in ("random_members", "no_ae_decoder") else variant
        assert f"{MODE}{mode}" in line
        assert f"--model.generator.init_args.num_codes={n[1:]}" in line
        assert f"--seed_everything={seed[1:]}" in line and f"--data.seed={seed[1:]}" in line
        assert f"--trainer.default_root_dir={tmp_path}/runs/{name}" in line
        assert f"--model.memory.registry={tmp_path}/registry" in line
        assert ("--model.memory.source=memory-bank:n{n}-random" in line) == \
            (variant == "random_members")
        assert ("--model.memory.init_from_autoencoder=false" in line) == \
            (variant == "no_ae_decoder")
    bank = next(line for line in out.splitlines() if line.startswith("bank: "))
    assert "--bank.n=[20,80,160]" in bank and f"--bank.registry={tmp_path}/registry" in bank
    random_bank = next(line for line in out.splitlines() if line.startswith("bank-random: "))
    assert "--bank.method=random_members" in random_bank and "--bank.n=[80]" in random_bank
    assert f"--bank.features={tmp_path}/bank/bank/features.npz" in random_bank
    assert not (tmp_path / "runs").exists()  # a dry run runs nothing


def print_config(argv: list[str], capsys) -> dict:
    """`lipmem fit ARGS --print_config` through the real CLI, in-process."""
    with pytest.raises(SystemExit) as exit_info:
        run_trainer_cli([*argv[1:], "--print_config"])
    captured = capsys.readouterr()
    assert exit_info.value.code in (0, None), captured.err[-3000:]
    return yaml.safe_load(captured.out)


@pytest.mark.parametrize("config", [CPU, GPU], ids=["cpu", "gpu"])
def test_each_arm_builds_the_intended_model_through_the_real_cli(config, tmp_path, capsys):
    spec = load_spec(config)
    layout = Layout(tmp_path)
    expected = {"softmax": ("softmax", "memory-bank:n{n}"), "none": ("none", "memory-bank:n{n}"),
                "argmax": ("argmax", "memory-bank:n{n}"),
                "random_members": ("softmax", "memory-bank:n{n}-random"),
                "no_ae_decoder": ("softmax", "memory-bank:n{n}")}
    seen = {}
    for run in spec.runs:
        if run.seed != spec.seeds[0] or run.arm in seen:
            continue
        argv = fit_command(spec, layout, run)
        assert argv[1] == "fit"
        cfg = print_config(argv, capsys)
        generator = cfg["model"]["generator"]["init_args"]
        mode, source = expected[run.variant]
        assert generator["memory_mode"] == mode and generator["num_codes"] == run.n
        memory = MemoryConfig(**cfg["model"]["memory"])
        assert memory.reference(run.n) == source.replace("{n}", str(run.n)) == run.bank_ref
        assert memory.registry == str(tmp_path / "registry")
        assert memory.init_from_autoencoder == (run.variant != "no_ae_decoder")
        assert cfg["seed_everything"] == run.seed
        net = LipSyncGenerator(**generator)
        seen[run.arm] = net
        if mode == "none":
            assert net.audio_mapping.net[-1].out_features == generator["embed_dim"]
        else:
            assert net.audio_mapping.net[-1].out_features == run.n
    assert len(seen) == 7
    assert {a: m.memory_mode for a, m in seen.items()} == {
        "softmax-n80": "softmax", "none-n80": "none", "argmax-n80": "argmax",
        "random_members-n80": "softmax", "no_ae_decoder-n80": "softmax",
        "softmax-n20": "softmax", "softmax-n160": "softmax"}
    assert [seen[f"softmax-n{n}"].num_codes for n in (20, 80, 160)] == [20, 80, 160]


def write_spec(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(CPU.read_text())
    raw.update(changes)
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("changes, needle", [
    ({"grid": [{"variants": ["softmax", "hard"], "n": [80]}]}, "'hard' is not in variants"),
    ({"grid": [{"variants": ["softmax"], "n": [40]}]}, "memory-bank:n40"),
    ({"grid": [{"variants": ["random_members"], "n": [20]}]}, "memory-bank:n20-random"),
    ({"fit": {"args": ["--seed_everything=3"]}}, "fit.args"),
    ({"seeds": []}, "seeds"),
    ({"variant": {}}, "unknown key"),
])
def test_bad_ablation_files_fail_naming_the_key(tmp_path, changes, needle):
    with pytest.raises(AblationConfigError, match="ablation.yaml") as err:
        load_spec(write_spec(tmp_path, **changes))
    assert needle in str(err.value)


def test_aggregate_gives_mean_and_sample_sd_per_arm_and_metric():
    results = [{"arm": "softmax-n80", "eval_metrics": {"l1": v, "note": "x"},
                "fit_metrics": {"val/psnr": 20.0, "val/data/skipped_samples": 0.0}}
               for v in (1.0, 2.0, 3.0)]
    results.append({"arm": "none-n80", "eval_metrics": {"l1": 5.0}, "fit_metrics": {}})
    arms = aggregate(results)
    assert arms["softmax-n80"]["eval/l1"]["mean"] == pytest.approx(2.0)
    assert arms["softmax-n80"]["eval/l1"]["sd"] == pytest.approx(1.0)
    assert arms["softmax-n80"]["fit/val/psnr"]["sd"] == 0.0
    assert "eval/note" not in arms["softmax-n80"]
    assert "fit/val/data/skipped_samples" not in arms["softmax-n80"]
    assert arms["none-n80"]["eval/l1"] == {"mean": 5.0, "sd": None, "count": 1, "values": [5.0]}
    text = markdown({"arms": arms, "arm_order": ["softmax-n80", "none-n80"],
                     "spec": {"name": "t", "seeds": [0, 1, 2]}, "command": "lipmem ablation",
                     "hardware": {"summary": "2 CPU cores"}, "finished": 4, "failed": [],
                     "seconds": 10.0})
    assert "| eval/l1 | 2 ± 1 | 5 (1) |" in text


def test_finished_runs_are_skipped_and_reported(tiny_corpus, tmp_path, capsys):
    path = write_spec(tmp_path, data=str(tiny_corpus), synth=False)
    spec = load_spec(path)
    layout = Layout(tmp_path / "out")
    for random in (False, True):  # banks built earlier; the k-means build measured its clusters
        layout.bank_summary(random).parent.mkdir(parents=True)
        layout.bank_summary(random).write_text("{}" if random else json.dumps({"metrics": {
            "80": {"single_speaker_share": 0.09, "openness_variance_explained": 0.86,
                   "largest_cluster_share": 0.05}}}))
    for run, value in zip(spec.runs[:3], (0.1, 0.2, 0.3)):  # softmax-n80, seeds 0..2
        layout.run_dir(run).mkdir(parents=True)
        (layout.run_dir(run) / RESULT_JSON).write_text(json.dumps({
            "name": run.name, "arm": run.arm, "seed": run.seed, "fit_seconds": 1.0,
            "eval_seconds": 1.0, "fit_metrics": {}, "eval_metrics": {"l1_mouth": value}}))
    code = run_ablation(["run", "--config", str(path), "--out", str(layout.out),
                         "--only", "softmax-n80"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("finished earlier, skipped") == 3 and "fitting" not in out
    report = json.loads((layout.out / "ablation.json").read_text())
    assert report["finished"] == 3 and report["planned"] == 21
    assert report["arms"]["softmax-n80"]["eval/l1_mouth"]["mean"] == pytest.approx(0.2)
    assert "| eval/l1_mouth | 0.2 ± 0.1 |" in (layout.out / "ablation.md").read_text()
    assert report["banks"] == {"kmeans": {"80": {"single_speaker_share": 0.09,
                                                 "openness_variance_explained": 0.86,
                                                 "largest_cluster_share": 0.05}}}
    assert "| kmeans | 80 | 9% | 86% | 5% |" in (layout.out / "ablation.md").read_text()
    with pytest.raises(SystemExit):
        run_ablation(["run", "--config", str(path), "--out", str(layout.out), "--only", "hard"])
    assert "matches no run" in capsys.readouterr().err


def test_eval_scores_the_fits_best_checkpoint_not_its_last(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for name, payload in (("last.ckpt", b"step 200"), ("epoch000-l1_mouth0.0685.ckpt", b"step 100")):
        (folder / name).write_bytes(payload)
        write_digest(folder / name)
    best = link_best_checkpoint(tmp_path / "run")
    assert best == tmp_path / "run" / CHECKPOINT
    assert best.read_bytes() == b"step 100" and verify_digest(best)
    (folder / "epoch001-l1_mouth0.0601.ckpt").write_bytes(b"step 200")
    best.unlink()
    with pytest.raises(JobFailed, match="exactly one top-k checkpoint.*epoch000.*epoch001"):
        link_best_checkpoint(tmp_path / "run")
