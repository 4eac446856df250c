"""LDA, the latent dynamics action model, and what trains it.

config.py     LDAConfig and the presets (tiny, lda-0.5b, lda-1b, lda-dit), and the data rates they imply
lda.py        the network: MM-DiT (or single-stream DiT) flow matching over action and DINO-feature tokens
encoders.py   the frozen DINOv3 and Qwen3-VL encoders (pretrained from a path or hub id, or tiny and random)
cache.py      encoder features on disk, one file per dataset, encoder and episode
data.py       training samples from LeRobot episodes, normalisation, data roles per episode quality
train.py      training and finetuning: single process, torchrun (DDP/FSDP) or Slurm via submitit
synthetic.py  a small synthetic GR1 dataset that a CPU can learn from
prove_learning.py, bench.py   the learning proof and `lda-bench bench model`
"""
