"""Ray job: entities, then relations, over an articles table in one submission.

Runs ``biobert-ray annotate ner`` with the NER models, then ``biobert-ray annotate re`` with the relation
models over the entities just written (each articles shard with its entities shard; both resumable).
Submit to a cluster, through the SSH tunnel of ``ray dashboard cluster.yaml``::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/extract.py --articles s3://my-bucket/articles \\
            --ner-model s3://my-bucket/models/ner-chem-disease --re-model s3://my-bucket/models/re-cid \\
            --entities s3://my-bucket/entities --relations s3://my-bucket/relations --num-actors 8 --use-gpu

Other options go to the step whose task has them (``--keep-negative``, ``--min-score``, ``--arg-types``,
... to relation extraction), and the options of annotation itself (``--num-actors``, ``--use-gpu``,
``--cpus-per-actor``, ``--batch-size``, ...) to both; the exit status is the first failing step's, or 0.
"""

import argparse
import dataclasses
import sys

from biobert_ray import tasks
from biobert_ray.cli import main


def _task_flags(task: str) -> set[str]:
    """The command-line flags of ``task``'s annotation options."""
    fields = dataclasses.fields(tasks.task_class(task).Options)
    return {"--" + f.name.replace("_", "-") for f in fields if "annotate" in f.metadata.get("commands", ())}


def _route(extra: list[str]) -> tuple[list[str], list[str]]:
    """``(ner arguments, re arguments)``: each option of ``extra``, with its values, to its step(s)."""
    ner_only, re_only = _task_flags("ner"), _task_flags("re")
    ner, relations, target = [], [], (None, None)
    for token in extra:
        if token.startswith("--"):
            flag = token.split("=", 1)[0]
            target = (ner if flag not in re_only else None, relations if flag not in ner_only else None)
        for side in target:
            if side is not None:
                side.append(token)
    return ner, relations


def steps(argv: list[str]) -> list[list[str]]:
    """The two ``biobert-ray`` command lines of the job's arguments ``argv``."""
    parser = argparse.ArgumentParser(prog="extract.py", description=__doc__.splitlines()[0])
    parser.add_argument("--articles", required=True, help="articles table (ingest's output)")
    parser.add_argument("--ner-model", action="append", required=True, help="NER model (repeatable)")
    parser.add_argument("--re-model", action="append", required=True, help="relation model (repeatable)")
    parser.add_argument("--entities", required=True, help="entities table to write")
    parser.add_argument("--relations", required=True, help="relations table to write")
    args, extra = parser.parse_known_args(argv)
    ner_extra, re_extra = _route(extra)
    ner = ["annotate", "ner", "--articles", args.articles, "--out", args.entities]
    ner += [flag for model in args.ner_model for flag in ("--model", model)]
    relations = ["annotate", "re", "--articles", args.articles, "--entities", args.entities]
    relations += ["--out", args.relations, *[flag for model in args.re_model for flag in ("--model", model)]]
    return [[*ner, *ner_extra], [*relations, *re_extra]]


if __name__ == "__main__":
    for step in steps(sys.argv[1:]):
        status = main(step)
        if status:
            sys.exit(status)
