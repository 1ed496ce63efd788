"""pipeline/labelstudio/projects.py: one rule for finding a project by its title, for every command."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.config import parse_project
from pipeline.labelstudio.projects import AmbiguousProject, find_project
from tests.doubles.label_studio import page_of


def client(titles: dict):
    """Projects ``{id: title}`` listed page by page; Label Studio's title filter matches substrings."""
    def listing(page, page_size, title=None, **kw):
        rows = [SimpleNamespace(id=i, title=t) for i, t in titles.items()
                if title is None or title.lower() in t.lower()]
        return page_of(rows, page, page_size)
    created = []
    return SimpleNamespace(projects=SimpleNamespace(
        list=listing, create=lambda **kw: created.append(kw) or SimpleNamespace(id=99, **kw),
        get=lambda id: SimpleNamespace(id=id, label_config=""), update=lambda *a, **kw: None)), created


def test_exactly_one_match_none_or_a_clear_error():
    ls, _ = client({3: "signs", 4: "signs v2", 5: "other"})
    assert find_project(ls, "signs").id == 3  # "signs v2" matches the API's filter, not the title
    assert find_project(ls, "nope") is None
    ls, _ = client({3: "signs", 8: "signs", 9: "other"})
    with pytest.raises(AmbiguousProject, match=r"2 Label Studio projects are titled 'signs' \(ids 3, 8\)"):
        find_project(ls, "signs")


def test_predict_and_import_follow_the_one_rule():
    """predict: none or several is an error; import: none is created, several is an error naming the ids (before,
    the importer took the first and wrote tasks into it)."""
    from pipeline.importer.ls_project import LabelStudioError, LabelStudioTarget
    from pipeline.predict.job import JobError, find_project_id

    cfg = parse_project({"project_name": "signs", "target_object": "stop sign", "label": "Stop Sign"})
    ls, created = client({3: "signs", 8: "signs"})
    with pytest.raises(JobError, match=r"ids 3, 8\): pass --ls-project ID"):
        find_project_id(ls, "signs")
    with pytest.raises(LabelStudioError, match=r"ids 3, 8"):
        LabelStudioTarget("http://127.0.0.1:9", client=ls).ensure_project(cfg)
    assert created == []
    ls, created = client({5: "other"})
    with pytest.raises(JobError, match="no Label Studio project titled 'signs'"):
        find_project_id(ls, "signs")
    assert LabelStudioTarget("http://127.0.0.1:9", client=ls).ensure_project(cfg)[0] == 99
    assert [c["title"] for c in created] == ["signs"]
