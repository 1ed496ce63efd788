"""Every environment variable label-factory reads, declared once: its name, type, default and meaning.

The variables come in groups, one pydantic-settings class each (``LabelStudio``, ``Server``, ``Paths``,
``Predict``, ``Images``, ``Video``, ``Models``, ``AnswerCache``, ``Identify``, ``Training``, ``Importer``,
``Stack``), and are read when asked: ``Predict.read().deadline`` reads the environment as it is now (a test may
change it between
two calls), validated; an unchanged environment gives the same object back without reading it again. A
group is validated as a whole, so a bad value stops only what uses its group (``PORT=abc`` stops the
server, not ``label-factory run``), with a ``SettingsError`` that names the variable and what is wrong
with its value, never the value of a token. An empty variable counts as unset.

Secrets (``SecretStr``: Label Studio's API key, the basic-auth password, the Openverse token, a proxy URL
that may carry credentials) are shown only as set or not, and for Label Studio's key which kind it is (a
legacy token or a personal access token, which is exchanged for short-lived access tokens).

Also here, so that this is the one module of ``pipeline`` that touches the environment: ``named`` (a
variable whose name a project YAML gives, e.g. ``providers.vlm.api_key_env``), ``process_environment``
(what a child process inherits: ``up``, ``mlx_vlm.server``, Ray actors) and ``set_in_process``
(``--no-cache`` turns the answer cache off for this process and the ones it starts).

Not here: variables only libraries read (``LIBRARY_VARIABLES`` lists them for the docs), and the
label-studio-ml contract's own reader, ``backends/base/settings.py``: the contract imports no application
code, so it reads the few variables it needs itself, and label-factory's servers hand it these values
instead (``ContractValues``). ``label-factory settings`` prints every value and where it came from;
``docs/reference/settings.md`` is generated from the declarations below (``docs/hooks/settings_reference.py``).
"""
from __future__ import annotations

import contextvars
import functools
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping, Optional, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

DTYPE_SETTINGS = ("auto", "fp32", "bf16", "fp16")  # what a provider's dtype (and LF_DTYPE) may say
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HF_TRUE = ("1", "ON", "YES", "TRUE")  # what huggingface_hub counts as set for its switches

G = TypeVar("G", bound="_Group")


class SettingsError(ValueError):
    """One or more variables have values that cannot be used: each named, with what is wrong."""


def var(default: Any, *names: str, doc: str, secret: bool = False, read_by: str = "",
        overrides: str = "", default_text: str = "", **constraints) -> Any:
    """A field read from the environment variable ``names[0]`` (or, when it is unset, the next names, older
    spellings). ``doc``: what it sets, one sentence or two. ``read_by``: the libraries or programs that read
    it too. ``overrides``: the project YAML field it replaces (``providers.vlm.url``). ``default_text``: the
    default as the docs say it, when the value alone does not (``THREADS - 2``)."""
    alias = AliasChoices(*names) if len(names) > 1 else names[0]
    return Field(default, validation_alias=alias, description=doc, **constraints,
                 json_schema_extra={"names": list(names), "secret": secret, "read_by": read_by,
                                    "overrides": overrides, "default_text": default_text})


