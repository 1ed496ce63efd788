"""Tiny Qwen2.5-VL (≈0.2 M params) with processor and chat template, saved as a HF model dir.

``mlx_copy`` rewrites a copy's config.json into the flat layout mlx-vlm 0.7.x reads
(it cannot parse transformers-5's nested text_config / rope_parameters)."""
import json
import math
import shutil
from pathlib import Path

from .tokenizers import byte_bpe

# plant_yes_no: the first answer token always has these logits (all others 0)
KNOWN_YES_LOGIT, KNOWN_NO_LOGIT = 2.0, 1.0
KNOWN_P_YES = 1.0 / (1.0 + math.exp(KNOWN_NO_LOGIT - KNOWN_YES_LOGIT))  # 0.7311

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] in ('image', 'image_url') %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )
    out = Path(out)
    torch.manual_seed(seed)
    tok = PreTrainedTokenizerFast(tokenizer_object=byte_bpe(SPECIALS), eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    proc = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112),
                               tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4},
                         eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"), bos_token_id=None),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           window_size=56, fullatt_block_indexes=[1]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    Qwen2_5_VLForConditionalGeneration(cfg).save_pretrained(out)
    proc.save_pretrained(out)
    return out


def mlx_copy(src: Path, out: Path) -> Path:
    """Copy a tiny HF Qwen2.5-VL dir and flatten its config.json for mlx-vlm."""
    out = Path(out)
    shutil.copytree(src, out, dirs_exist_ok=True)
    p = out / "config.json"
    c = json.loads(p.read_text())
    tc = c.pop("text_config")
    rp = tc.pop("rope_parameters", {})
    flat = {**tc, **c, "model_type": "qwen2_5_vl", "rope_theta": rp.get("rope_theta", 1e6),
            "rope_scaling": {"type": "mrope", "mrope_section": rp["mrope_section"]}}
    flat["vision_config"] = {k: v for k, v in flat["vision_config"].items() if k != "rope_parameters"}
    flat["vision_config"]["model_type"] = "qwen2_5_vl"
    p.write_text(json.dumps(flat, indent=1))
    return out


def plant_yes_no(model_dir: Path) -> None:
    """Rewrite the tiny Qwen weights so the first answer token has logits yes=2, no=1, others 0.

    Every layer's MLP and attention values are zeroed except layer 0's value bias, which the output
    projection maps to a large constant along hidden dim 0; after the final RMSNorm the last hidden
    state is 8 * e0 whatever the image and prompt, and lm_head reads it off."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    model_dir = Path(model_dir)
    path = model_dir / "model.safetensors"
    w = load_file(str(path))
    vocab = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    hidden = w["model.norm.weight"].shape[0]
    layers = sorted({k.split(".")[2] for k in w if k.startswith("model.layers.")}, key=int)
    for i in layers:
        p = f"model.layers.{i}."
        w[p + "mlp.down_proj.weight"] = np.zeros_like(w[p + "mlp.down_proj.weight"])
        w[p + "self_attn.v_proj.weight"] = np.zeros_like(w[p + "self_attn.v_proj.weight"])
        w[p + "self_attn.v_proj.bias"] = np.full_like(w[p + "self_attn.v_proj.bias"], 1.0 if i == "0" else 0.0)
        o = np.zeros_like(w[p + "self_attn.o_proj.weight"])
        if i == "0":
            o[0, :] = 10.0
        w[p + "self_attn.o_proj.weight"] = o
    w["model.norm.weight"] = np.ones_like(w["model.norm.weight"])
    head = np.zeros_like(w["lm_head.weight"])
    scale = math.sqrt(hidden)  # RMSNorm output along e0
    head[vocab["yes"], 0] = KNOWN_YES_LOGIT / scale
    head[vocab["no"], 0] = KNOWN_NO_LOGIT / scale
    w["lm_head.weight"] = head
    save_file(w, str(path), metadata={"format": "pt"})
