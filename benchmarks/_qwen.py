"""Random-weight Qwen2.5-VL model dirs with the PUBLISHED architecture shape, for speed benchmarks.

``3b``  = Qwen/Qwen2.5-VL-3B-Instruct's config.json (text: vocab 151936, hidden 2048, 36 layers,
          16 heads / 2 KV heads, intermediate 11008, tied embeddings, mrope [16, 24, 24], rope_theta 1e6;
          vision: depth 32, hidden 1280, intermediate 3420, 16 heads, out_hidden 2048, patch 14,
          merge 2, temporal patch 2, window 112, full-attention blocks 7/15/23/31).
``tiny`` = the 0.2 M-parameter test model of pipeline/tiny/qwen.py (for ``--quick`` sanity runs only).

The tokenizer is a small byte-level BPE trained locally (pipeline/tiny/tokenizers.py) with Qwen's special
tokens; the model keeps the published vocab_size (token ids only select embedding rows, so compute is
unchanged).  Special-token ids in the config are the local tokenizer's ids, not 151643+.  The chat
template mirrors Qwen2.5-VL's (default system prompt included) so prompt lengths are realistic.

The 3b dir is built ONCE in a child process (bf16 safetensors, ~7.5 GB) under
``~/.cache/label-factory-bench/`` and then loaded through the production loader
(``TransformersVLM`` -> ``AutoModelForImageTextToText.from_pretrained``).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import CACHE, log  # noqa: E402

BUILD_VERSION = 2
SYSTEM_PROMPT = "You are a helpful assistant."
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] in ('image', 'image_url') %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# Qwen/Qwen2.5-VL-3B-Instruct config.json (+ the vision defaults it relies on)
QWEN25_VL_3B = {
    "text": dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                 num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
                 rms_norm_eps=1e-6, hidden_act="silu", sliding_window=32768, use_sliding_window=False,
                 max_window_layers=70,
                 rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6}),
    "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                   patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                   fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, hidden_act="silu"),
    "tie_word_embeddings": True,
}
# the tiny test model's shape (pipeline/tiny/qwen.py), not a published architecture
TINY = {
    "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=2048,
                 rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4}),
    "vision": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                   window_size=56, fullatt_block_indexes=[1]),
    "tie_word_embeddings": False,
}
ARCHS = {"3b": QWEN25_VL_3B, "tiny": TINY}
ARCH_NAMES = {"3b": "Qwen2.5-VL-3B-Instruct (published shape, random weights)",
              "tiny": "tiny test Qwen2.5-VL (0.2 M params, NOT a published shape; sanity only)"}


def model_dir(arch: str, max_pixels: int) -> Path:
    return CACHE / f"qwen2.5-vl-{arch}-random-maxpx{max_pixels}-v{BUILD_VERSION}"


def _build(arch: str, out: Path, max_pixels: int, seed: int = 0) -> None:
    import torch
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from pipeline.tiny.qwen import SPECIALS
    from pipeline.tiny.tokenizers import CORPUS, byte_bpe

    spec = ARCHS[arch]
    torch.manual_seed(seed)
    bpe = byte_bpe(SPECIALS, corpus=CORPUS + [SYSTEM_PROMPT] * 20)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", chat_template=QWEN_CHAT_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    proc = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels, patch_size=14,
                                              merge_size=2, temporal_patch_size=2),
        tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_CHAT_TEMPLATE)
    text = {"vocab_size": len(tok), **spec["text"],
            "eos_token_id": ids("<|im_end|>"), "pad_token_id": ids("<|endoftext|>"), "bos_token_id": None}
    assert text["vocab_size"] >= len(tok)
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=spec["vision"],
                           tie_word_embeddings=spec["tie_word_embeddings"],
                           image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                           vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    t0 = time.perf_counter()
    dtype = torch.bfloat16 if arch != "tiny" else torch.float32
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build straight in bf16: half the memory and disk of fp32
    try:
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(prev)
    n = sum(p.numel() for p in model.parameters())
    log(f"built {arch} ({n / 1e9:.3f} B params) in {time.perf_counter() - t0:.0f} s; saving to {out}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size="2GB")
    proc.save_pretrained(out)
    (out / "bench_build.json").write_text(json.dumps({"arch": arch, "params": n, "max_pixels": max_pixels,
                                                      "dtype": str(dtype), "version": BUILD_VERSION}))


def ensure(arch: str, max_pixels: int) -> Path:
    """The cached model dir, built in a child process if absent (so its memory never counts here)."""
    out = model_dir(arch, max_pixels)
    if (out / "bench_build.json").exists():
        return out
    log(f"building random-weight {arch} model dir once (cached at {out}) ...")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(Path(__file__).resolve()), arch, str(max_pixels), str(out)], check=True)
    log(f"model dir ready in {time.perf_counter() - t0:.0f} s")
    return out


def build_info(path: Path) -> dict:
    return json.loads((Path(path) / "bench_build.json").read_text())


def mlx_dir(arch: str, max_pixels: int) -> Path:
    """A copy of the model dir with config.json flattened for mlx-vlm 0.7.x (pipeline.tiny.qwen.mlx_copy)."""
    from pipeline.tiny.qwen import mlx_copy
    src = ensure(arch, max_pixels)
    out = src.with_name(src.name + "-mlx")
    if not (out / "bench_build.json").exists():
        mlx_copy(src, out)
    return out


if __name__ == "__main__":
    _build(sys.argv[1], Path(sys.argv[3]), int(sys.argv[2]))
