"""Train the student detector (ultralytics YOLO) on a ``label-factory export`` and record what it is.

One run folder (``out``) holds ultralytics' own files (``weights/best.pt`` + ``last.pt``,
``results.csv``, ``args.yaml``, plots) and ours:

* ``metrics.json``: mAP50, mAP50-95, mean and per-class precision/recall/AP on the val split (best
  weights), plus per-epoch seconds and training images/s;
* ``model_card.json`` / ``model_card.md``: the data snapshot (Label Studio URL and project, sha256
  of the task ids, label set, split counts, pseudo-labels), the training arguments, the metrics and
  the weights' sha256 (the ``student`` grounder's model_version names the same hash).

Interrupted runs continue from the last finished epoch with ``resume=True`` (ultralytics resume:
model, optimizer and schedule from ``weights/last.pt``). The model is a checkpoint (``yolo11n.pt``,
pretrained: the normal way, downloaded by ultralytics if missing, into the current directory) or a config
(``yolo11n.yaml``: random initial weights, nothing downloaded — what the tests use). A checkpoint that is
not here and cannot be downloaded is a ``TrainError`` naming the config to train from instead and where
ultralytics looks for checkpoints."""
from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from pipeline.atomic import save_text
from pipeline.distill import DEFAULT_MODEL
from pipeline.distill.export import MANIFEST
from pipeline.providers.yolo import keep_torch_threads, local_fonts_only, torch_device, ultralytics
from pipeline.weights import sha256_file

log = logging.getLogger(__name__)

METRICS = "metrics.json"
CARD = "model_card"


class TrainError(RuntimeError):
    """The run cannot start or continue (no export, no val images, nothing to resume, ...)."""


@dataclass
class TrainConfig:
    data: Path  # the export folder (data.yaml + manifest.json)
    out: Path  # the run folder
    model: str = DEFAULT_MODEL  # checkpoint (.pt) or architecture config (.yaml)
    epochs: int = 100
    imgsz: int = 640
    batch: int = 16
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    workers: int = 2
    patience: int = 50
    seed: int = 0
    plots: bool = True
    amp: bool = True  # mixed precision on CUDA (ultralytics checks it with a download of yolo11n.pt)
    extra: dict = field(default_factory=dict)  # more ultralytics train arguments


def read_export(data: Path) -> tuple[Path, dict]:
    """(data.yaml, manifest) of a YOLO export; raises TrainError when it cannot be trained on."""
    data = Path(data)
    yaml_path, manifest_path = data / "data.yaml", data / MANIFEST
    if not yaml_path.exists() or not manifest_path.exists():
        raise TrainError(f"{data}: not a YOLO export (needs data.yaml and {MANIFEST}: "
                         "run `label-factory export --format yolo` first)")
    manifest = json.loads(manifest_path.read_text())
    counts = manifest.get("counts", {})
    for s in ("train", "val"):
        if not counts.get(s, {}).get("images"):
            total = sum(c.get("images", 0) for c in counts.values())
            raise TrainError(f"{data}: the {s} split has no images ({total} in all): training needs at least one "
                             "train and one val image; review more tasks and export again")
    return yaml_path, manifest


def _resumable(last: Path) -> bool:
    import torch
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    return ckpt.get("optimizer") is not None and ckpt.get("epoch", -1) >= 0


class _EpochClock:
    """ultralytics callbacks -> per-epoch seconds and training images/s, logged as one progress line."""

    def __init__(self):
        self.epochs: list[dict] = []
        self._t0 = 0.0

    def start(self, trainer) -> None:
        self._t0 = time.perf_counter()

    def end(self, trainer) -> None:
        seconds = time.perf_counter() - self._t0
        n = len(trainer.train_loader.dataset)
        losses = {k.split("/")[-1]: round(float(v), 4) for k, v in trainer.label_loss_items(trainer.tloss).items()}
        rec = {"epoch": trainer.epoch + 1, "seconds": round(seconds, 3), "images": n,
               "images_per_s": round(n / seconds, 3) if seconds else None, **losses}
        self.epochs.append(rec)
        log.info("epoch %d/%d: %.1f s, %.2f images/s, %s", rec["epoch"], trainer.epochs, seconds,
                 rec["images_per_s"] or 0, losses)


