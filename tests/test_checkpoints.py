"""Restoring from checkpoints: unloadable ones are skipped for the next older one, state files load
with ``weights_only=True`` (a pickle that would run code is refused, never run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import ray.train
import torch
from conftest import SAMPLES

from biobert_ray import finetune, storage
from biobert_ray.config import FinetuneConfig
from biobert_ray.tasks.ner import NerOptions, NerTask
from biobert_ray.training import checkpoints, raytrain

NCBI = SAMPLES / "ncbi_disease"

DISEASE = NerOptions(entity_type="Disease")


def finetune_config(tiny_bert: str, out: Path, **kw) -> FinetuneConfig:
    """1 worker, 200 sentences of 32 tokens: 13 steps per epoch."""
    settings = {
        "base_model": tiny_bert, "train": str(NCBI / "train.tsv.gz"), "dev": str(NCBI / "devel.tsv.gz"),
        "out": str(out), "num_workers": 1, "cpus_per_worker": 0.5,
        "batch_size": 16, "max_train_samples": 200, "max_eval_samples": 20, "max_seq_length": 32,
        "learning_rate": 1e-3, "max_failures": 0, **kw,
    }  # fmt: skip
    return FinetuneConfig(**settings)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def checkpoint_dirs(run_dir: str) -> list[str]:
    fs, path = storage.filesystem(run_dir)
    names = [storage.basename(p) for p in fs.ls(path, detail=False) if fs.isdir(p)]
    return sorted(name for name in names if name.startswith("checkpoint_"))


def latest_checkpoint(run_dir: Path) -> Path:
    """The directory of the run's latest registered checkpoint."""
    return Path(ray.train.Result.from_path(str(run_dir)).checkpoint.path)


