"""``label-factory identify index | verify | search | train``.

``pipeline/cli.py`` wires it in with ``identify_cli.add_parser(subparsers)`` and
dispatches to ``identify_cli.run(args)`` (``args.func`` is set to it as well)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional

from pipeline.identify.headconfig import TrainConfig
from pipeline.identify.naming import IMAGE_SUFFIXES, label_from_filename
from pipeline.logs import setup_logging

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("identify", help="open-set identification: reference index, verify, search, train",
                              description="Build, check and query a CLIP reference index; train a projection head.")
    sub = p.add_subparsers(dest="identify_cmd", metavar="{index,verify,search,train}")
    sub.required = True

    def model_args(sp, projection: bool = True):
        sp.add_argument("--project", help="project YAML whose providers.identify gives model/pretrained/thresholds")
        sp.add_argument("--model", help="open_clip model name or path of a model config .json (env LF_CLIP_MODEL)")
        sp.add_argument("--pretrained", help="open_clip pretrained tag or checkpoint path; 'none' for random weights "
                                             "(env LF_CLIP_PRETRAINED)")
        sp.add_argument("--device", default="cpu")
        if projection:
            sp.add_argument("--projection", metavar="HEAD",
                            help="projection head file from 'identify train' (default: providers.identify.projection)")

    ix = sub.add_parser("index", help="embed a folder of reference images into an index")
    ix.add_argument("--refs", required=True, help="folder of reference images (searched recursively); "
                                                  "labels come from the file names")
    ix.add_argument("--out", required=True, help="index file to write (atomically)")
    ix.add_argument("--batch-size", type=int, default=32)
    model_args(ix)

    vf = sub.add_parser("verify", help="self-identification rate, confusable pairs, margins, guidance")
    vf.add_argument("--index", required=True)
    vf.add_argument("--projection", metavar="HEAD",
                    help="also report the index seen through this projection head, side by side")
    vf.add_argument("--pairs", type=int, default=10, help="how many confusable pairs to list")
    vf.add_argument("--json", action="store_true", help="print the report as JSON")

    se = sub.add_parser("search", help="identify an image (or a box of it) against an index")
    se.add_argument("--index", required=True)
    se.add_argument("--image", required=True)
    se.add_argument("--box", help="x1,y1,x2,y2 in pixels (default: the whole image)")
    se.add_argument("--top-k", type=int)
    se.add_argument("--min-cosine", type=float)
    se.add_argument("--min-margin", type=float)
    se.add_argument("--json", action="store_true")
    model_args(se)

    tr = sub.add_parser("train", help="train a projection head (SupCon) on frozen CLIP features of reference crops")
    tr.add_argument("--refs", required=True, help="folder of reference images; labels come from the file names")
    tr.add_argument("--out", required=True, help="head file to write (atomically), e.g. head.pt")
    c = TrainConfig()
    tr.add_argument("--dim", type=int, default=c.out_dim, help="output dimension")
    tr.add_argument("--hidden", type=int, default=c.hidden, help="hidden width (2 layers)")
    tr.add_argument("--layers", type=int, choices=(1, 2), default=c.layers, help="1: linear, 2: MLP")
    tr.add_argument("--steps", type=int, default=c.steps)
    tr.add_argument("--classes-per-batch", type=int, default=c.classes_per_batch, help="P labels per batch")
    tr.add_argument("--samples-per-class", type=int, default=c.samples_per_class, help="K views per label")
    tr.add_argument("--clean-views", type=int, default=c.clean_views,
                    help="of the K views, how many are the un-augmented crop (features computed once)")
    tr.add_argument("--lr", type=float, default=c.lr)
    tr.add_argument("--temperature", type=float, default=c.temperature)
    tr.add_argument("--seed", type=int, default=c.seed)
    model_args(tr, projection=False)
    p.set_defaults(func=run)
    return p


def _provider(args, info: Optional[dict] = None):
    from pipeline.config import IdentifyProvider, load_project
    prov = load_project(args.project).providers.identify if getattr(args, "project", None) else IdentifyProvider()
    upd = {}
    if info and not getattr(args, "project", None):  # search: the index knows which model (and head) made it
        upd.update({k: info[k] for k in ("model", "pretrained", "projection") if k in info})
    for k in ("model", "pretrained", "projection"):
        if getattr(args, k, None):
            upd[k] = getattr(args, k)
    for k in ("top_k", "min_cosine", "min_margin"):
        if getattr(args, k, None) is not None:
            upd[k] = getattr(args, k)
    return prov.model_copy(update=upd)


def _embedder(args, prov, projection: bool = True):
    from pipeline.identify.embedder import get_embedder
    return get_embedder(prov.model, prov.pretrained, args.device, projection=prov.projection if projection else None,
                        dtype=prov.dtype)


def reference_files(refs: Path) -> list[Path]:
    return sorted(p for p in refs.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(refs).parts))


def iter_references(refs: Path):
    """(file, image or None, load error or None) for every reference image under ``refs``."""
    from pipeline.images import ImageLoadError, open_image
    for f in reference_files(refs):
        try:
            yield f, open_image(f), None
        except ImageLoadError as e:
            yield f, None, str(e)


def build_reference_index(refs: Path, embedder, batch_size: int = 32, info: Optional[dict] = None):
    """(snapshot, skipped files) for every image under ``refs``; label/variant from the file name."""
    import numpy as np

    from pipeline.identify.index import IndexSnapshot, make_entry
    images, entries, skipped, vecs = [], [], [], []
    for f, image, error in iter_references(refs):
        if error:
            skipped.append(error)
            continue
        images.append(image)
        label, variant = label_from_filename(f.name)
        entries.append(make_entry(label, variant, file=str(f.relative_to(refs))))
        if len(images) >= batch_size:
            vecs.append(embedder.embed(images))
            images = []
    if images:
        vecs.append(embedder.embed(images))
    v = np.concatenate(vecs) if vecs else np.zeros((0, embedder.dim), np.float32)
    return IndexSnapshot(v, entries, embedder=embedder.id, dim=embedder.dim, info=info or {}), skipped


def cmd_index(args) -> int:
    from pipeline.identify.index import IndexStore
    refs = Path(args.refs)
    if not refs.is_dir():
        print(f"identify index: --refs {refs} is not a folder", file=sys.stderr)
        return 2
    prov = _provider(args)
    emb = _embedder(args, prov)
    info = {"model": emb.model_spec, "pretrained": emb.pretrained, "refs": str(refs.resolve())}
    if getattr(emb, "projection", None):
        info["projection"] = str(Path(emb.projection).resolve())
    snap, skipped = build_reference_index(refs, emb, args.batch_size, info=info)
    for s in skipped:
        print(f"skipped: {s}", file=sys.stderr)
    if not len(snap):
        print(f"identify index: no usable images under {refs}", file=sys.stderr)
        return 1
    new = IndexStore(args.out).replace_all(snap)
    print(f"wrote {args.out}: version {new.version}, {len(new)} references, {len(new.label_set())} labels, "
          f"embedder {new.embedder} (dim {new.dim})")
    return 0


def cmd_verify(args) -> int:
    from pipeline.identify.head import load_head, projected_id
    from pipeline.identify.index import IndexSnapshot
    from pipeline.identify.report import compare_report, format_comparison, format_report, verify_report
    snap = IndexSnapshot.load(args.index)
    loaded = load_head(args.projection) if args.projection else None
    if loaded is None or snap.embedder == projected_id(loaded.embedder, loaded.hash):
        rep = verify_report(snap, pairs=args.pairs)
        print(json.dumps(rep, indent=2) if args.json else format_report(rep))
        return 0
    if snap.embedder and snap.embedder != loaded.embedder:
        print(f"identify verify: the index was built with {snap.embedder}, the head was trained on "
              f"{loaded.embedder}: give an index built without a head by that model", file=sys.stderr)
        return 2
    cmp = compare_report(snap, loaded, pairs=args.pairs)
    print(json.dumps(cmp, indent=2) if args.json else format_comparison(cmp))
    return 0


def cmd_search(args) -> int:
    from pipeline.identify.index import IndexSnapshot
    from pipeline.identify.stage import Identifier
    from pipeline.images import open_image
    snap = IndexSnapshot.load(args.index)
    prov = _provider(args, snap.info)
    emb = _embedder(args, prov)
    if len(snap) and emb.id != snap.embedder:
        print(f"identify search: the index was built with {snap.embedder}, this search embeds with {emb.id}: "
              "use the same --model/--pretrained/--projection, or rebuild the index", file=sys.stderr)
        return 2
    image = open_image(args.image)
    box = [float(v) for v in args.box.split(",")] if args.box else [0, 0, image.width, image.height]
    ident = Identifier(snap, emb, prov.min_cosine, prov.min_margin, prov.top_k)
    (m,), version = ident.identify_boxes(image, [box])
    if args.json:
        print(json.dumps({"index_version": version, **m.to_json()}, indent=2))
        return 0
    print(f"{m.label}" + (f" ({m.variant})" if m.known and m.variant else "") +
          f"   cosine {m.cosine:.4f}  margin {m.margin:.4f}  (index v{version}, "
          f"thresholds cosine>={prov.min_cosine} margin>={prov.min_margin})")
    for i, n in enumerate(m.neighbors, 1):
        src = n.source.get("file") or json.dumps(n.source)
        print(f"  {i}. {n.label}" + (f" [{n.variant}]" if n.variant else "") + f"  {n.cosine:.4f}  {src}")
    return 0


def cmd_train(args) -> int:
    from pipeline.identify.head import projected_id, save_head, train_on_images
    refs = Path(args.refs)
    if not refs.is_dir():
        print(f"identify train: --refs {refs} is not a folder", file=sys.stderr)
        return 2
    images, labels = [], []
    for f, image, error in iter_references(refs):
        if error:
            print(f"skipped: {error}", file=sys.stderr)
            continue
        images.append(image)
        labels.append(label_from_filename(f.name)[0])
    if len(set(labels)) < 2:
        print(f"identify train: need references of at least two labels under {refs} ({len(set(labels))} found)",
              file=sys.stderr)
        return 1
    emb = _embedder(args, _provider(args), projection=False)
    cfg = TrainConfig(out_dim=args.dim, hidden=args.hidden, layers=args.layers, steps=args.steps,
                      classes_per_batch=args.classes_per_batch, samples_per_class=args.samples_per_class,
                      clean_views=args.clean_views, lr=args.lr, temperature=args.temperature, seed=args.seed)
    every = max(1, cfg.steps // 10)

    def progress(step, loss):
        if step % every == 0 or step == cfg.steps:
            print(f"step {step}/{cfg.steps}  SupCon loss {loss:.4f}", flush=True)
    print(f"training a projection head on {len(images)} references of {len(set(labels))} labels with {emb.id} "
          f"({emb.dim} -> {cfg.out_dim}, {cfg.layers} layer(s), {cfg.steps} steps of "
          f"{min(cfg.classes_per_batch, len(set(labels)))}x{cfg.samples_per_class} views)", flush=True)
    head, record = train_on_images(emb, images, labels, cfg, progress)
    record["refs"] = str(refs.resolve())
    digest = save_head(args.out, head, emb, record)
    ev = record["eval"]
    print(f"\n{ev['views']} fresh augmented views vs the un-augmented references:")
    print(f"  {'':<14}{'without head':>14}{'with head':>12}")
    for key, name in (("top1", "top-1"), ("median_margin", "median margin"), ("p10_margin", "p10 margin")):
        fmt = "{:.1%}" if key == "top1" else "{:.3f}"
        print(f"  {name:<14}{fmt.format(ev['before'][key]):>14}{fmt.format(ev['after'][key]):>12}")
    print(f"\nwrote {args.out}: head {digest}; an index built with it has embedder {projected_id(emb.id, digest)}")
    print(f"use it: identify index --projection {args.out}  (or providers.identify.projection in the YAML)")
    return 0


def run(args) -> int:
    return {"index": cmd_index, "verify": cmd_verify, "search": cmd_search,
            "train": cmd_train}[args.identify_cmd](args)


def main(argv=None) -> int:
    setup_logging("INFO")
    parser = argparse.ArgumentParser(prog="label-factory identify")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["identify", *(sys.argv[1:] if argv is None else argv)])
    return run(args)
