"""Label Studio labeling config generated from the project YAML.

Object/control names are fixed (``image``, ``label``, ``prompt``, and for masks ``click``, ``box``,
``similar``) so the backends and the importer agree; the backends still read whatever names a
hand-written config uses (``pipeline.labelstudio.Layout``).

``masks=None``: boxes (``RectangleLabels``). ``masks="brush"`` / ``"polygon"``: the output is a
``BrushLabels`` / ``PolygonLabels`` named ``label``, with the interactive tools next to it (shown in
Label Studio's smart mode, with Auto-Annotation on): ``click`` (KeyPointLabels: click an object to get
its mask), ``box`` (a rectangle drawn around an object becomes its mask) and ``similar`` (a rectangle
drawn around an example: the backend finds more like it, ``find_similar="true"``).

``video_config``: a ``<Video>`` (``$video``, its frame rate from the task's ``$fps``) with a ``<VideoRectangle>``
named ``box`` and the labels in a ``<Labels>`` named ``label``: one track per object, keyframes interpolated by
Label Studio's video editor."""
from __future__ import annotations

from pathlib import Path
from typing import Optional
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from pipeline.config import ProjectConfig

IMAGE_NAME = "image"
LABELS_NAME = "label"
PROMPT_NAME = "prompt"
CLICK_NAME = "click"
BOX_NAME = "box"
SIMILAR_NAME = "similar"
MASK_TAGS = {"brush": "BrushLabels", "polygon": "PolygonLabels"}
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]


def labeling_config(cfg: ProjectConfig, interactive_prompt: bool = True, masks: Optional[str] = None) -> str:
    if masks is not None and masks not in MASK_TAGS:
        raise ValueError(f"masks must be one of {sorted(MASK_TAGS)}, not {masks!r}")
    by_label = cfg.labels()
    labels = _label_tags(cfg)
    tag = MASK_TAGS.get(masks, "RectangleLabels")
    lines = ["<View>", f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true" zoomControl="true"/>',
             f'  <{tag} name="{LABELS_NAME}" toName="{IMAGE_NAME}">', *labels, f"  </{tag}>"]
    if masks:
        plain = [f"    <Label value={quoteattr(lab)} background=\"{PALETTE[i % len(PALETTE)]}\"/>"
                 for i, lab in enumerate(by_label)]
        lines += ['  <Header value="Smart tools (Auto-Annotation on): click an object, box it, or box an example '
                  'to find more like it"/>',
                  f'  <KeyPointLabels name="{CLICK_NAME}" toName="{IMAGE_NAME}" smart="true" smartOnly="true">',
                  *plain, "  </KeyPointLabels>",
                  f'  <RectangleLabels name="{BOX_NAME}" toName="{IMAGE_NAME}" smart="true" smartOnly="true">',
                  *plain, "  </RectangleLabels>",
                  f'  <RectangleLabels name="{SIMILAR_NAME}" toName="{IMAGE_NAME}" smart="true" smartOnly="true" '
                  'find_similar="true">', *plain, "  </RectangleLabels>"]
    if interactive_prompt:
        lines += ['  <Header value="Text prompt for the ML backend (interactive pre-annotation)"/>',
                  f'  <TextArea name="{PROMPT_NAME}" toName="{IMAGE_NAME}" editable="true" rows="1" '
                  'maxSubmissions="1" showSubmitButton="true" placeholder="e.g. stop sign"/>']
    lines.append("</View>")
    return "\n".join(lines) + "\n"


VIDEO_NAME = "video"
FPS_KEY = "fps"


def video_config(cfg: ProjectConfig) -> str:
    """The labeling config of a video project (tracks in Label Studio's video editor)."""
    lines = ["<View>", f'  <Labels name="{LABELS_NAME}" toName="{VIDEO_NAME}" allowEmpty="true">',
             *_label_tags(cfg), "  </Labels>",
             f'  <Video name="{VIDEO_NAME}" value="${VIDEO_NAME}" framerate="${FPS_KEY}"/>',
             f'  <VideoRectangle name="{BOX_NAME}" toName="{VIDEO_NAME}"/>', "</View>"]
    return "\n".join(lines) + "\n"


def _label_tags(cfg: ProjectConfig) -> list[str]:
    by_label: dict[str, list[str]] = {lab: [] for lab in cfg.labels()}
    for q, lab in cfg.query_labels().items():
        by_label[lab].append(q)
    out = []
    for i, (lab, queries) in enumerate(by_label.items()):
        aliases = [q for q in queries if q != lab]
        extra = f" predicted_values={quoteattr(','.join(aliases))}" if aliases else ""
        out.append(f"    <Label value={quoteattr(lab)} background=\"{PALETTE[i % len(PALETTE)]}\"{extra}/>")
    return out


def local_files_url(path: Path, document_root: Path) -> str:
    """Label Studio local-files URL of ``path`` (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=document_root).

    Label Studio serves nothing outside its document root, so a path outside it is refused."""
    try:
        rel = Path(path).resolve().relative_to(Path(document_root).resolve()).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not under the Label Studio document root {document_root}") from None
    return "/data/local-files/?d=" + quote(rel)
