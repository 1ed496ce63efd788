"""What a source is: ``search(query, bucket, limit) -> list[Candidate]`` for one bucket's query,
read page by page from the source's API until ``limit`` candidates are in hand or the API has no more."""
from __future__ import annotations

import html
import re
from contextlib import contextmanager
from typing import Iterator, Optional

import requests

from pipeline.importer.records import Candidate
from pipeline.retry import Transient


class SourceError(Exception):
    """One query failed; the source goes on with the next query."""


class SourceGaveUp(Exception):
    """The source cannot go on (e.g. still rate-limited after backing off); its remaining
    queries are skipped, the other sources go on. ``partial``: what this query had found on the
    pages fetched before (kept)."""

    def __init__(self, message: str, partial: Optional[list[Candidate]] = None):
        super().__init__(message)
        self.partial = partial or []


@contextmanager
def api_errors():
    """An API call's failures as source outcomes: 429 after retries gives up on the source,
    anything else fails this query only."""
    try:
        yield
    except Transient as e:
        if e.status == 429:
            raise SourceGaveUp(f"rate-limited (HTTP 429) after retries: {e}") from e
        raise SourceError(str(e)) from e
    except (requests.RequestException, ValueError) as e:
        raise SourceError(f"{type(e).__name__}: {e}") from e


class Source:
    name = "source"

    def __init__(self):
        self.notes: list[str] = []   # why a query stopped short of its limit (read and cleared by gather)

    def pages(self, query: str, bucket: str, limit: int) -> Iterator[list[Candidate]]:
        """The query's candidates, one API page per item, in rank order; ``limit`` is a hint for
        the page size. Ends when the API has no more (or a cap is reached: then ``self.note``)."""
        raise NotImplementedError

    def search(self, query: str, bucket: str, limit: int) -> list[Candidate]:
        """Up to ``limit`` candidates (distinct image URLs), ``rank`` = position. A failure after
        the first page keeps the pages already fetched, with a note."""
        out: list[Candidate] = []
        seen: set[str] = set()
        pages = self.pages(query, bucket, limit)
        try:
            for page in pages:
                for c in page:
                    if c.image_url in seen:
                        continue
                    seen.add(c.image_url)
                    c.rank = len(out)
                    out.append(c)
                    if len(out) >= limit:
                        return out
        except SourceGaveUp as e:
            e.partial = out
            raise
        except SourceError as e:
            if not out:
                raise
            self.note(f"{query!r}: stopped after {len(out)} results: {e}")
        finally:
            pages.close()
        return out

    def note(self, text: str) -> None:
        self.notes.append(text)

    def describe(self) -> str:
        return self.name


def strip_html(value: Optional[str]) -> str:
    """Commons extmetadata values are HTML snippets (links around author names)."""
    if not value:
        return ""
    text = re.sub(r"<[^>]+>", "", str(value))
    return " ".join(html.unescape(text).split())
