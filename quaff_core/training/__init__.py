"""Training: `train` (`train`), making the model to train (`prepare`), the HF trainer subclass
(`trainer`), DPO (`dpo`), data parallel (`ddp`), callbacks and events, ETA, checkpoints, the
resolved runtime (`runtime`) and the outlier-stability probe (`stability`).
"""
