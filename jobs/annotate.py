"""Ray job: run fine-tuned models over an articles table with Ray Data (see ``biobert_ray.pipeline``).

Submit to a cluster, through the SSH tunnel of ``ray dashboard cluster.yaml`` (port 8265 is never opened)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/annotate.py ner --articles s3://my-bucket/articles \\
            --model s3://my-bucket/models/ner-disease --model s3://my-bucket/models/ner-chem \\
            --num-actors 8 --use-gpu --out s3://my-bucket/entities

Every option of ``biobert-ray annotate`` is accepted.
"""

import sys

from biobert_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["annotate", *sys.argv[1:]]))
