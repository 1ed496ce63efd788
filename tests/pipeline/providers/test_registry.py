"""Provider registry: one instance per model per process, loaded once under concurrent callers."""
import sys
import threading
import time
import types

import pytest

from pipeline.config import GrounderProvider, VLMProvider
from pipeline.providers import registry
from pipeline.providers.hf_detectors import GroundingDINOGrounder, OWLv2Grounder
from pipeline.providers.transformers_vlm import TransformersVLM
from tests.threads import run_at_once


@pytest.fixture(autouse=True)
def fresh_cache():
    registry.providers.clear()
    yield
    registry.providers.clear()


def count_inits(monkeypatch, cls):
    """Spy on cls.__init__ (the real loader still runs) and return the list of calls."""
    calls = []
    real = cls.__init__

    def init(self, *a, **k):
        calls.append(threading.get_ident())
        real(self, *a, **k)
    monkeypatch.setattr(cls, "__init__", init)
    return calls


def test_vlm_is_cached(tiny_qwen_dir, monkeypatch):
    calls = count_inits(monkeypatch, TransformersVLM)
    cfg = VLMProvider(kind="transformers", model=str(tiny_qwen_dir), device="cpu")
    a = registry.get_vlm(cfg)
    b = registry.get_vlm(VLMProvider(kind="transformers", model=str(tiny_qwen_dir), device="cpu"))
    assert isinstance(a, TransformersVLM) and a is b and len(calls) == 1
    # fields that do not matter to the transformers kind do not split the cache
    assert registry.get_vlm(cfg.model_copy(update={"timeout": 5.0, "concurrency": 7})) is a
    # fields that do, do
    c = registry.get_vlm(cfg.model_copy(update={"max_batch": 2}))
    assert c is not a and c.max_batch == 2 and len(calls) == 2
    registry.providers.clear()
    assert registry.get_vlm(cfg) is not a and len(calls) == 3


def test_grounders_by_kind(tiny_owlv2_dir, tiny_gdino_dir):
    o = registry.get_grounder(GrounderProvider(kind="owlv2", model=str(tiny_owlv2_dir), device="cpu"))
    g = registry.get_grounder(GrounderProvider(kind="grounding-dino", model=str(tiny_gdino_dir), device="cpu"))
    assert isinstance(o, OWLv2Grounder) and isinstance(g, GroundingDINOGrounder)
    assert registry.get_grounder(GrounderProvider(kind="owlv2", model=str(tiny_owlv2_dir), device="cpu")) is o
    assert len(registry.providers.keys()) == 2


def test_loads_once_under_threads(tiny_owlv2_dir, tiny_qwen_dir, monkeypatch):
    owl_calls = count_inits(monkeypatch, OWLv2Grounder)
    vlm_calls = count_inits(monkeypatch, TransformersVLM)
    gcfg = GrounderProvider(kind="owlv2", model=str(tiny_owlv2_dir), device="cpu")
    vcfg = VLMProvider(kind="transformers", model=str(tiny_qwen_dir), device="cpu")
    n = 8
    got, errors = run_at_once(n, lambda i: (i % 2, registry.get_grounder(gcfg) if i % 2 else registry.get_vlm(vcfg)))
    assert not errors
    assert len(owl_calls) == 1 and len(vlm_calls) == 1
    assert len({id(obj) for kind, obj in got if kind == 1}) == 1
    assert len({id(obj) for kind, obj in got if kind == 0}) == 1
    assert len(got) == n


def test_load_error_is_not_cached(tmp_path, tiny_owlv2_dir):
    from pipeline.providers.base import ProviderError
    cfg = GrounderProvider(kind="owlv2", model=str(tmp_path / "missing"), device="cpu")
    with pytest.raises(ProviderError):
        registry.get_grounder(cfg)
    assert registry.providers.keys() == []


def _fake_module(monkeypatch, name, cls_name):
    """Stand-in for a provider module another engineer owns: records the configs it is built from."""
    built = []

    class Fake:
        @classmethod
        def from_config(cls, cfg):
            built.append(cfg)
            return cls()
    mod = types.ModuleType(name)
    setattr(mod, cls_name, Fake)
    monkeypatch.setitem(sys.modules, name, mod)
    return Fake, built


