"""Jobs never wait for CPUs nobody will free: reservations are sized, or refused naming the flag.

The session's Ray has 2 CPUs, as this machine: two training workers at Ray's default of one CPU each
left nothing for Ray Data, and `pretrain --num-workers 2` hung for ever. (`finetune --num-workers 2`
without a CPU flag runs in tests/test_console.py, `pretrain` with two workers and none in
tests/test_pretrain.py.)
"""

from __future__ import annotations

import pytest
import ray

from biobert_ray import cli, resources
from biobert_ray.config import AnnotateConfig

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(300)]


def test_an_unset_reservation_shares_the_cpus_and_an_impossible_one_names_the_flag():
    said: list[str] = []
    assert resources.cpus_per_unit(None, 2, 0.5, "--cpus-per-worker", "worker", log=said.append) == 0.75
    assert "2 worker(s) x 0.75 CPUs" in said[0] and "--cpus-per-worker" in said[0]
    assert resources.cpus_per_unit(0.5, 2, 0.5, "--cpus-per-worker", "worker") == 0.5
    with pytest.raises(ValueError, match=r"set --cpus-per-worker 0\.75 or lower"):
        resources.cpus_per_unit(1.0, 2, 0.5, "--cpus-per-worker", "worker")
    with pytest.raises(ValueError, match="use fewer workers"):
        resources.cpus_per_unit(None, 8, 0.5, "--cpus-per-worker", "worker")
    assert resources.cpus_per_unit(None, 8, 0.5, "--cpus-per-worker", "worker", use_gpu=True) == 1.0


@ray.remote(num_cpus=1.5)
class Holder:
    def ready(self) -> bool:
        return True


def test_cpus_held_by_other_work_are_named_before_the_job_waits_for_them():
    holder = Holder.remote()
    try:
        ray.get(holder.ready.remote())
        said: list[str] = []
        assert resources.cpus_per_unit(None, 2, 0.5, "--cpus-per-worker", "worker", log=said.append) == 0.75
        assert said[1] == (
            "warning: 1.5 of this Ray's 2 CPUs are held by other work now; this job needs 2 and waits until "
            "they are free"
        ), said
        said.clear()
        assert resources.cpus_per_unit(0.25, 1, 0.25, "--cpus-per-worker", "worker", log=said.append) == 0.25
        assert not said, "0.5 CPUs are needed and free"
    finally:
        ray.kill(holder)


def test_annotate_with_more_actors_than_fit_is_refused(sample_articles, tiny_ner_model, tmp_path, capsys):
    code = cli.main(
        ["annotate", "ner", "--articles", sample_articles, "--model", tiny_ner_model,
         "--out", str(tmp_path / "e"), "--num-actors", "2", "--cpus-per-actor", "1"]
    )  # fmt: skip
    assert code == 2 and "--cpus-per-actor 0.75 or lower" in capsys.readouterr().err
    assert AnnotateConfig(articles="a", model=("m",), out="o").cpus_per_actor is None
