"""Ray job: score a fine-tuned model with its task's official metric (see ``biobert_ray.evaluation``).

Submit to a cluster, through the SSH tunnel of ``ray dashboard cluster.yaml`` (port 8265 is never opened)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/evaluate.py ner --model s3://my-bucket/models/ner-disease \\
            --data s3://my-bucket/ncbi_disease/test.tsv --out s3://my-bucket/scores/ner-disease-test.json

Every option of ``biobert-ray evaluate`` is accepted.
"""

import sys

from biobert_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