class RunsCode:
    """Unpickling this writes a file: what a state file planted in the checkpoint storage could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


# -- the shared helper, on local directories ---------------------------------------------------------


def make_checkpoints(run_uri: str, contents: dict[str, str]) -> None:
    fs, path = storage.filesystem(run_uri)
    for name, value in contents.items():
        fs.makedirs(f"{path}/{name}", exist_ok=True)
        fs.pipe(f"{path}/{name}/value.json", value.encode())


def read_value(directory: Path) -> int:
    return json.loads((directory / "value.json").read_text())["step"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_restore_skips_checkpoints_that_do_not_load_newest_first(where, tmp_path, request):
    run_uri = f"{request.getfixturevalue('s3_bucket')}/run" if where == "s3" else str(tmp_path / "run")
    make_checkpoints(
        run_uri,
        {
            "checkpoint_00000002": '{"step": 2}',
            "checkpoint_00000004": '{"step": 4}',
            "checkpoint_00000006": '{"step": ',  # truncated
            # an upload Ray Train never registered: newer than the latest registered checkpoint
            "checkpoint_00000008": '{"step": 8}',
            "checkpoint_00000006_1": "garbage",
            "other": '{"step": 99}',
        },
    )
    path, filesystem = raytrain.storage_for(run_uri)  # how Ray Train's storage sees the run directory

    def checkpoint(name: str) -> ray.train.Checkpoint:
        return ray.train.Checkpoint(f"{path}/{name}", filesystem=filesystem)

    lines: list[str] = []
    restored = checkpoints.restore_latest_loadable(
        checkpoint("checkpoint_00000006_1"), read_value, log=lines.append
    )
    assert restored.value == 4 and restored.name == "checkpoint_00000004"
    assert restored.skipped == ("checkpoint_00000006_1", "checkpoint_00000006")
    assert len(lines) == 2 and all(line.endswith("; resuming from checkpoint_00000004") for line in lines)
    assert lines[0].startswith(f"checkpoint checkpoint_00000006_1 of {path} failed to load (JSONDecodeError")
    # a step checkpointed again after the fallback gets a directory of its own, sorting after the old one
    assert (
        checkpoints.unused_checkpoint_name("checkpoint_00000006", restored.skipped) == "checkpoint_00000006_2"
    )
    assert (
        checkpoints.unused_checkpoint_name("checkpoint_00000010", restored.skipped) == "checkpoint_00000010"
    )

    assert checkpoints.restore_latest_loadable(None, read_value) is None
    storage.remove(f"{run_uri}/checkpoint_00000002/value.json")
    with pytest.raises(
        checkpoints.CheckpointLoadError, match=r"no checkpoint of .* loads: checkpoint_00000002 \("
    ):
        checkpoints.restore_latest_loadable(checkpoint("checkpoint_00000002"), read_value)


def test_a_state_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"optimizer": RunsCode(marker), "epoch": 0}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match=r"state\.pt holds more than tensors and plain data, refused"):
        checkpoints.load_torch_state(tmp_path / "state.pt")
    assert not marker.exists()
    torch.save({"optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}}, "epoch": 1}, tmp_path / "ok.pt")
    assert checkpoints.load_torch_state(tmp_path / "ok.pt")["epoch"] == 1


# -- fine-tuning on Ray Train ------------------------------------------------------------------------


@pytest.mark.timeout(420)
def test_rerun_resumes_from_the_newest_safe_checkpoint_trains_nothing_once_exported_change_starts_anew(
    ray_local, tiny_bert, tmp_path
):
    """The same command after a crash resumes its run from the newest checkpoint that loads (a state
    file that would run code is refused, never run); once its model is exported, the same command
    trains nothing; a changed setting is a new run."""
    out, marker = tmp_path / "model", tmp_path / "ran"
    first = finetune.finetune("ner", finetune_config(tiny_bert, out, epochs=2), DISEASE, log=lambda *_: None)
    assert first["resumed_from_epoch"] is None
    run_dir = tmp_path / "model.checkpoints" / first["run_name"]
    # a crash after epoch 1's checkpoint, before the export; that checkpoint's state file replaced by a
    # pickle that runs code
    shutil.rmtree(out)
    state_file = latest_checkpoint(run_dir) / checkpoints.OPTIMIZER_FILE
    state = torch.load(state_file, weights_only=True)
    torch.save({**state, "scheduler": RunsCode(marker)}, state_file)

    # the same command again: it refuses epoch 1's checkpoint, resumes from epoch 0's and says so
    error, again, said = None, {}, []
    try:
        again = finetune.finetune("ner", finetune_config(tiny_bert, out, epochs=2), DISEASE, log=said.append)
    except ray.train.TrainingFailedError as exc:
        error = exc
    assert not marker.exists(), "resuming ran the code pickled in the state file"
    assert error is None, error
    assert again["run_name"] == first["run_name"] and again["resumed_from_epoch"] == 1
    assert any(
        "checkpoint_epoch_0001" in line
        and "failed to load" in line
        and "resuming from checkpoint_epoch_0000" in line
        for line in said
    ), said
    names = checkpoint_dirs(str(run_dir))
    assert names == ["checkpoint_epoch_0000", "checkpoint_epoch_0001"]
    # epoch 1 was trained again into its directory: every checkpoint of the run loads now
    for name in names:
        state, _, _ = checkpoints.load(run_dir / name, NerTask.model_class, ("step", "epoch"))
        assert state["epoch"] == int(name[-4:])
    assert (out / "model.safetensors").exists() and again["best_epoch"] in (0, 1)

    # exported: the same command returns the model's metadata and trains nothing
    said = []
    done = finetune.finetune("ner", finetune_config(tiny_bert, out, epochs=2), DISEASE, log=said.append)
    assert done["run_name"] == again["run_name"] and done["trained_at"] == again["trained_at"]
    assert said == [f"finetune ner: {out} was exported by this run ({again['run_name']}); nothing to train"]
    assert checkpoint_dirs(str(run_dir)) == names

    # a changed setting: a new run, from the base model, over the same output
    changed = finetune.finetune(
        "ner", finetune_config(tiny_bert, out, epochs=1), DISEASE, log=lambda *_: None
    )
    assert changed["run_name"] != first["run_name"] and changed["resumed_from_epoch"] is None
    assert storage.read_json(str(out / "biobert_ray.json"))["run_name"] == changed["run_name"]


# -- pretraining on Ray Train ------------------------------------------------------------------------
