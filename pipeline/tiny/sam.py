"""Tiny random-weight SAM, SAM 2 and SAM 3 saved as HF model dirs (no hub): they reload through
``AutoProcessor`` / ``AutoModelForMaskGeneration.from_pretrained`` exactly like the real checkpoints.

``build_sam(dir, shape="base")`` is facebook/sam-vit-base's published shape (``SamConfig()``'s
defaults: ViT-B/16 at 1024 px, 94 M parameters), random weights: for speed measurements only."""
from __future__ import annotations

from pathlib import Path

SAM_SHAPES = {
    # (vision, prompt encoder, mask decoder, processor long side, mask long side)
    "tiny": (dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=128,
                  patch_size=16, mlp_dim=64, global_attn_indexes=[1], window_size=4, num_pos_feats=8),
             dict(hidden_size=16, image_size=128, patch_size=16, mask_input_channels=4),
             dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16),
             128, 32),
    "base": ({}, {}, {}, 1024, 256),
}


def build_sam(out_dir, seed: int = 0, shape: str = "tiny") -> Path:
    import torch
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor
    from transformers.models.sam.configuration_sam import (
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    vision, prompt, decoder, side, mask_side = SAM_SHAPES[shape]
    torch.manual_seed(seed)
    cfg = SamConfig(vision_config=SamVisionConfig(**vision), prompt_encoder_config=SamPromptEncoderConfig(**prompt),
                    mask_decoder_config=SamMaskDecoderConfig(**decoder))
    SamModel(cfg).save_pretrained(out)
    SamProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": side}, pad_size={"height": side, "width": side},
        mask_size={"longest_edge": mask_side}, mask_pad_size={"height": mask_side, "width": mask_side},
    )).save_pretrained(out)
    return out


def build_sam2(out_dir, seed: int = 0) -> Path:
    """A tiny SAM 2 (Hiera backbone, 0.35 M params) at 128 px."""
    import torch
    from transformers import Sam2Config, Sam2Model, Sam2Processor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    torch.manual_seed(seed)
    # a global-attention block must not open a stage (its window size would be 0 after pooling)
    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1, image_size=[128, 128],
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                    num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                    global_attention_blocks=[3], window_positional_embedding_background_size=[4, 4])
    cfg = Sam2Config(
        vision_config=dict(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                           backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=32),
        prompt_encoder_config=dict(hidden_size=32, image_size=128, patch_size=16),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32))
    Sam2Model(cfg).save_pretrained(out)
    Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": 128, "width": 128},
                                                     mask_size={"height": 32, "width": 32})).save_pretrained(out)
    return out


def build_sam3(out_dir, seed: int = 0) -> Path:
    """A tiny SAM 3 (1.8 M params) at 112 px with the real CLIP tokenizer (open_clip's BPE file)."""
    import torch
    from transformers import CLIPTokenizer, Sam3Config, Sam3Model, Sam3Processor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    from pipeline.tiny.detectors import write_clip_vocab
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    torch.manual_seed(seed)
    tok = CLIPTokenizer.from_pretrained(write_clip_vocab(out / "_clip_vocab"), pad_token="!")
    vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, image_size=112, patch_size=14, window_size=4, global_attn_indexes=[1],
               pretrain_image_size=112)
    small = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64)
    cfg = Sam3Config(
        vision_config=dict(backbone_config=vit, fpn_hidden_size=32,
                           backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]]),
        text_config=dict(model_type="clip_text_model", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         projection_dim=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32),
        geometry_encoder_config=dict(num_layers=1, **small), detr_encoder_config=dict(num_layers=1, **small),
        detr_decoder_config=dict(num_layers=1, num_queries=10, **small),
        mask_decoder_config=dict(hidden_size=32, num_attention_heads=2))
    Sam3Model(cfg).save_pretrained(out)
    Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": 112, "width": 112}),
                  tokenizer=tok).save_pretrained(out)
    return out
