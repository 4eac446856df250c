"""LDA, the latent dynamics action model, its baselines, and what trains them.

config.py     one config per family (LDAConfig, GR00TConfig, UWMConfig), every preset, and the data rates they imply
blocks.py     what every family is built from: flow matching, DDPM/DDIM, timestep embedding, attention block, AdaLN-Zero
lda.py        LDA: MM-DiT (or single-stream DiT) flow matching over action and DINO-feature tokens
gr00t.py      GR00T-N1.6's action model: a DiT over state and action tokens, cross-attending to VLM tokens
uwm.py        UWM: a diffusion transformer over action and future VAE-latent tokens, a DDPM timestep for each
encoders.py   the frozen DINOv3, VAE and Qwen3-VL encoders (pretrained from a path or hub id, or tiny and random)
cache.py      encoder features on disk, one file per dataset, encoder and episode
data.py       training samples from LeRobot episodes, normalisation, data roles per episode quality
train.py      training and finetuning: single process, torchrun (DDP/FSDP) or Slurm via submitit
synthetic.py  a small synthetic GR1 dataset that a CPU can learn from
prove_learning.py, bench.py   the learning proof and `lda-bench bench model`
"""