def test_openai_vlm_dispatches_lazily(monkeypatch):
    Fake, built = _fake_module(monkeypatch, "pipeline.providers.openai_vlm", "OpenAIVLM")
    cfg = VLMProvider(kind="openai", url="http://127.0.0.1:1/v1")
    a = registry.get_vlm(cfg)
    assert isinstance(a, Fake) and built == [cfg]
    assert registry.get_vlm(VLMProvider(kind="openai", url="http://127.0.0.1:1/v1")) is a
    assert registry.get_vlm(VLMProvider(kind="openai", url="http://127.0.0.1:2/v1")) is not a
    assert len(built) == 2


def test_falcon_dispatches_lazily(monkeypatch):
    Fake, built = _fake_module(monkeypatch, "pipeline.providers.falcon", "FalconGrounder")
    cfg = GrounderProvider(kind="falcon")
    a = registry.get_grounder(cfg)
    assert isinstance(a, Fake) and built == [cfg]
    assert registry.get_grounder(GrounderProvider(kind="falcon")) is a
    assert registry.get_grounder(GrounderProvider(kind="falcon", max_new_tokens=8)) is not a


def test_a_load_is_waited_for_no_longer_than_the_request_deadline(monkeypatch):
    """Under a deadline a slow load fails the caller when the deadline runs out, naming the model; the load goes
    on and the next request takes the same provider (built once)."""
    from pipeline import deadline
    from pipeline.config import SegmenterProvider
    from pipeline.providers.hub import ModelUnavailable
    release = threading.Event()
    Fake, built = _fake_module(monkeypatch, "pipeline.providers.sam", "SamSegmenter")
    real = Fake.from_config.__func__
    monkeypatch.setattr(Fake, "from_config", classmethod(lambda cls, cfg: release.wait(30) and real(cls, cfg)))
    cfg = SegmenterProvider(model="facebook/sam-vit-base")
    t0 = time.monotonic()
    with deadline.within(0.5, "PREDICT_DEADLINE"), pytest.raises(ModelUnavailable) as e:
        registry.get_segmenter(cfg)
    assert time.monotonic() - t0 < 10  # the load itself takes until release (30 s without it)
    assert "the request's 0.5 s deadline (PREDICT_DEADLINE) ran out while the segmenter 'facebook/sam-vit-base' " \
           "was loading" in str(e.value)
    release.set()
    with deadline.within(10, "PREDICT_DEADLINE"):
        seg = registry.get_segmenter(cfg)
    assert isinstance(seg, Fake) and registry.get_segmenter(cfg) is seg and len(built) == 1


def test_a_provider_that_cannot_be_built_is_model_unavailable(monkeypatch):
    from pipeline.providers.hub import ModelUnavailable
    Fake, _ = _fake_module(monkeypatch, "pipeline.providers.openai_vlm", "OpenAIVLM")
    monkeypatch.setattr(Fake, "from_config", classmethod(lambda cls, cfg: 1 / 0))
    with pytest.raises(ModelUnavailable, match="VLM openai 'mlx-community/.*' cannot be loaded: ZeroDivisionError"):
        registry.get_vlm(VLMProvider(kind="openai", url="http://127.0.0.1:1/v1"))


def test_two_models_are_never_built_at_the_same_time(monkeypatch):
    """Different models load one after the other: transformers' meta-device construction is process-wide, and a
    model built beside another one's load could be left with meta tensors."""
    building, most = [], []
    lock = threading.Lock()

    class Slow:
        @classmethod
        def from_config(cls, cfg):
            with lock:
                building.append(cfg.model)
                most.append(len(building))
            time.sleep(0.3)
            with lock:
                building.remove(cfg.model)
            return cls()

    module = types.ModuleType("lf_test_slow_models")
    module.Slow = Slow
    monkeypatch.setitem(sys.modules, "lf_test_slow_models", module)
    monkeypatch.setitem(registry._GROUNDER_CLASSES, "owlv2", "lf_test_slow_models:Slow")
    registry.providers.clear()
    cfgs = [GrounderProvider(kind="owlv2", model=f"m{i}", device="cpu") for i in range(3)]
    try:
        got, errors = run_at_once(3, lambda i: registry.get_grounder(cfgs[i]))
    finally:
        registry.providers.clear()
    assert not errors and len(got) == 3 and len({id(g) for g in got}) == 3
    assert max(most) == 1
