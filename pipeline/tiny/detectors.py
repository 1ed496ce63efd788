"""Tiny random-weight OWLv2 (≈1.6 M params) and Grounding DINO (≈0.4 M params) saved as HF model dirs.

Both reload through ``AutoProcessor`` / ``AutoModelForZeroShotObjectDetection.from_pretrained`` exactly
like the real checkpoints.  OWLv2 gets the real CLIP tokenizer (open_clip ships its BPE merges);
Grounding DINO gets a BERT WordPiece vocab of a few whole words (everything else is ``[UNK]``)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

# Words the Grounding DINO tokenizer knows; tests should phrase queries with these.
GDINO_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "red", "circle", "stop", "sign", "drone",
               "blue", "square"]


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_clip_vocab(out_dir: Path) -> Path:
    """vocab.json + merges.txt for ``CLIPTokenizer`` from open_clip's bundled BPE file (same ids as CLIP)."""
    import open_clip
    gz = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(gz).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in lines]
    vocab = list(_bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return out_dir


# OWLv2 sizes: "tiny" for tests; "tiny-960" the same at the real input size (its image processor pads and
# resizes to 960 x 960 exactly as the real one's does; 32 px patches keep the forward pass small);
# "base" is google/owlv2-base-patch16-ensemble's published shape (random weights: for speed measurements only).
_TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
_TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
OWLV2_SHAPES = {
    "tiny": dict(text=_TINY_TEXT, vision=dict(_TINY_VISION, image_size=64, patch_size=16), projection_dim=32),
    "tiny-960": dict(text=_TINY_TEXT, vision=dict(_TINY_VISION, image_size=960, patch_size=32), projection_dim=32),
    "base": dict(text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
                 vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                             image_size=960, patch_size=16),
                 projection_dim=512),
}


def build_owlv2(out_dir: Path, seed: int = 0, shape: str = "tiny") -> Path:
    import torch
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    # CLIPTokenizer(vocab_file=...) silently ignores the files in transformers 5: load from the dir.
    tok = CLIPTokenizer.from_pretrained(write_clip_vocab(out_dir / "_clip_vocab"), pad_token="!")
    sh = OWLV2_SHAPES[shape]
    side = sh["vision"]["image_size"]
    cfg = Owlv2Config(text_config=dict(vocab_size=len(tok), max_position_embeddings=16, **sh["text"]),
                      vision_config=sh["vision"], projection_dim=sh["projection_dim"])
    Owlv2ForObjectDetection(cfg).save_pretrained(out_dir)
    Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": side, "width": side}),
                   tokenizer=tok).save_pretrained(out_dir)
    return out_dir


def build_grounding_dino(out_dir: Path, seed: int = 0, max_text_len: int = 32) -> Path:
    import torch
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    vocab_dir = out_dir / "_bert_vocab"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    (vocab_dir / "vocab.txt").write_text("\n".join(GDINO_WORDS) + "\n")
    tok = BertTokenizer.from_pretrained(vocab_dir)  # BertTokenizer(vocab_file=...) gives all [UNK]
    cfg = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                             window_size=4, image_size=64, out_indices=[2, 3, 4]),
        text_config=dict(model_type="bert", vocab_size=len(GDINO_WORDS), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20, max_text_len=max_text_len,
        num_feature_levels=4, encoder_n_points=2, decoder_n_points=2)
    GroundingDinoForObjectDetection(cfg).save_pretrained(out_dir)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
                           tokenizer=tok).save_pretrained(out_dir)
    return out_dir
