"""Label Studio labeling config generated from the project YAML.

Object/control names are fixed (``image``, ``label``, ``prompt``) so the backends and the
importer agree; the backends still read whatever names a hand-written config uses."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from pipeline.config import ProjectConfig

IMAGE_NAME = "image"
LABELS_NAME = "label"
PROMPT_NAME = "prompt"
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]


def labeling_config(cfg: ProjectConfig, interactive_prompt: bool = True) -> str:
    by_label: dict[str, list[str]] = {lab: [] for lab in cfg.labels()}
    for q, lab in cfg.query_labels().items():
        by_label[lab].append(q)
    lines = ["<View>", f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true" zoomControl="true"/>',
             f'  <RectangleLabels name="{LABELS_NAME}" toName="{IMAGE_NAME}">']
    for i, (lab, queries) in enumerate(by_label.items()):
        aliases = [q for q in queries if q != lab]
        extra = f" predicted_values={quoteattr(','.join(aliases))}" if aliases else ""
        lines.append(f"    <Label value={quoteattr(lab)} background=\"{PALETTE[i % len(PALETTE)]}\"{extra}/>")
    lines.append("  </RectangleLabels>")
    if interactive_prompt:
        lines += ['  <Header value="Text prompt for the ML backend (interactive pre-annotation)"/>',
                  f'  <TextArea name="{PROMPT_NAME}" toName="{IMAGE_NAME}" editable="true" rows="1" '
                  'maxSubmissions="1" showSubmitButton="true" placeholder="e.g. stop sign"/>']
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def local_files_url(path: Path, document_root: Path) -> str:
    """Label Studio local-files URL of ``path`` (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=document_root).

    Label Studio serves nothing outside its document root, so a path outside it is refused."""
    try:
        rel = Path(path).resolve().relative_to(Path(document_root).resolve()).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not under the Label Studio document root {document_root}") from None
    return "/data/local-files/?d=" + quote(rel)
