"""The pipeline stages (ingest, curate, views, pretrain, finetune, evaluate), each runnable as ``python -m stages.<name>``, and ``stages.common``, the contracts they share."""