def val_metrics(metrics, names: dict) -> dict:
    """ultralytics DetMetrics (val split) -> our metrics.json fields."""
    box = metrics.box
    per_class = {}
    index = [int(i) for i in getattr(metrics, "ap_class_index", [])]
    counts = getattr(metrics, "nt_per_class", None)
    for k, name in names.items():
        k = int(k)
        n = int(counts[k]) if counts is not None and k < len(counts) else 0
        if k in index:
            j = index.index(k)
            per_class[name] = {"instances": n, "precision": float(box.p[j]), "recall": float(box.r[j]),
                               "mAP50": float(box.ap50[j]), "mAP50-95": float(box.ap[j])}
        else:
            per_class[name] = {"instances": n, "precision": None, "recall": None, "mAP50": None, "mAP50-95": None}
    return {"split": "val", "mAP50": float(box.map50), "mAP50-95": float(box.map), "precision": float(box.mp),
            "recall": float(box.mr), "per_class": per_class}


def _no_checkpoint(model: str, why: str) -> TrainError:
    """``model``, a checkpoint name ultralytics can download, is not here: the error names what to do instead."""
    from ultralytics.utils import SETTINGS
    weights_dir = Path(SETTINGS["weights_dir"])
    return TrainError(f"--model {model}: the checkpoint is not on this machine (neither {Path(model).resolve()} nor "
                      f"{weights_dir / model}, ultralytics' weights_dir) and {why}; train from scratch with "
                      f"--model {Path(model).stem}.yaml (random initial weights, nothing downloaded), or put {model} "
                      f"in {weights_dir} (or the current directory, where ultralytics downloads it when it can)")


def _yolo(ul, model: str):
    """``ul.YOLO(model)``; a ``.pt`` checkpoint that is neither here nor downloadable is a TrainError (at once when
    ultralytics knows it is offline, instead of its download's traceback)."""
    from ultralytics.utils import ONLINE, SETTINGS, env_bool
    from ultralytics.utils.checks import check_yolov5u_filename
    name = check_yolov5u_filename(model, verbose=False)
    here = Path(name).expanduser().is_file() or (Path(SETTINGS["weights_dir"]) / name).is_file()
    if model.endswith(".pt") and not here:
        if Path(model).name != model:  # a path: nothing to download (ultralytics would still ask GitHub)
            raise TrainError(f"--model {model}: no such checkpoint file")
        if env_bool("YOLO_OFFLINE") or not ONLINE:
            raise _no_checkpoint(model, "ultralytics is offline (YOLO_OFFLINE, or no DNS), so it cannot download it")
    try:
        return ul.YOLO(model)
    except ConnectionError as e:
        raise _no_checkpoint(model, f"ultralytics could not download it ({str(e).strip()[:200]})") from None


def train(cfg: TrainConfig, resume: bool = False, callbacks: Optional[dict[str, Callable]] = None) -> dict:
    """Train (or, ``resume``, continue) a student on the export; returns the metrics.json dict.

    ``callbacks``: extra ultralytics callbacks (event -> fn(trainer)), e.g. a progress hook."""
    yaml_path, manifest = read_export(cfg.data)
    out = Path(cfg.out).resolve()
    last = out / "weights" / "last.pt"
    if resume:
        if not last.exists():
            raise TrainError(f"{out}: nothing to resume (no weights/last.pt)")
        if not _resumable(last):
            raise TrainError(f"{out}: that run finished (weights/last.pt has no optimizer state); "
                             "start a new run in another --out")
    elif last.exists():
        raise TrainError(f"{out}: a run is already there; --resume continues it, or choose another --out")
    ul = ultralytics()
    device = torch_device(cfg.device)
    model = _yolo(ul, str(last) if resume else cfg.model)
    clock = _EpochClock()
    model.add_callback("on_train_epoch_start", clock.start)
    model.add_callback("on_train_epoch_end", clock.end)
    for event, fn in (callbacks or {}).items():
        model.add_callback(event, fn)
    args = dict(data=str(yaml_path.resolve()), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch, device=device,
                workers=cfg.workers, patience=cfg.patience, seed=cfg.seed, plots=cfg.plots,
                amp=cfg.amp and device not in ("cpu", "mps"), project=str(out.parent), name=out.name,
                exist_ok=True, verbose=True, **cfg.extra)
    if resume:  # the checkpoint's own arguments; only these may change on resume
        args = {k: args[k] for k in ("data", "device", "workers", "plots")} | {"resume": True}
    log.info("training %s on %s (%s) -> %s", "(resumed) " + str(last) if resume else cfg.model, yaml_path, device, out)
    t0 = time.perf_counter()
    with keep_torch_threads(), (local_fonts_only() if not cfg.plots else nullcontext()):
        model.train(**args)  # ultralytics trains on cores - 1 torch threads; the caller's count comes back after
    trainer = model.trainer
    best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
    names = {int(k): v for k, v in trainer.data["names"].items()}
    metrics = {**val_metrics(trainer.validator.metrics, names),  # the final validation, of the best weights
               "val_images": manifest["counts"]["val"]["images"], "epochs": clock.epochs,
               "train_seconds": round(time.perf_counter() - t0, 2),
               "weights": best.relative_to(out).as_posix(), "weights_sha256": sha256_file(best)}
    save_text(out / METRICS, json.dumps(metrics, indent=1))
    write_card(out, cfg, manifest, vars(trainer.args), metrics, names)
    return metrics