_reading: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("lf_settings_environ")


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over the variables ``read`` took from the environment (the
    group's own, empty ones dropped), so the values validated are the ones the cache is keyed on."""

    def _load_env_vars(self) -> Mapping[str, Optional[str]]:
        return dict(_reading.get())


class _Group(BaseSettings):
    """A group of variables (``title`` names it in the docs and ``label-factory settings``); ``read()`` gives
    their values now."""
    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, frozen=True, extra="ignore")
    title: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, _Environment(settings_cls))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every variable name of the group, older spellings included."""
        return _names(cls)

    @classmethod
    def read(cls: type[G], environ: Optional[Mapping[str, str]] = None) -> G:
        """The group's values in ``environ`` (default: this process's environment, now)."""
        return _read(cls, _snapshot(cls, environ))


def _meta(field) -> dict:
    return field.json_schema_extra


@functools.cache
def _names(cls: type[_Group]) -> tuple[str, ...]:
    return tuple(n for f in cls.model_fields.values() for n in _meta(f)["names"])


def _snapshot(cls: type[_Group], environ: Optional[Mapping[str, str]]) -> tuple:
    environ = os.environ if environ is None else environ
    return tuple((n, v) for n in cls.names() if (v := environ.get(n)))


@functools.lru_cache(maxsize=64)
def _read(cls: type[G], items: tuple) -> G:
    token = _reading.set(dict(items))
    try:
        return cls()
    except ValidationError as e:
        raise SettingsError(_explain(cls, dict(items), e)) from None
    finally:
        _reading.reset(token)


def _explain(cls: type[_Group], given: Mapping[str, str], error: ValidationError) -> str:
    secrets = {n for f in cls.model_fields.values() if _meta(f)["secret"] for n in _meta(f)["names"]}
    problems = []
    for err in error.errors(include_url=False):
        name = str(err["loc"][0]) if err["loc"] else cls.__name__
        msg = err["msg"]
        msg = msg.removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        shown = f"{name} (value not shown)" if name in secrets else f"{name}={given.get(name, '')!r}"
        problems.append(f"{shown}: {msg}")
    return "; ".join(problems)


# -- the groups -------------------------------------------------------------------------------------
def _stripped_url(cls, value):
    return value.strip().rstrip("/") if isinstance(value, str) else value


def _lower(cls, value):
    return value.strip().lower() if isinstance(value, str) else value


def _upper(cls, value):
    return value.strip().upper() if isinstance(value, str) else value


class LabelStudio(_Group):
    title: ClassVar[str] = "Label Studio"
    url: str = var("", "LABEL_STUDIO_URL", "LABEL_STUDIO_HOST",
                   doc="Label Studio's base URL, with its sub-path if it has one (inside Docker: "
                       "`http://label-studio:8080`, not localhost). Task images on its host are fetched with "
                       "the API key; it is also the default of every command's `--label-studio-url`.",
                   read_by="label-studio-ml backends (upstream)")
    api_key: SecretStr = var(SecretStr(""), "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN", secret=True,
                             doc="A legacy token, or a personal access token (exchanged for short-lived access "
                                 "tokens and refreshed). Never logged; the default of every `--api-key`.",
                             read_by="label-studio-sdk (once, when imported)")
    local_files_document_root: Optional[Path] = var(
        None, "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT",
        doc="Label Studio's local-files document root: the default of `import --local-files-root`.",
        read_by="Label Studio")

    _url = field_validator("url", mode="before")(_stripped_url)

    @property
    def key(self) -> str:
        return self.api_key.get_secret_value()


class Server(_Group):
    title: ClassVar[str] = "The ML backend server"
    model_class: str = var("backends.autolabel.model:AutoLabelModel", "MODEL_CLASS",
                           doc="The backend class `backends._wsgi` serves (`package.module:Class`).")
    host: str = var("0.0.0.0", "HOST", doc="The address gunicorn listens on.")
    port: int = var(9090, "PORT", ge=0, le=65535, doc="The port gunicorn listens on.")
    workers: int = var(1, "WORKERS", ge=1, doc="gunicorn processes; each loads the models once.")
    threads: int = var(32, "THREADS", ge=1,
                       doc="Request threads per process; /predict may hold all but two of them "
                           "(`PREDICT_MAX_REQUESTS`).")
    timeout: int = var(300, "TIMEOUT", ge=0,
                       doc="Seconds of silence after which gunicorn restarts a worker (0: never).")
    log_level: Literal[LOG_LEVELS] = var("INFO", "LOG_LEVEL", doc="The server's log level (any case).")
    preload_models: bool = var(True, "PRELOAD_MODELS",
                               doc="Load the models in the background when a worker starts, instead of "
                                   "on its first /predict.")
    control_socket: bool = var(False, "GUNICORN_CONTROL_SOCKET",
                               doc="gunicorn 23's runtime control socket (in ~/.gunicorn, shared by every "
                                   "instance); off unless set.")
    basic_auth_user: str = var("", "BASIC_AUTH_USER",
                               doc="With `BASIC_AUTH_PASS`: every route needs HTTP basic auth (/health too).",
                               read_by="label-studio-ml backends (upstream)")
    basic_auth_pass: SecretStr = var(SecretStr(""), "BASIC_AUTH_PASS", secret=True,
                                     doc="The basic-auth password (see `BASIC_AUTH_USER`).",
                                     read_by="label-studio-ml backends (upstream)")

    _level = field_validator("log_level", mode="before")(_upper)


class Paths(_Group):
    title: ClassVar[str] = "Projects and state"
    project_config: Optional[Path] = var(None, "PROJECT_CONFIG",
                                         doc="The project YAML when a connection's extra params name none "
                                             "(any path; set by whoever runs the backend).")
    projects_dir: Path = var(Path("projects"), "PROJECTS_DIR", default_text="./projects",
                             doc="The only place a connection's extra params may pick project YAMLs from "
                                 "(relative to the working directory).")
    model_dir: Path = var(Path("."), "MODEL_DIR",
                          doc="The backend's state: the per-project cache (`cache.db`), the answer cache "
                              "(`answers.db`), the identify indexes and their webhook journal (`identify/`).",
                          read_by="label-studio-ml backends (upstream, same default)")
    cache_type: Literal["sqlite"] = var("sqlite", "CACHE_TYPE", doc="The per-project cache's store (only sqlite).",
                                        read_by="label-studio-ml backends (upstream)")


class Predict(_Group):
    title: ClassVar[str] = "/predict: admission and deadline"
    concurrency: int = var(4, "PREDICT_CONCURRENCY", ge=1,
                           doc="Model slots per process: tasks whose models compute at once (downloads take "
                               "no slot). Also the slots of `predict` and of each Ray actor.")
    slot_wait: float = var(5.0, "PREDICT_SLOT_WAIT", ge=0,
                           doc="Seconds a /predict may wait for its first model slot, in turn; then 503 with "
                               "`Retry-After` (0: no wait).")
    max_requests: Optional[int] = var(None, "PREDICT_MAX_REQUESTS", ge=1, default_text="THREADS - 2",
                                      doc="/predict requests a worker holds at once, downloads and waits "
                                          "included; the next gets 503 with `Retry-After` at once.")
    deadline: float = var(90.0, "PREDICT_DEADLINE",
                          doc="Seconds one /predict may take in all, below Label Studio's 100 (0 or less: none).")

    @property
    def deadline_seconds(self) -> Optional[float]:
        return self.deadline if self.deadline > 0 else None


def _comma_list(cls, value):
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Images(_Group):
    title: ClassVar[str] = "Task images"
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = var(
        (), "ALLOWED_IMAGE_HOSTS",
        doc="Hosts task images may come from besides Label Studio's, comma-separated: `host`, `host:port`, "
            "`.example.com` (any subdomain) or a URL. Any other host is refused.")
    max_bytes: int = var(50_000_000, "MAX_IMAGE_BYTES", ge=1, doc="Bytes read at most per image.")
    fetch_timeout: float = var(30.0, "IMAGE_FETCH_TIMEOUT", gt=0,
                               doc="Seconds one image's download may take in all, redirects included.")
    verify_ssl: bool = var(True, "VERIFY_SSL", doc="Check TLS certificates of image downloads.")

    _hosts = field_validator("allowed_hosts", mode="before")(_comma_list)


class Video(_Group):
    title: ClassVar[str] = "Task videos"
    max_bytes: int = var(4_000_000_000, "VIDEO_MAX_BYTES", ge=1,
                         doc="Bytes of one video at most: a bigger file is refused before it is opened, a "
                             "download stops past it (the video is written to a temporary file, never held).")
    max_pixels: int = var(3840 * 2160, "VIDEO_MAX_PIXELS", ge=1,
                          doc="Pixels of one frame of the stream at most (4K UHD): a bigger stream is refused "
                              "before a frame is decoded.")
    max_frames: int = var(30 * 60 * 60, "VIDEO_MAX_FRAMES", ge=1,
                          doc="Frames of one video at most (an hour at 30 fps), by its header or as decoded.")
    frame_pixels: int = var(1920 * 1080, "VIDEO_FRAME_PIXELS", ge=1,
                            doc="The working resolution frames are handed to the models at, at most (scaled "
                                "by the decoder by a whole factor).")
    seconds: float = var(3600.0, "VIDEO_SECONDS",
                         doc="Seconds decoding (and labelling) one video may take in all, also cut to the "
                             "request's deadline (0 or less: none).")
    fetch_timeout: float = var(600.0, "VIDEO_FETCH_TIMEOUT", gt=0,
                               doc="Seconds one video's download may take in all, redirects included (cut to "
                                   "the request's deadline).")

    @property
    def seconds_limit(self) -> Optional[float]:
        return self.seconds if self.seconds > 0 else None


def _override(provider: str, key: str, what: str) -> Any:
    var_name = f"LF_{'CLIP' if provider == 'identify' else provider.upper()}_{key.upper()}"
    return var(None, var_name, overrides=f"providers.{provider}.{key}",
               doc=f"{what}, over the project YAML's `providers.{provider}.{key}` (validated as the YAML is).")


class Models(_Group):
    title: ClassVar[str] = "Models"
    vlm_kind: Optional[str] = _override("vlm", "kind", "The VLM's kind")
    vlm_url: Optional[str] = _override("vlm", "url", "The VLM server's OpenAI-compatible base URL")
    vlm_model: Optional[str] = _override("vlm", "model", "The VLM model")
    grounder_kind: Optional[str] = _override("grounder", "kind", "The grounder's kind")
    grounder_model: Optional[str] = _override("grounder", "model", "The grounder model")
    segmenter_model: Optional[str] = _override("segmenter", "model", "The segmenter model")
    clip_model: Optional[str] = _override("identify", "model", "The identify embedder (open_clip name or config JSON)")
    clip_pretrained: Optional[str] = _override("identify", "pretrained",
                                               "The identify embedder's weights (`none`: random weights)")
    vlm_dtype: Optional[str] = _override("vlm", "dtype", "The VLM's dtype")
    grounder_dtype: Optional[str] = _override("grounder", "dtype", "The grounder's dtype")
    segmenter_dtype: Optional[str] = _override("segmenter", "dtype", "The segmenter's dtype")
    clip_dtype: Optional[str] = _override("identify", "dtype", "The identify embedder's dtype")
    dtype: Literal[DTYPE_SETTINGS] = var("auto", "LF_DTYPE",
                                         doc="What `dtype: auto` means for every provider (any case); auto: bf16 "
                                             "where the chip runs it natively and faster, fp16 on CUDA without "
                                             "bf16 and on MPS, else fp32.")
    hf_hub_offline: Optional[str] = var(None, "HF_HUB_OFFLINE", read_by="huggingface_hub",
                                        doc="1: never ask the Hugging Face hub; a model that is not on the machine "
                                            "is reported at once, with how to get it.")
    transformers_offline: Optional[str] = var(None, "TRANSFORMERS_OFFLINE", read_by="transformers",
                                              doc="1: as `HF_HUB_OFFLINE`, for transformers.")

    _dtype = field_validator("dtype", mode="before")(_lower)

    @classmethod
    def override_fields(cls) -> dict[str, tuple[str, str]]:
        """Variable -> (provider, key) of the project YAML it overrides."""
        out = {}
        for f in cls.model_fields.values():
            if _meta(f)["overrides"]:
                _, provider, key = _meta(f)["overrides"].split(".")
                out[_meta(f)["names"][0]] = (provider, key)
        return out

    def overrides(self) -> dict[str, str]:
        """The YAML overrides that are set (variable -> value)."""
        names = {_meta(f)["names"][0]: name for name, f in type(self).model_fields.items()}
        return {v: getattr(self, names[v]) for v in self.override_fields() if getattr(self, names[v])}

    @property
    def offline(self) -> bool:
        """HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set, as huggingface_hub reads them."""
        return any((v or "").strip().upper() in HF_TRUE for v in (self.hf_hub_offline, self.transformers_offline))


class AnswerCache(_Group):
    title: ClassVar[str] = "Answer cache"
    enabled: bool = var(True, "LF_ANSWER_CACHE",
                        doc="Keep every model answer in `MODEL_DIR/answers.db` and reuse it (`0`: off; "
                            "`--no-cache` does the same for one command).")
    mb: float = var(1024.0, "LF_ANSWER_CACHE_MB", gt=0,
                    doc="The answer cache's bound in MiB; past it the least recently used answers go.")

    @property
    def max_bytes(self) -> int:
        return max(1, int(self.mb * 1024 * 1024))


class Identify(_Group):
    title: ClassVar[str] = "Identify"
    catchup_interval: float = var(600.0, "IDENTIFY_CATCHUP_INTERVAL", ge=0,
                                  doc="Seconds between comparisons of a project's identify index with Label "
                                      "Studio's annotations (0: only when the index has none at all).")
    ann_min: int = var(50_000, "LF_ANN_MIN", ge=0,
                       doc="Vectors above which an identify index is searched approximately (IVF-SQ8).")
    ann_nprobe: int = var(32, "LF_ANN_NPROBE", ge=1, doc="IVF lists probed per approximate search.")
    ann_nlist: int = var(0, "LF_ANN_NLIST", ge=0, doc="IVF lists (0: about the square root of the vectors).")
    ann_build: Literal["background", "sync"] = var("background", "LF_ANN_BUILD",
                                                   doc="Build the approximate index in a background thread, "
                                                       "or in the caller (`sync`: tests, benchmarks, batch jobs).")
    ann_max_changes: int = var(20_000, "LF_ANN_MAX_CHANGES", ge=0,
                               doc="Vectors added and removed since the approximate index was built, above "
                                   "which it is rebuilt.")
    faiss_threads: int = var(1, "LF_FAISS_THREADS", ge=1, doc="faiss's OpenMP threads per process.")

    _build = field_validator("ann_build", mode="before")(_lower)


class Importer(_Group):
    title: ClassVar[str] = "Importer (`label-factory import`)"
    user_agent: str = var("label-factory-importer/0.1 (https://github.com/label-factory; dataset building for "
                          "annotation)", "LF_USER_AGENT", doc="The User-Agent of every importer request.")
    wikimedia_api: str = var("https://commons.wikimedia.org/w/api.php", "LF_WIKIMEDIA_API",
                             doc="Wikimedia Commons' API endpoint.")
    wikimedia_thumb_width: int = var(2048, "LF_WIKIMEDIA_THUMB_WIDTH", ge=0,
                                     doc="Width of the Commons rendition downloaded (0: the originals).")
    openverse_api: str = var("https://api.openverse.org/v1", "LF_OPENVERSE_API", doc="Openverse's API base URL.")
    openverse_token: SecretStr = var(SecretStr(""), "LF_OPENVERSE_TOKEN", secret=True,
                                     doc="An Openverse API token (higher rate limits).")
    ddgs_backend: str = var("duckduckgo", "LF_DDGS_BACKEND", doc="The ddgs search backend for image search.")
    ddgs_proxy: SecretStr = var(SecretStr(""), "LF_DDGS_PROXY", secret=True,
                                doc="A proxy for DuckDuckGo image search (may hold credentials: not shown).")

    _api = field_validator("openverse_api", mode="before")(_stripped_url)


class Training(_Group):
    title: ClassVar[str] = "Training from Label Studio (*Start Training*, `label-factory train --project`)"
    model: str = var("yolo11n.yaml", "LF_TRAIN_MODEL",
                     doc="What the student trains from: an ultralytics architecture config (random initial "
                         "weights, nothing downloaded) or a checkpoint file (`yolo11n.pt`).")
    epochs: int = var(100, "LF_TRAIN_EPOCHS", ge=1, doc="Training epochs.")
    imgsz: int = var(640, "LF_TRAIN_IMGSZ", ge=32, doc="Training image size (the student predicts at it too).")
    batch: int = var(16, "LF_TRAIN_BATCH", ge=1, doc="Images per training batch.")
    device: str = var("auto", "LF_TRAIN_DEVICE", doc="auto | cpu | cuda | cuda:N | mps.")
    workers: int = var(2, "LF_TRAIN_WORKERS", ge=0, doc="Data loader processes of a training (0: in the trainer).")
    split: str = var("0.8,0.1,0.1", "LF_TRAIN_SPLIT",
                     doc="train,val,test shares of the reviewed tasks (by task id); the test split is the held-out "
                         "set the promotion rule scores both students on.")
    min_gain: float = var(0.0, "LF_TRAIN_MIN_GAIN", ge=0,
                          doc="Held-out AP50:95 the new student must beat the served one by to be promoted.")
    runs_kept: int = var(3, "LF_TRAIN_RUNS_KEPT", ge=1,
                         doc="Training runs (export, weights, metrics, log) kept per project under "
                             "`MODEL_DIR/training/<project id>/runs`.")

    _device = field_validator("device", mode="before")(_lower)


class Stack(_Group):
    title: ClassVar[str] = "label-factory up"
    label_studio_bin: Optional[Path] = var(None, "LABEL_STUDIO_BIN",
                                           doc="The `label-studio` executable `up` and the tests start "
                                               "(default: .venv-ls's, else the one on PATH); "
                                               "scripts/ls_compat.py sets it to each version it checks.")
    label_studio_start_timeout: float = var(300.0, "LABEL_STUDIO_START_TIMEOUT", gt=0,
                                            doc="Seconds `up` waits for Label Studio to answer.")


GROUPS: tuple[type[_Group], ...] = (LabelStudio, Server, Paths, Predict, Images, Video, Models, AnswerCache,
                                    Identify, Training, Importer, Stack)


@dataclass(frozen=True)
class LibraryVariable:
    name: str
    read_by: str
    doc: str


LIBRARY_VARIABLES = (
    LibraryVariable("HF_ENDPOINT", "huggingface_hub", "The hub a model that is not on the machine is fetched from."),
    LibraryVariable("RAY_AUTH_TOKEN", "Ray", "The token shared by the nodes of the compose file's Ray cluster."),
    LibraryVariable("RAY_AUTH_TOKEN_PATH", "Ray", "A file holding that token (Ray's default: ~/.ray/auth_token); "
                    "`predict --ray ADDRESS` sends it too."),
    LibraryVariable("RAY_AUTH_MODE", "Ray", "`token` turns Ray's token authentication on; `predict --ray ADDRESS` "
                    "sets it when a token is at hand and it is unset."),
    LibraryVariable("OMP_NUM_THREADS", "torch, faiss, ultralytics",
                    "OpenMP threads; label-factory keeps ultralytics from setting it to 1 for the whole process."),
    LibraryVariable("DDGS_PROXY", "ddgs", "ddgs's own proxy setting (`LF_DDGS_PROXY` wins)."),
)


# -- the environment as a whole ---------------------------------------------------------------------
def check(groups: tuple[type[_Group], ...] = GROUPS, environ: Optional[Mapping[str, str]] = None) -> None:
    """Read ``groups`` now: one ``SettingsError`` naming every bad value among them (a server checks the
    groups it uses when it starts, rather than failing its first request)."""
    problems = []
    for group in groups:
        try:
            group.read(environ)
        except SettingsError as e:
            problems.append(str(e))
    if problems:
        raise SettingsError("; ".join(problems))


def named(name: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """The value of a variable whose name is the project's to choose (``providers.vlm.api_key_env``), or
    "" when it is unset. A secret: never log it."""
    return ((os.environ if environ is None else environ).get(name) or "").strip()


def process_environment() -> dict[str, str]:
    """A copy of this process's environment, for a process it starts (``up``, ``mlx_vlm.server``, Ray
    actors), which then reads its settings the same way."""
    return dict(os.environ)


def set_in_process(name: str, value: str) -> None:
    """Set a declared variable for this process and the processes it starts (``--no-cache``:
    ``LF_ANSWER_CACHE=0``)."""
    if not any(name in g.names() for g in GROUPS):
        raise KeyError(f"{name} is not a label-factory setting")
    os.environ[name] = value


class ContractValues:
    """What the label-studio-ml contract reads (``backends/base/settings.py``: one attribute per value, each
    read when asked), from these settings: label-factory's servers hand it one (``settings.use``)."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None):
        self._environ = environ

    model_dir = property(lambda self: str(Paths.read(self._environ).model_dir))
    cache_type = property(lambda self: Paths.read(self._environ).cache_type)
    basic_auth_user = property(lambda self: Server.read(self._environ).basic_auth_user)
    basic_auth_pass = property(lambda self: Server.read(self._environ).basic_auth_pass.get_secret_value())
    predict_concurrency = property(lambda self: Predict.read(self._environ).concurrency)
    predict_slot_wait = property(lambda self: Predict.read(self._environ).slot_wait)
    predict_max_requests = property(lambda self: Predict.read(self._environ).max_requests)
    label_studio_url = property(lambda self: LabelStudio.read(self._environ).url)
    label_studio_api_key = property(lambda self: LabelStudio.read(self._environ).key)


