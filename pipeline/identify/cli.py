"""``label-factory identify index | verify | search`` (also ``python -m pipeline.identify ...``).

The lead wires it into ``pipeline/cli.py`` with ``identify_cli.add_parser(subparsers)`` and
dispatches to ``identify_cli.run(args)`` (``args.func`` is set to it as well)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional

from pipeline.identify.naming import IMAGE_SUFFIXES, label_from_filename
from pipeline.logs import setup_logging

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("identify", help="open-set identification: reference index, verify, search",
                              description="Build, check and query a CLIP reference index.")
    sub = p.add_subparsers(dest="identify_cmd", metavar="{index,verify,search}")
    sub.required = True

    def model_args(sp):
        sp.add_argument("--project", help="project YAML whose providers.identify gives model/pretrained/thresholds")
        sp.add_argument("--model", help="open_clip model name or path of a model config .json (env LF_CLIP_MODEL)")
        sp.add_argument("--pretrained", help="open_clip pretrained tag or checkpoint path; 'none' for random weights "
                                             "(env LF_CLIP_PRETRAINED)")
        sp.add_argument("--device", default="cpu")

    ix = sub.add_parser("index", help="embed a folder of reference images into an index")
    ix.add_argument("--refs", required=True, help="folder of reference images (searched recursively); "
                                                  "labels come from the file names")
    ix.add_argument("--out", required=True, help="index file to write (atomically)")
    ix.add_argument("--batch-size", type=int, default=32)
    model_args(ix)

    vf = sub.add_parser("verify", help="self-identification rate, confusable pairs, margins, guidance")
    vf.add_argument("--index", required=True)
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
    p.set_defaults(func=run)
    return p


def _provider(args, info: Optional[dict] = None):
    from pipeline.config import IdentifyProvider, load_project
    prov = load_project(args.project).providers.identify if getattr(args, "project", None) else IdentifyProvider()
    upd = {}
    if info and not getattr(args, "project", None):  # search: the index knows which model made it
        upd.update({k: info[k] for k in ("model", "pretrained") if k in info})
    if getattr(args, "model", None):
        upd["model"] = args.model
    if getattr(args, "pretrained", None):
        upd["pretrained"] = args.pretrained
    for k in ("top_k", "min_cosine", "min_margin"):
        if getattr(args, k, None) is not None:
            upd[k] = getattr(args, k)
    return prov.model_copy(update=upd)


def _embedder(args, prov):
    from pipeline.identify.embedder import get_embedder
    return get_embedder(prov.model, prov.pretrained, args.device)


def reference_files(refs: Path) -> list[Path]:
    return sorted(p for p in refs.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(refs).parts))


def build_reference_index(refs: Path, embedder, batch_size: int = 32, info: Optional[dict] = None):
    """(snapshot, skipped files) for every image under ``refs``; label/variant from the file name."""
    from pipeline.identify.index import IndexSnapshot, make_entry
    from pipeline.images import ImageLoadError, open_image
    files = reference_files(refs)
    images, entries, skipped = [], [], []
    import numpy as np
    vecs = []
    for f in files:
        try:
            images.append(open_image(f))
        except ImageLoadError as e:
            skipped.append(str(e))
            continue
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
    snap, skipped = build_reference_index(refs, emb, args.batch_size,
                                          info={"model": emb.model_spec, "pretrained": emb.pretrained,
                                                "refs": str(refs.resolve())})
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
    from pipeline.identify.index import IndexSnapshot
    from pipeline.identify.report import format_report, verify_report
    rep = verify_report(IndexSnapshot.load(args.index), pairs=args.pairs)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


def cmd_search(args) -> int:
    from pipeline.identify.index import IndexSnapshot
    from pipeline.identify.stage import Identifier
    from pipeline.images import open_image
    snap = IndexSnapshot.load(args.index)
    prov = _provider(args, snap.info)
    emb = _embedder(args, prov)
    if len(snap) and emb.id != snap.embedder:
        print(f"warning: index built with {snap.embedder}, searching with {emb.id}", file=sys.stderr)
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


def run(args) -> int:
    return {"index": cmd_index, "verify": cmd_verify, "search": cmd_search}[args.identify_cmd](args)


def main(argv=None) -> int:
    setup_logging("INFO")
    parser = argparse.ArgumentParser(prog="python -m pipeline.identify")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["identify", *(sys.argv[1:] if argv is None else argv)])
    return run(args)
