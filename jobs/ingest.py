"""Ray job: MEDLINE/PubMed XML -> Parquet ``articles`` table (see ``biobert_ray.ingest``).

Submit to a cluster, through the SSH tunnel of ``ray dashboard cluster.yaml`` (port 8265 is never opened)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/ingest.py --input 's3://my-bucket/baseline/*.xml.gz' --out s3://my-bucket/articles

Every option of ``biobert-ray ingest`` is accepted; the exit status is non-zero when any input
file or record failed (the errors table and ``_run.json`` say which).
"""

import sys

from biobert_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
