"""The frozen encoders the models read the world through: DINOv3 patch features, an SDXL-style VAE's latents
(UWM's frames) and Qwen3-VL tokens.

Each loads from a local path or a hub id (`from_pretrained`), or is built tiny and random in code
(`tiny`), which is what tests and the CPU learning proof use: no weights can be downloaded on the machines
this project is built on. Each encoder says how to rebuild itself (`spec`) and names its outputs for the
feature cache (`encoder_id`). They are frozen (eval mode, no gradients) in pretraining; finetuning may
`unfreeze` them, after which they are `finetuned`: their weights are no longer their source's, so their
outputs get a new name and checkpoints carry their weights.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VISION_START, VISION_END, IMAGE_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"
TINY_SPECIALS = ("<|endoftext|>", VISION_START, VISION_END, IMAGE_PAD, "<|video_pad|>")


def _weights_hash(module: nn.Module) -> str:
    digest = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:10]


def as_image_batch(images: Any) -> torch.Tensor:
    """uint8 images (N, H, W, 3) (array or tensor) -> float (N, 3, H, W) in [0, 1]."""
    images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if images.ndim == 3:
        images = images[None]
    return images.permute(0, 3, 1, 2).float() / 255.0


class FrozenEncoder(nn.Module):
    """What the feature cache, training and the policy need from an encoder."""

    kind: str = ""

    def __init__(self, source: str | None):
        super().__init__()
        self.source = source
        self.finetuned = False  # weights changed from the source's (unfrozen, or loaded from a finetuned checkpoint)

    @property
    def encoder_id(self) -> str:
        """Names this encoder's outputs, so that cached features are reused only for the very same weights:
        the source for its published weights, a weight hash for random or finetuned ones."""
        if not self.source:
            return f"{self.kind}:random-{_weights_hash(self)}"
        return f"{self.kind}:{self.source}" + (f"+finetuned-{_weights_hash(self)}" if self.finetuned else "")

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def freeze(self) -> FrozenEncoder:
        self.requires_grad_(False)
        return self.eval()

    def unfreeze(self) -> FrozenEncoder:
        self.finetuned = True
        self.requires_grad_(True)
        return self.train()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class DinoEncoder(FrozenEncoder):
    """DINOv3 ViT patch features: (N, grid*grid, hidden), 14 x 14 x 384 for ViT-S/16 at 224 px.

    The CLS and register tokens are dropped: the visual stream predicts and reads spatial patches only.
    """

    kind = "dinov3"

    def __init__(self, model, source: str | None = None):
        super().__init__(source)
        self.model = model
        config = model.config
        self.image_size = int(config.image_size)
        self.grid = self.image_size // int(config.patch_size)
        self.dim = int(config.hidden_size)
        self.skip = 1 + int(config.num_register_tokens)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    @classmethod
    def from_pretrained(cls, source: str, **kwargs) -> DinoEncoder:
        """DINOv3 weights from a hub id or folder. A folder that `model/vision.py` pretrained here has no
        published source to reload from: like a random encoder, it is named by its weights and travels
        inside the checkpoints trained on it."""
        from transformers import DINOv3ViTModel

        from model.vision import is_pretrained_here

        return cls(DINOv3ViTModel.from_pretrained(source, **kwargs), None if is_pretrained_here(source) else source)

    @classmethod
    def tiny(cls, image_size: int = 64, seed: int = 0) -> DinoEncoder:
        """A 2-layer random DINOv3 (16 px patches, width 32, 4 registers) for tests and CPU runs."""
        from transformers import DINOv3ViTConfig, DINOv3ViTModel

        config = DINOv3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 image_size=image_size, patch_size=16, num_register_tokens=4)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return cls(DINOv3ViTModel(config))

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "config": self.model.config.to_dict()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], **load_kwargs) -> DinoEncoder:
        if spec.get("source"):
            return cls.from_pretrained(spec["source"], **load_kwargs)
        # random or pretrained here: the architecture from its config, the weights from the checkpoint
        from transformers import DINOv3ViTConfig, DINOv3ViTModel

        return cls(DINOv3ViTModel(DINOv3ViTConfig.from_dict(spec["config"])))

    def encode(self, images: Any) -> torch.Tensor:
        """uint8 (N, H, W, 3) images -> float (N, grid*grid, dim) patch features, resized to image_size."""
        x = as_image_batch(images).to(self.device)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        x = ((x - self.mean) / self.std).to(next(self.model.parameters()).dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.training):
            hidden = self.model(pixel_values=x).last_hidden_state
        return hidden[:, self.skip:].float()


class VAEEncoder(FrozenEncoder):
    """An SDXL-style VAE's latents (diffusers' `AutoencoderKL`): (N, grid*grid, channels), the posterior's mean
    times the VAE's scaling factor, 28 x 28 x 4 for SDXL's VAE (`stabilityai/sdxl-vae`) at 224 px. UWM reads
    the current frames' latents and predicts the future frame's.

    Frames are resized to `image_size` and scaled to [-1, 1], as the VAE was trained. The mean, not a draw
    from the posterior (upstream UWM draws one per step), so that each frame is encoded once into the cache.
    """

    kind = "vae"

    def __init__(self, model, source: str | None = None, image_size: int = 224):
        super().__init__(source)
        self.model = model
        config = model.config
        self.image_size = image_size
        self.grid = image_size // 2 ** (len(config.block_out_channels) - 1)
        self.dim = int(config.latent_channels)
        self.scaling_factor = float(config.scaling_factor)
        self.freeze()

    @property
    def encoder_id(self) -> str:
        """As every encoder's, and the resolution: one VAE gives other latents at another size."""
        return f"{super().encoder_id}@{self.image_size}px"

    @classmethod
    def from_pretrained(cls, source: str, image_size: int = 224, **kwargs) -> VAEEncoder:
        from diffusers import AutoencoderKL

        return cls(AutoencoderKL.from_pretrained(source, **kwargs), source, image_size)

    @classmethod
    def tiny(cls, image_size: int = 64, seed: int = 0) -> VAEEncoder:
        """A random VAE shaped like SDXL's (4 levels: 8x downsampling, 4 latent channels, its scaling factor
        0.13025), 8 to 16 channels wide, for tests and CPU runs."""
        from diffusers import AutoencoderKL

        levels = 4
        config = dict(block_out_channels=(8, 8, 16, 16), down_block_types=("DownEncoderBlock2D",) * levels,
                      up_block_types=("UpDecoderBlock2D",) * levels, layers_per_block=1, latent_channels=4,
                      norm_num_groups=4, sample_size=image_size, scaling_factor=0.13025)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return cls(AutoencoderKL(**config), image_size=image_size)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "image_size": self.image_size,
                "config": dict(self.model.config)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], **load_kwargs) -> VAEEncoder:
        if spec.get("source"):
            return cls.from_pretrained(spec["source"], spec["image_size"], **load_kwargs)
        from diffusers import AutoencoderKL

        return cls(AutoencoderKL.from_config(spec["config"]), image_size=spec["image_size"])

    def encode(self, images: Any) -> torch.Tensor:
        """uint8 (N, H, W, 3) images -> float (N, grid*grid, channels) latents, row-major over the grid."""
        x = as_image_batch(images).to(self.device)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        x = (2 * x - 1).to(next(self.model.parameters()).dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.training):
            latents = self.model.encode(x).latent_dist.mode() * self.scaling_factor
        return latents.permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.dim).float()


