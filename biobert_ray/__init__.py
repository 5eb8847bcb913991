"""biobert_ray: BioBERT as a distributed batch system on Ray.

Ingest PubMed into Parquet, pretrain and fine-tune BERT models with Ray Train, annotate whole
corpora with Ray Data, and query the resulting tables with polars.
"""

__version__ = "0.1.0"
