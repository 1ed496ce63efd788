"""Label Studio side of the importer: find-or-create the project (by title) with the labeling
config generated from the YAML, import one task per stored image, never twice, and optionally
connect an ML backend and ask it for predictions.

Task shape::

    {"data": {"image": <url>}, "meta": {"bucket", "source", "license", "attribution", "query",
                                       "page_url", "image_url", "title", "sha256", "id"}}

``data.image`` depends on the storage mode:

* ``upload`` (default): the file is uploaded to Label Studio
  (``POST /api/projects/<id>/import?commit_to_project=false`` → a FileUpload) and the task
  points at ``/data/upload/<project>/<name>``. Works with any Label Studio, copies the bytes.
* ``local-files``: Label Studio and the images share a disk. Label Studio must run with
  ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<root>`` with data_root under <root>; the importer
  adds a Local Files import storage for data_root to the project (never synced — tasks are
  imported by the importer, with meta) and tasks point at ``/data/local-files/?d=<path under root>``.

An entry's ``data`` (a video frame's ``video``, ``frame`` and ``time``) is added to its task's data.

Already-imported images are recognised by ``meta.sha256`` of the project's existing tasks (the
manifest also records the task id per Label Studio URL + project).
"""
from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import Callable, Iterable, Optional

import requests

from pipeline.config import ProjectConfig
from pipeline.labelstudio import client as credentials
from pipeline.labelstudio import lsapi, projects
from pipeline.labelstudio.labeling_config import IMAGE_NAME, labeling_config, local_files_url

META_KEYS = ("bucket", "source", "license", "attribution", "query", "page_url", "image_url", "title")
BATCH = 50


class LabelStudioError(RuntimeError):
    pass


def _norm_xml(s: str) -> str:
    return "".join((s or "").split())