# The encoders a family's frames can go through, by `kind` (a config's `frame_encoder`).
FRAME_ENCODERS: dict[str, type[FrozenEncoder]] = {DinoEncoder.kind: DinoEncoder, VAEEncoder.kind: VAEEncoder}


class VLMEncoder(FrozenEncoder):
    """Qwen3-VL last hidden states of the current image and the instruction: (N, L, hidden) and a mask.

    The prompt is the image's placeholder tokens followed by the instruction (wrapped in the tokenizer's chat
    template when it has one), built here rather than by Qwen3-VL's processor class, which needs torchvision
    for its video half; the image processor and the tokenizer are what it would use.
    """

    kind = "qwen3-vl"

    def __init__(self, model, tokenizer, image_processor, source: str | None = None, image_size: int = 224):
        super().__init__(source)
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_size = image_size
        self.dim = int(model.config.text_config.hidden_size)
        self.image_token_id = int(model.config.image_token_id)
        self.freeze()

    @classmethod
    def from_pretrained(cls, source: str, image_size: int = 224, **kwargs) -> VLMEncoder:
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen3VLForConditionalGeneration

        model = Qwen3VLForConditionalGeneration.from_pretrained(source, **kwargs)
        return cls(model, AutoTokenizer.from_pretrained(source), AutoImageProcessor.from_pretrained(source),
                   source, image_size)

    @classmethod
    def tiny(cls, image_size: int = 64, seed: int = 0) -> VLMEncoder:
        """A 2-layer random Qwen3-VL (width 32) with a byte-level tokenizer built in code."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast, Qwen3VLConfig, Qwen3VLForConditionalGeneration
        try:  # transformers >= 5 without torchvision: the PIL backend
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import \
                Qwen2VLImageProcessorPil as ImageProcessor
        except ImportError:
            from transformers import Qwen2VLImageProcessor as ImageProcessor

        # sorted: the alphabet comes in a different order on each call, and with it the ids of the text
        vocab = {token: i for i, token in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
        vocab.update({token: len(vocab) + i for i, token in enumerate(TINY_SPECIALS)})
        backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=TINY_SPECIALS[0],
                                            additional_special_tokens=list(TINY_SPECIALS[1:]))
        image_processor = ImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2,
                                                   min_pixels=32 * 32, max_pixels=image_size * image_size)
        config = Qwen3VLConfig(
            text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                             # the same rotary set-up in the keys transformers 4.57 reads
                             rope_theta=10000.0, rope_scaling={"rope_type": "default", "mrope_section": [2, 1, 1]}),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32,
                               patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                               num_position_embeddings=(image_size // 16) ** 2, deepstack_visual_indexes=[0]),
            image_token_id=vocab[IMAGE_PAD], video_token_id=vocab["<|video_pad|>"],
            vision_start_token_id=vocab[VISION_START], vision_end_token_id=vocab[VISION_END])
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return cls(Qwen3VLForConditionalGeneration(config), tokenizer, image_processor, image_size=image_size)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "image_size": self.image_size}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], **load_kwargs) -> VLMEncoder:
        if spec.get("source"):
            return cls.from_pretrained(spec["source"], spec.get("image_size", 224), **load_kwargs)
        return cls.tiny(int(spec["image_size"]))

    def unfreeze(self) -> VLMEncoder:
        """Trains what `encode` runs; the language-model head, which it never reads, stays frozen (a weight
        tied to the input embeddings trains with them)."""
        super().unfreeze()
        self.requires_grad_(False)
        self.model.model.requires_grad_(True)
        return self

    def layers(self) -> list[nn.Module]:
        """The vision and language transformer blocks: the units a sharded (FSDP) run wraps one by one."""
        names = set(self.model._no_split_modules or ())
        return [module for module in self.model.modules() if type(module).__name__ in names]

    def _prompt(self, instruction: str, image_tokens: int) -> str:
        placeholder = VISION_START + IMAGE_PAD + VISION_END
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = placeholder + instruction
        return text.replace(IMAGE_PAD, IMAGE_PAD * image_tokens, 1)

    def encode(self, images: Any, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, H, W, 3) images and N instructions -> tokens (N, L, dim) float and mask (N, L) bool."""
        x = as_image_batch(images).cpu()  # the image processor reads CPU arrays; resized there, as when cached
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        pixels = (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        vision = self.image_processor(images=list(pixels), return_tensors="pt")
        merge = int(self.model.config.vision_config.spatial_merge_size) ** 2
        counts = (vision["image_grid_thw"].prod(dim=1) // merge).tolist()
        texts = [self._prompt(text, count) for text, count in zip(instructions, counts)]
        tokens = self.tokenizer(texts, return_tensors="pt", padding=True)
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        inputs = dict(input_ids=ids, attention_mask=mask,
                      pixel_values=vision["pixel_values"].to(self.device, next(self.model.parameters()).dtype),
                      image_grid_thw=vision["image_grid_thw"].to(self.device))
        if _accepts(self.model.model.forward, "mm_token_type_ids"):  # transformers >= 5 computes M-RoPE from it
            inputs["mm_token_type_ids"] = (ids == self.image_token_id).int()
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.training):
            hidden = self.model.model(**inputs).last_hidden_state
        return hidden.float(), mask.bool()


def _accepts(function, name: str) -> bool:
    return name in inspect.signature(function).parameters


def build_encoders(specs: dict[str, dict[str, Any]], state: dict[str, dict] | None = None,
                   **load_kwargs) -> tuple[DinoEncoder | VAEEncoder, VLMEncoder]:
    """Rebuild the encoders a checkpoint records: pretrained ones from their source, random (tiny) ones
    from their spec; then the weights stored beside them (random or finetuned), if any. The frame encoder
    (recorded as "dino") is of the kind its spec names: DINOv3, or UWM's VAE."""
    dino = FRAME_ENCODERS[specs["dino"].get("kind", DinoEncoder.kind)].from_spec(specs["dino"], **load_kwargs)
    vlm = VLMEncoder.from_spec(specs["vlm"], **load_kwargs)
    for name, encoder in (("dino", dino), ("vlm", vlm)):
        if state and name in state:
            encoder.load_state_dict(state[name])
            encoder.finetuned = bool(encoder.source)  # not its source's weights any more
    return dino, vlm


def encoder_state(dino: DinoEncoder | VAEEncoder, vlm: VLMEncoder, vlm_state: dict | None = None) -> dict[str, dict]:
    """The weights a checkpoint must carry: those of random encoders, which no path can reload, and of
    finetuned ones. `vlm_state` stands in for the VLM's own when its weights are sharded over ranks (FSDP)."""
    state = {name: encoder.state_dict() for name, encoder in (("dino", dino), ("vlm", vlm))
             if not encoder.source or encoder.finetuned}
    if vlm_state is not None:
        state["vlm"] = vlm_state
    return state
