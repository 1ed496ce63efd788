"""Connect a command-line job to a Label Studio project: the options every such job takes
(``--label-studio-url``, ``--api-key``, ``--ls-project``), the SDK client, and the project found
by its title. Shared by ``label-factory predict`` and ``label-factory evaluate``.

URL and key default to LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY (backends/base/credentials.py);
the key may be a legacy token or a personal access token (the SDK exchanges and refreshes it).
The key is never printed."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from backends.base import credentials


class ConnectError(RuntimeError):
    """No URL or key, no project with that title, or several."""


@dataclass
class Connection:
    url: str
    api_key: str = field(repr=False)
    client: object = field(repr=False)

    def project_id(self, ls_project, title: str) -> int:
        """``ls_project`` when given, else the id of the one project titled ``title``."""
        return ls_project or find_project_id(self.client, title)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-studio-url", default=None, help="Label Studio URL (default: env LABEL_STUDIO_URL)")
    p.add_argument("--api-key", default=None,
                   help="legacy token or personal access token (default: env LABEL_STUDIO_API_KEY)")
    p.add_argument("--ls-project", type=int, default=None,
                   help="Label Studio project id (default: the project titled like the YAML's project_name)")


def connect(args, timeout: float = 120) -> Connection:
    """The SDK client for ``args.label_studio_url`` / ``args.api_key`` (or the environment's)."""
    url = (args.label_studio_url or credentials.label_studio_url()).rstrip("/")
    api_key = args.api_key or credentials.label_studio_api_key()
    if not url or not api_key:
        raise ConnectError("Label Studio needs a URL and an API key (--label-studio-url/--api-key or "
                           "LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY)")
    from label_studio_sdk import LabelStudio
    return Connection(url, api_key, LabelStudio(base_url=url, api_key=api_key, timeout=timeout))


def find_project_id(client, title: str) -> int:
    """The id of the one Label Studio project titled ``title``."""
    matches = [p for p in client.projects.list(title=title, page_size=100) if p.title == title]
    if not matches:
        raise ConnectError(f"no Label Studio project titled {title!r} (the YAML's project_name): create it with "
                           "`label-factory import`, or pass --ls-project ID")
    if len(matches) > 1:
        raise ConnectError(f"{len(matches)} Label Studio projects are titled {title!r} (ids "
                           f"{', '.join(str(p.id) for p in matches)}): pass --ls-project ID")
    return matches[0].id
