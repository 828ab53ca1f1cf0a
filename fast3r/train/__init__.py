"""Training Fast3R: the release's loss, AdamW with warm-up + cosine, a resumable trainer (single GPU,
DDP or FSDP2 under torchrun), held-out pose evaluation and training curves.

    from fast3r.train.config import load_train_config
    from fast3r.train.trainer import train
    result = train(load_train_config("configs/small_synthetic_224.toml"))
"""
