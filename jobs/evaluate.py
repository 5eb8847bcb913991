"""Ray job: score a fine-tuned model with its task's official metric (see ``biobert_ray.evaluation``).

Submit to a cluster (the head's dashboard address, port 8265 by default)::

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python jobs/evaluate.py ner --model s3://my-bucket/models/ner-disease \\
            --data s3://my-bucket/ncbi_disease/test.tsv --out s3://my-bucket/scores/ner-disease-test.json

Every option of ``biobert-ray evaluate`` is accepted.
"""

import sys

from biobert_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
