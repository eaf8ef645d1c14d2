"""Scoring at survey scale: committees of networks, test-time augmentation, sharded resumable output, and
Lightning's DDP to spread the work over processes, GPUs and nodes (``lexactum predict``)."""