# -- describing them: `label-factory settings` and the docs -----------------------------------------
@dataclass(frozen=True)
class Variable:
    """One declared variable, as the docs and ``label-factory settings`` show it."""
    group: type[_Group]
    field: str
    name: str
    also: tuple[str, ...]  # older spellings, read when ``name`` is unset
    type: str
    default: str
    doc: str
    secret: bool
    read_by: str
    overrides: str


def _type_name(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        return "comma-separated list"
    return {str: "text", int: "integer", float: "number", bool: "switch",
            Path: "path", SecretStr: "secret"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _shown_default(f) -> str:
    meta = _meta(f)
    if meta["default_text"]:
        return meta["default_text"]
    value = f.default
    if isinstance(value, SecretStr) or value in (None, (), ""):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def variables() -> list[Variable]:
    """Every declared variable, in the order of ``GROUPS`` and of their fields."""
    out = []
    for group in GROUPS:
        for field_name, f in group.model_fields.items():
            meta = _meta(f)
            out.append(Variable(group, field_name, meta["names"][0], tuple(meta["names"][1:]),
                                _type_name(f.annotation), _shown_default(f), f.description or "", meta["secret"],
                                meta["read_by"], meta["overrides"]))
    return out


def token_kind(token: str) -> str:
    """What kind of Label Studio API key ``token`` is: a personal access token is a JWT (refresh token)."""
    return "personal access token" if token.count(".") == 2 and token.startswith("eyJ") else "legacy token"


@dataclass(frozen=True)
class Effective:
    """A variable's value now and where it came from (``source``: ``environment``, ``environment (NAME)``
    for an older spelling, ``default``, or a project YAML's field); ``error`` when the value is unusable."""
    variable: Variable
    value: Any
    source: str
    error: str = ""

    def shown(self) -> str:
        """The value as printed: secrets only as set or not (and a Label Studio key's kind)."""
        if self.error:
            return "invalid (see below)"
        if self.variable.secret:
            secret = self.value.get_secret_value() if isinstance(self.value, SecretStr) else str(self.value or "")
            if not secret:
                return "(not set)"
            return f"set: {token_kind(secret)}" if self.variable.name == "LABEL_STUDIO_API_KEY" else "set"
        if self.value in (None, (), ""):
            return f"(not set: {self.variable.default})" if self.variable.default else "(not set)"
        if isinstance(self.value, bool):
            return "1" if self.value else "0"
        if isinstance(self.value, tuple):
            return ",".join(self.value)
        return str(self.value)

    def as_json(self) -> dict:
        v = self.variable
        out = {"name": v.name, "group": v.group.title, "value": None, "source": self.source, "type": v.type,
               "default": v.default or None, "doc": v.doc}
        if v.also:
            out["also"] = list(v.also)
        if v.secret:
            shown = self.shown()
            out.update(secret=True, set=shown.startswith("set"))
            if v.name == "LABEL_STUDIO_API_KEY" and out["set"]:
                out["kind"] = shown.split(": ", 1)[1]
        elif not self.error:
            value = self.value
            out["value"] = list(value) if isinstance(value, tuple) else \
                str(value) if isinstance(value, Path) else None if value == "" else value
        if self.error:
            out["error"] = self.error
        return out


def effective(environ: Optional[Mapping[str, str]] = None, yaml_values: Optional[Mapping[str, Any]] = None,
              yaml_source: str = "") -> list[Effective]:
    """Every variable's value in ``environ`` (default: the environment now) and where it came from.
    ``yaml_values``: the project YAML's values of the fields the LF_* overrides replace (variable ->
    value), shown for an override that is unset, as coming from ``yaml_source``. A group with a bad value
    still shows its other variables; the bad one carries its error."""
    environ = os.environ if environ is None else environ
    yaml_values = yaml_values or {}
    out = []
    for group in GROUPS:
        try:
            values, errors = group.read(environ), {}
        except SettingsError:  # read each variable alone: the bad ones get their error, the rest their value
            values, errors = {}, {}
            for name, f in group.model_fields.items():
                try:
                    values[name] = getattr(group.read({n: environ[n] for n in _meta(f)["names"] if environ.get(n)}),
                                           name)
                except SettingsError as e:
                    values[name], errors[name] = None, str(e)
        for v in (x for x in variables() if x.group is group):
            given = next((n for n in (v.name, *v.also) if environ.get(n)), None)
            value = values[v.field] if isinstance(values, dict) else getattr(values, v.field)
            if given:
                source = "environment" if given == v.name else f"environment ({given})"
            elif v.overrides and v.name in yaml_values:
                value, source = yaml_values[v.name], f"{yaml_source}: {v.overrides}"
            else:
                source = "default"
            out.append(Effective(v, value, source, errors.get(v.field, "")))
    return out
