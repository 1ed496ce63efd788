"""After a batch predict, make the Label Studio project's model_version the version just answered.

Label Studio scores and sorts the Data Manager's *Prediction score* column only for predictions of the
project's model_version, which it sets to the backend's title on connect (pipeline/labelstudio/lsapi.py says
where). It stores the predictions only after ``/predict`` has answered and refuses a version it has no
prediction of, so one daemon thread per process waits for them (polling ``use_version`` until it is
accepted, at most WAIT seconds), newest version per project first. Interactive suggestions are not
stored by Label Studio and change nothing here. Needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY; without
them the project's model_version is left alone (logged once)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from pipeline.labelstudio import client as credentials
from pipeline.labelstudio.lsapi import VersionNotStored, use_version

log = logging.getLogger(__name__)

WAIT = 120.0  # seconds to wait for Label Studio to store a version's predictions
POLL = 1.0


def _client():
    """The backend's process-wide Label Studio client (credentials.client), None when none is configured."""
    if not (credentials.label_studio_url() and credentials.label_studio_api_key()):
        return None
    return credentials.client()


class VersionKeeper:
    def __init__(self, client_factory: Callable = _client, wait: float = WAIT, poll: float = POLL):
        self._client_factory, self.wait, self.poll = client_factory, wait, poll
        self._pending: dict[str, tuple[str, float]] = {}  # project id -> (version, give-up time)
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._client = None
        self._warned = False

    def __call__(self, project_id, version: str) -> None:
        """Non-blocking: remember that ``project_id`` now has predictions of ``version`` on their way."""
        if not project_id or not version:
            return
        with self._cond:
            self._pending[str(project_id)] = (version, time.monotonic() + self.wait)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="project-model-version", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                todo = dict(self._pending)
            for project_id, (version, give_up) in todo.items():
                done = self._try(project_id, version, give_up)
                with self._cond:
                    if done and self._pending.get(project_id, (None,))[0] == version:
                        del self._pending[project_id]
            with self._cond:
                if self._pending:
                    self._cond.wait(self.poll)

    def _try(self, project_id: str, version: str, give_up: float) -> bool:
        """True when finished with this version (set, already set, or given up)."""
        try:
            if self._client is None:
                self._client = self._client_factory()
            if self._client is None:
                if not self._warned:
                    log.warning("LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY not set: the Label Studio project's "
                                "model_version is not kept equal to %r (its Prediction score column stays empty)",
                                version)
                    self._warned = True
                return True
            use_version(self._client, int(project_id), version)
            return True
        except VersionNotStored:
            if time.monotonic() < give_up:
                return False
            log.warning("Label Studio project %s stored no prediction of %r within %.0f s: its model_version is "
                        "left as it was", project_id, version, self.wait)
            return True
        except Exception as e:  # noqa: BLE001 - never let this thread die; predictions are stored anyway
            log.warning("Label Studio project %s: cannot set its model_version to %r: %s: %s", project_id, version,
                        type(e).__name__, str(e)[:300])
            return True


keep = VersionKeeper()