class LabelStudioTarget:
    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, client=None,
                 timeout: float = 120.0):
        """Label Studio at ``url`` with ``api_key`` (default: ``pipeline.labelstudio.client``'s LABEL_STUDIO_URL
        and LABEL_STUDIO_API_KEY), through the process's one client for them, or through ``client``."""
        if client is None:
            url = (url or credentials.label_studio_url()).rstrip("/")
            api_key = api_key or credentials.label_studio_api_key()
            if not url or not api_key:
                raise LabelStudioError("Label Studio needs a URL and an API key "
                                       "(--label-studio-url/--api-key or LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY)")
            try:
                client = credentials.client(url, api_key, timeout=timeout)
            except PermissionError as e:
                raise LabelStudioError(str(e)) from None
        self.client = client
        self.url = (url or credentials.base_url(client)).rstrip("/")
        self.timeout = timeout
        self._http = requests.Session()

    @property
    def key(self) -> str:
        return self.url

    # -- project -------------------------------------------------------------------------
    def find_project(self, title: str):
        """The project titled ``title`` (``pipeline.labelstudio.projects``: None when there is none; several
        are a LabelStudioError naming their ids)."""
        try:
            return projects.find_project(self.client, title)
        except projects.AmbiguousProject as e:
            raise LabelStudioError(f"{e}: rename all but one, or give the YAML another project_name") from None

    def ensure_project(self, cfg: ProjectConfig, masks: Optional[str] = None) -> tuple[int, str]:
        """(project id, what happened); ``masks``: "brush" / "polygon" for a mask labeling config."""
        config = labeling_config(cfg, masks=masks)
        found = self.find_project(cfg.project_name)
        if found is None:
            p = self.client.projects.create(title=cfg.project_name, label_config=config,
                                            description=(cfg.description or "").strip()[:1000])
            return p.id, f"created project {p.id} {cfg.project_name!r}"
        full = self.client.projects.get(found.id)
        if _norm_xml(full.label_config) == _norm_xml(config):
            return found.id, f"reused project {found.id} {cfg.project_name!r}"
        try:
            self.client.projects.update(found.id, label_config=config)
            return found.id, f"reused project {found.id} {cfg.project_name!r} (labeling config updated from the YAML)"
        except Exception as e:  # noqa: BLE001 - e.g. existing annotations use removed labels
            return found.id, (f"reused project {found.id} {cfg.project_name!r}; its labeling config differs from "
                              f"the YAML and was NOT updated: {str(e)[:300]}")

    # -- tasks ---------------------------------------------------------------------------
    def existing(self, project_id: int) -> dict[str, int]:
        """sha256 -> task id for the project's tasks imported by this tool."""
        out: dict[str, int] = {}
        for t in lsapi.items(self.client.tasks.list, 200, project=project_id, fields="all"):
            meta = getattr(t, "meta", None) or {}
            sha = meta.get("sha256") if isinstance(meta, dict) else None
            if sha:
                out.setdefault(sha, t.id)
        return out

    def upload(self, project_id: int, path: Path) -> str:
        """Upload one file without creating a task; returns the URL for data.image."""
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as fh:
            r = self._http.post(f"{self.url}/api/projects/{project_id}/import",
                                params={"commit_to_project": "false"}, headers=credentials.auth_headers(self.client),
                                files={"file": (path.name, fh, mime)}, timeout=self.timeout)
        if r.status_code >= 400:
            raise LabelStudioError(f"upload of {path.name} failed: HTTP {r.status_code}: {r.text[:300]}")
        ids = r.json().get("file_upload_ids") or []
        if not ids:
            raise LabelStudioError(f"upload of {path.name}: no file_upload_ids in {r.text[:300]}")
        name = self.client.files.get(ids[0]).file
        return name if name.startswith(("/", "http://", "https://")) else f"/data/{name}"

    def ensure_local_storage(self, project_id: int, data_root: Path, document_root: Path) -> None:
        data_root = data_root.resolve()
        if not data_root.is_relative_to(document_root.resolve()):
            raise LabelStudioError(f"local-files storage: data_root {data_root} is not under Label Studio's "
                                   f"LOCAL_FILES_DOCUMENT_ROOT {document_root}")
        for s in self.client.import_storage.local.list(project=project_id):
            if s.path and data_root.is_relative_to(Path(os.path.normpath(s.path))):
                return
        self.client.import_storage.local.create(project=project_id, path=str(data_root),
                                                title="label-factory images", use_blob_urls=True)

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        resp = self.client.projects.import_tasks(project_id, request=tasks, return_task_ids=True)
        ids = list(getattr(resp, "task_ids", None) or [])
        if len(ids) != len(tasks):
            raise LabelStudioError(f"import of {len(tasks)} tasks returned {len(ids)} task ids ({resp!r}); "
                                   "an asynchronous (Enterprise) import is not supported here")
        return ids

    def sync(self, cfg: ProjectConfig, manifest, *, storage: str = "upload",
             document_root: Optional[Path] = None, on_progress: Callable[[int], None] = lambda n: None,
             entries: Optional[Iterable[dict]] = None, masks: Optional[str] = None) -> dict:
        """Import every manifest entry that the project does not have yet.
        Returns {"project", "note", "imported", "already", "missing"}."""
        project_id, note = self.ensure_project(cfg, masks)
        key = f"{self.url}#{project_id}"
        have = self.existing(project_id)
        if storage == "local-files":
            if document_root is None:
                raise LabelStudioError("local-files storage needs the Label Studio document root "
                                       "(--local-files-root or LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
            self.ensure_local_storage(project_id, manifest.data_root, document_root)
        todo, already, missing = [], 0, 0
        for e in (entries if entries is not None else manifest):
            if e["sha256"] in have:
                e.setdefault("label_studio", {})[key] = have[e["sha256"]]
                already += 1
                on_progress(1)
            elif not manifest.file(e).exists():
                missing += 1
                on_progress(1)
            else:
                todo.append(e)
        imported = 0
        for i in range(0, len(todo), BATCH):
            batch = todo[i:i + BATCH]
            tasks = []
            for e in batch:
                path = manifest.file(e)
                url = (local_files_url(path, document_root) if storage == "local-files"
                       else self.upload(project_id, path))
                meta = {k: e.get(k, "") for k in META_KEYS}
                meta.update(sha256=e["sha256"], id=e["id"])
                tasks.append({"data": {IMAGE_NAME: url, **(e.get("data") or {})}, "meta": meta})
            ids = self.import_tasks(project_id, tasks)
            for e, tid in zip(batch, ids):
                e.setdefault("label_studio", {})[key] = tid
            imported += len(ids)
            manifest.save()
            on_progress(len(batch))
        return {"project": project_id, "note": note, "imported": imported, "already": already,
                "missing": missing}

    # -- ML backend ----------------------------------------------------------------------
    def connect_backend(self, project_id: int, url: str, title: str = "label-factory") -> str:
        url = url.rstrip("/")
        backend = None
        for b in self.client.ml.list(project=project_id):
            if (b.url or "").rstrip("/") == url:
                backend = b
                break
        note = f"backend {url} already registered (id {backend.id})" if backend else ""
        if backend is None:
            backend = self.client.ml.create(project=project_id, url=url, title=title, is_interactive=True)
            note = f"registered backend {url} (id {backend.id})"
        self.client.actions.create(id="retrieve_tasks_predictions", project=project_id,
                                   selected_items={"all": True, "excluded": []})
        return note + "; asked Label Studio to retrieve predictions for all tasks"