def write_card(out: Path, cfg: TrainConfig, manifest: dict, train_args: dict, metrics: dict, names: dict) -> None:
    """model_card.json and model_card.md next to the weights."""
    src = manifest.get("source") or {}
    data = {"label_studio_url": src.get("label_studio_url"), "project_id": src.get("project_id"),
            "project_title": src.get("project_title"), "task_ids_sha256": manifest.get("task_ids_sha256"),
            "labels": list(names.values()), "split": manifest.get("split"), "counts": manifest.get("counts"),
            "pseudo_labels": src.get("pseudo_labels"), "export": str(Path(cfg.data).resolve()),
            "exported_at": manifest.get("created_at")}
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in train_args.items()}
    card = {"model": "student detector (ultralytics YOLO)", "weights": metrics["weights"],
            "weights_sha256": metrics["weights_sha256"], "data": data, "training": {
                "requested": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                "ultralytics_args": args}, "metrics": {k: v for k, v in metrics.items() if k != "epochs"}}
    save_text(out / f"{CARD}.json", json.dumps(card, indent=1, default=str))
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    rows = "\n".join(f"| {name} | {m['instances']} | {fmt(m['precision'])} | {fmt(m['recall'])} | {fmt(m['mAP50'])} "
                     f"| {fmt(m['mAP50-95'])} |" for name, m in metrics["per_class"].items())
    counts = ", ".join(f"{s} {c['images']} images ({c['pseudo']} pseudo-labelled)"
                       for s, c in (manifest.get("counts") or {}).items())
    pseudo = data["pseudo_labels"]
    md = f"""# Student detector: {data['project_title'] or 'Label Studio project'} ({data['project_id']})

- weights: `{metrics['weights']}` (sha256 `{metrics['weights_sha256'][:16]}…`),
  ultralytics YOLO from `{args.get('model')}`
- data: Label Studio {data['label_studio_url'] or '?'}, project {data['project_id']}, exported {data['exported_at']};
  task ids sha256 `{(data['task_ids_sha256'] or '')[:16]}…`; {counts}
- pseudo-labels: {f"predictions of {pseudo['model_version']} with score >= {pseudo['min_score']}" if pseudo else 'none'}
- labels (class id order): {', '.join(f'{i}: {n}' for i, n in names.items())}
- training: {args.get('epochs')} epochs, imgsz {args.get('imgsz')}, batch {args.get('batch')},
  device {args.get('device')}, seed {args.get('seed')}, optimizer {args.get('optimizer')}
  ({CARD}.json has every argument)

## Validation ({metrics['val_images']} images, best weights)

mAP50 {metrics['mAP50']:.3f} · mAP50-95 {metrics['mAP50-95']:.3f} · precision {metrics['precision']:.3f} · \
recall {metrics['recall']:.3f}

| label | instances | precision | recall | mAP50 | mAP50-95 |
|---|---|---|---|---|---|
{rows}
"""
    save_text(out / f"{CARD}.md", md)
