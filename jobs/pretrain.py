"""Ray job: masked-LM pretraining of a BERT on an ``articles`` table (see ``biobert_ray.pretrain``).

Submit to a cluster, through the SSH tunnel of ``ray dashboard cluster.yaml`` (port 8265 is never opened)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/pretrain.py --corpus s3://my-bucket/articles --base-model bert-base-cased \\
        --num-workers 8 --use-gpu --max-steps 200000 --seq-len 128 --global-batch 256 \\
        --out s3://my-bucket/models/biobert-mine

After a crash or a pre-empted node, submit the same command with ``--resume``: it continues from the
run's last checkpoint. Every option of ``biobert-ray pretrain`` is accepted; the exit status is 1 when
training failed after its retries, 2 on bad options.
"""

import sys

from biobert_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
