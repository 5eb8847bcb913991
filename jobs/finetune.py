"""Ray job: fine-tune a task head with Ray Train (see ``biobert_ray.train``).

Submit to a cluster, through the SSH tunnel of ``ray dashboard cluster.yaml`` (port 8265 is never opened)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/finetune.py ner --entity-type Disease \\
            --train s3://my-bucket/ncbi_disease/train.tsv --dev s3://my-bucket/ncbi_disease/devel.tsv \\
            --base-model dmis-lab/biobert-base-cased-v1.2 --num-workers 4 --use-gpu \\
            --out s3://my-bucket/models/ner-disease

Every option of ``biobert-ray finetune`` is accepted.
"""

import sys

from biobert_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
