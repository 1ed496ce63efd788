"""A Label Studio project found by its title (a project YAML's ``project_name``), one rule for every caller.

``find_project(client, title)``: the one project titled exactly ``title``, or None when there is none (the
caller decides: ``import`` creates it, ``predict``/``evaluate``/``calibrate``/``export`` say how to make or
name one). Several projects with that title are an error naming their ids (``AmbiguousProject``): which
one is meant cannot be guessed, and taking the first would write to or read from the wrong one."""
from __future__ import annotations

from pipeline.labelstudio import lsapi


class AmbiguousProject(LookupError):
    """More than one Label Studio project has the title; the message names their ids."""

    def __init__(self, title: str, ids: list[int]):
        self.title, self.ids = title, ids
        super().__init__(f"{len(ids)} Label Studio projects are titled {title!r} (ids {', '.join(map(str, ids))})")


def find_project(client, title: str):
    """The Label Studio project titled exactly ``title`` (its list entry), None when there is none;
    ``AmbiguousProject`` when there are several."""
    # the API's title filter matches substrings: exact titles only
    matches = [p for p in lsapi.items(client.projects.list, title=title) if p.title == title]
    if len(matches) > 1:
        raise AmbiguousProject(title, sorted(p.id for p in matches))
    return matches[0] if matches else None

