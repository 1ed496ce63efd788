"""Tiny Falcon Perception (MLX) saved as a local export dir the package's own loader reads.

Layout (same as the hub export tiiuae/Falcon-Perception*): ``config.json`` (``architectures`` +
``do_segmentation``, which ``falcon_perception._detect_variant`` reads), ``model.safetensors`` in the
PyTorch export layout (what ``falcon_perception.mlx.convert.load_mlx_weights`` converts: Conv2d OIHW;
RoPE tables are rebuilt by the model), ``tokenizer.json`` + ``tokenizer_config.json`` (read by
``falcon_perception.get_tokenizer``).

The one thing the package's loader cannot take from a directory is the architecture size: it maps the
variant to hard-coded sizes (``falcon_perception.get_model_args``).  So the tiny sizes are saved in
``tiny_model_args.json`` and tests swap that table entry with ``use_tiny_model_args(dir, monkeypatch)``;
everything else (tokenizer, variant detection, weight conversion, dtype cast) is the package's real path.

The weights are random except for a few planted ones that make greedy decoding emit exactly one box per
query (``<coord>`` then ``<size>`` then end of text): every layer's output projections are zero (layers
are identity maps), the ``<|REF_SEG|>`` embedding and the coord / size Fourier encoders point along
dims 0 / 1 / 2, and the output head maps those dims to ``<coord>`` / ``<size>`` / eos.  The box values
come from the (random) coord and size decoders.

``build(dir, segmentation=True)`` is the segmenting variant (``do_segmentation``: AnyUp upsampler, mask
projection): after ``<size>`` it emits ``<seg>`` (dim 2), whose embedding points along dim 3 -> eos, so
each query gives one box and one (random) mask.

``build(..., mixing=True)`` keeps the layers from being identity maps (small random output projections and
attention sinks): the boxes then depend on attention (its mask and sinks), for comparing two backends."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

NAMES = ["image_token", "start_of_image_token", "end_of_image_token", "image_row_sep_token", "image_cls_token",
         "image_reg_1_token", "image_reg_2_token", "image_reg_3_token", "image_reg_4_token", "seg_token",
         "coord_token", "size_token", "end_of_query_token"]
SPECIAL = {n: "<|image|>" if n == "image_token" else f"<|{n.removesuffix('_token')}|>" for n in NAMES}
SPECIAL["start_of_query_token"] = "<|start_of_query|>"
CORPUS = ["Segment these expressions in the image: red circle, blue square, stop sign, cat, dog, car, drone"] * 10

TINY = dict(max_seq_len=8192, dim=32, n_layers=2, n_heads=2, head_dim=16, n_kv_heads=1, ffn_dim=64,
            coord_enc_dim=16, coord_dec_dim=32, coord_out_dim=64, size_enc_dim=16, size_dec_dim=32,
            size_out_dim=64, perception_heads=True, do_segmentation=False)


def _tokenizer(out: Path) -> None:
    from pipeline.tiny.tokenizers import byte_bpe
    specials = ["<|pad|>", "<|end_of_text|>", "<|REF_SEG|>", *dict.fromkeys(SPECIAL.values())]
    tok = byte_bpe(specials, vocab_size=320, corpus=CORPUS)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|end_of_text|>", "pad_token": "<|pad|>", "model_specific_special_tokens": SPECIAL},
        indent=1))


def tiny_model_args(model_dir):
    from falcon_perception import ModelArgs
    return ModelArgs(**json.loads((Path(model_dir) / "tiny_model_args.json").read_text()))


def use_tiny_model_args(model_dir, monkeypatch) -> None:
    """Make the package's variant table return the tiny sizes saved in ``model_dir``."""
    import falcon_perception
    monkeypatch.setattr(falcon_perception, "get_model_args", lambda variant: tiny_model_args(model_dir))


def build(out_dir, seed: int = 0, segmentation: bool = False, mixing: bool = False) -> Path:
    import mlx.core as mx
    import numpy as np
    from falcon_perception import ModelArgs, get_tokenizer
    from falcon_perception.mlx.model import FalconPerception
    from mlx.utils import tree_flatten

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _tokenizer(out)
    ftok = get_tokenizer(str(out))
    args = ModelArgs(vocab_size=ftok._tok.get_vocab_size(), **{**TINY, "do_segmentation": segmentation})
    mx.random.seed(seed)
    model = FalconPerception(args)

    params = dict(tree_flatten(model.parameters()))
    zeros = lambda k: mx.zeros(params[k].shape)  # noqa: E731
    rng = np.random.default_rng(seed)
    for k in list(params):
        if k.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
            # identity layers: the last hidden state is the last input embedding (unless mixing)
            params[k] = mx.array(rng.normal(0, 0.2, params[k].shape).astype(np.float32)) if mixing else zeros(k)
        elif mixing and k.endswith("attention.sinks"):
            params[k] = mx.array(rng.normal(6, 1, params[k].shape).astype(np.float32))  # ~ log(#keys): matters

    def one_hot_rows(shape, rows_cols_vals):
        a = np.zeros(shape, np.float32)
        for r, c, v in rows_cols_vals:
            a[r, c] = v
        return mx.array(a)

    ref_seg = ftok.convert_tokens_to_ids("<|REF_SEG|>")
    emb = np.array(params["tok_embeddings.weight"])
    emb[ref_seg] = 0
    emb[ref_seg, 0] = 10.0
    after_size = ftok.eos_token_id
    if segmentation:  # <size> -> <seg> -> eos
        after_size = ftok.seg_token_id
        emb[ftok.seg_token_id] = 0
        emb[ftok.seg_token_id, 3] = 10.0
    params["tok_embeddings.weight"] = mx.array(emb)
    params["output.weight"] = one_hot_rows(params["output.weight"].shape, [
        (ftok.coord_token_id, 0, 1.0), (ftok.size_token_id, 1, 1.0), (after_size, 2, 1.0),
        *([(ftok.eos_token_id, 3, 1.0)] if segmentation else [])])
    for enc, dim in (("coord_encoder", 1), ("size_encoder", 2)):
        params[f"{enc}.embed.weight"] = zeros(f"{enc}.embed.weight")  # cos(0) = 1: a constant feature
        shape = params[f"{enc}.transform.weight"].shape  # (dim, feat); the cos half comes first
        params[f"{enc}.transform.weight"] = one_hot_rows(shape, [(dim, c, 1.0) for c in range(shape[1] // 2)])

    # PyTorch export layout: Conv2d OIHW, no precomputed RoPE tables.
    export = {k: (v.transpose(0, 3, 1, 2) if v.ndim == 4 else v).astype(mx.float32)
              for k, v in params.items() if k not in ("freqs_cos", "freqs_sin")}
    mx.save_safetensors(str(out / "model.safetensors"), export)
    (out / "config.json").write_text(json.dumps({
        "architectures": ["FalconPerceptionForSegmentation"], "model_type": "falcon_perception",
        "do_segmentation": args.do_segmentation}, indent=1))
    saved = {k: v for k, v in asdict(args).items() if k in ModelArgs.__dataclass_fields__}
    (out / "tiny_model_args.json").write_text(json.dumps(saved, indent=1))
    return out
