"""The server's MLflow tracking store and MLflow's own tracking server (its Flask app) over it.

One store serves every MLflow App: each app is a workspace of it (MLflow's multi-workspace mode), which
keeps its experiments, runs, models and artifacts apart from every other workspace's, and the server
always names the workspace of the app a request was authenticated for. The store is SQLite under the data
dir unless ``--mlflow-tracking-uri`` names a database (PostgreSQL for several servers); artifacts are
proxied by the server to ``<data-dir>/mlflow/artifacts/workspaces/<app id>/``.

MLflow (the ``mlflow`` extra) is imported on first use only: it is heavy, and a server that serves no app
never needs it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from functools import cached_property
from importlib import metadata
from pathlib import Path

from jobforge.config import Settings

EXTRA_MISSING = ("MLflow Apps need the mlflow package on the server: install jobforge with its mlflow extra "
                 "(pip install 'jobforge[mlflow]').")


class MlflowUnavailable(Exception):
    """The mlflow package is not installed on this server."""


def available() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def version() -> str:
    """The version of MLflow the apps run (read without importing it)."""
    if not available():
        raise MlflowUnavailable(EXTRA_MISSING)
    return metadata.version("mlflow")


class TrackingServer:
    def __init__(self, settings: Settings):
        self.root = settings.data_dir / "mlflow"
        self.store_uri = settings.mlflow_tracking_uri or f"sqlite:///{self.root / 'mlflow.db'}"
        self.artifacts = self.root / "artifacts"

    @cached_property
    def wsgi_app(self):
        """MLflow's tracking server (REST API, UI and proxied artifacts), configured before its first import:
        MLflow reads this configuration from the environment."""
        if not available():
            raise MlflowUnavailable(EXTRA_MISSING)
        self.root.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        os.environ.update({
            "MLFLOW_ENABLE_WORKSPACES": "true",
            "_MLFLOW_SERVER_FILE_STORE": self.store_uri,
            "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
            "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
            "_MLFLOW_SERVER_ARTIFACT_DESTINATION": str(self.artifacts),
        })
        # Requests reach MLflow only through the server's own authentication (SigV4 or an app's browser
        # session), whatever name the server is reached by.
        os.environ.setdefault("MLFLOW_SERVER_ALLOWED_HOSTS", "*")
        from mlflow.server import app

        return app

    @cached_property
    def _workspaces(self):
        self.wsgi_app  # noqa: B018 - configures MLflow first
        from mlflow.server.workspace_helpers import _get_workspace_store

        return _get_workspace_store()

    def create_workspace(self, name: str, description: str) -> None:
        from mlflow.entities import Workspace

        with _LOCK:
            self._workspaces.create_workspace(Workspace(name=name, description=description))

    def delete_workspace(self, name: str) -> None:
        """The workspace and everything in it: its experiments, runs, models and artifacts."""
        from mlflow.entities.workspace import WorkspaceDeletionMode
        from mlflow.exceptions import MlflowException

        with _LOCK:
            try:
                self._workspaces.delete_workspace(name, mode=WorkspaceDeletionMode.CASCADE)
            except MlflowException as err:
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        shutil.rmtree(self.artifacts / "workspaces" / name, ignore_errors=True)


_LOCK = threading.Lock()
_SERVERS: dict[Path, TrackingServer] = {}


def tracking_server(settings: Settings) -> TrackingServer:
    """The server's one tracking server (MLflow's configuration is process-wide)."""
    with _LOCK:
        return _SERVERS.setdefault(settings.data_dir, TrackingServer(settings))
