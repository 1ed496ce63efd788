"""What a source is: ``search(query, limit) -> list[Candidate]`` for one bucket's query."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import requests

from pipeline.importer.http import RetryableHTTPError
from pipeline.importer.records import Candidate


class SourceError(Exception):
    """One query failed; the source goes on with the next query."""


class SourceGaveUp(Exception):
    """The source cannot go on (e.g. still rate-limited after backing off); its remaining
    queries are skipped, the other sources go on."""


@contextmanager
def api_errors():
    """An API call's failures as source outcomes: 429 after retries gives up on the source,
    anything else fails this query only."""
    try:
        yield
    except RetryableHTTPError as e:
        if e.status == 429:
            raise SourceGaveUp(f"rate-limited (HTTP 429) after retries: {e}") from e
        raise SourceError(str(e)) from e
    except (requests.RequestException, ValueError) as e:
        raise SourceError(f"{type(e).__name__}: {e}") from e


class Source:
    name = "source"

    def search(self, query: str, bucket: str, limit: int) -> list[Candidate]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


def strip_html(value: Optional[str]) -> str:
    """Commons extmetadata values are HTML snippets (links around author names)."""
    if not value:
        return ""
    import html
    import re
    text = re.sub(r"<[^>]+>", "", str(value))
    return " ".join(html.unescape(text).split())
