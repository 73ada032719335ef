"""``python -m blackbox.dashboard [run=RUN_DIR] [port=8080]``: open a run in optuna-dashboard, on 127.0.0.1.

Without ``run=`` the latest run under ``runs/`` is opened. The run's own config says where its
trials are (the journal file, SQLite file, RDB URL or PostgreSQL experiment) and where the trial
artifacts are, so the dashboard shows every trial with its adversarial image and overlay.
"""

from __future__ import annotations

import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from omegaconf import DictConfig, OmegaConf

from blackbox.experiment.study import open_for_reading
from blackbox.settings.arguments import Setting, run_command
from blackbox.settings.build import stored_storage
from targets import UserError

DEFAULT_PORT = 8080


class DashboardError(UserError, ValueError):
    """No run to open, or one whose trials were not kept; the message says what to do."""


def run_folders(root: Path) -> list[Path]:
    """Every run folder under ``root`` (a ``.hydra/config.yaml`` of ``python -m blackbox``), oldest first."""
    found = [path.parent.parent for path in root.glob("**/.hydra/config.yaml") if _is_attack_run(path)]
    return sorted(found, key=lambda folder: (folder / ".hydra" / "config.yaml").stat().st_mtime)


def _is_attack_run(config_path: Path) -> bool:
    """A ``python -m blackbox`` run's config has a storage group (distill and maps runs do not) and no
    ``methods`` (a compare run's, whose many studies per image the dashboard is not for)."""
    try:
        cfg = OmegaConf.load(config_path)
    except Exception:  # a half-written or foreign file is not a run to open
        return False
    return isinstance(cfg, DictConfig) and "kind" in (cfg.get("storage") or {}) and "methods" not in cfg


def has_trials(folder: Path) -> bool:
    """Whether a run folder kept any trial: a non-empty journal or SQLite file, or any result.

    A run that ended before attacking (a missing model, a bad setting) has none: the dashboard
    would show an empty study list.
    """
    for name in ("optuna.journal", "optuna.sqlite3", "results.jsonl"):
        path = folder / name
        if path.is_file() and path.stat().st_size > 0:
            return True
    return False


def latest_run(root: Path) -> Path:
    if not root.is_dir():
        raise DashboardError(
            f"no runs yet: {root} does not exist. Attack something first (python -m blackbox), "
            "or name a run folder: python -m blackbox.dashboard runs/<date>/<time>"
        )
    folders = run_folders(root)
    if not folders:
        raise DashboardError(
            f"no runs yet under {root}: attack something first (python -m blackbox), "
            "or name a run folder: python -m blackbox.dashboard runs/<date>/<time>"
        )
    with_trials = [folder for folder in folders if has_trials(folder)]
    if not with_trials:
        raise DashboardError(
            f"no run under {root} has trials yet (the latest, {folders[-1]}, ended before attacking): "
            "attack something first (python -m blackbox), or name a run folder"
        )
    return with_trials[-1]


def resolve_run(run_dir: Path | None, root: Path) -> Path:
    if run_dir is None:
        return latest_run(root)
    if not run_dir.exists():
        raise DashboardError(f"{run_dir} does not exist; runs are under {root}/<date>/<time>")
    if not (run_dir / ".hydra" / "config.yaml").exists() and not (run_dir / "optuna.journal").exists():
        raise DashboardError(
            f"{run_dir} is not a run folder of python -m blackbox (no .hydra/config.yaml or optuna.journal)"
        )
    return run_dir


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # one line per request would drown the URL
        return None


def serve(run_dir: Path, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve optuna-dashboard for the run until interrupted; port 0 picks a free port."""
    try:
        from optuna_dashboard import wsgi
    except ImportError as error:
        raise DashboardError(
            "optuna-dashboard is not installed: pip install optuna-dashboard (the extra 'dashboard')"
        ) from error
    storage, artifact_store, where = open_for_reading(run_dir, stored_storage(run_dir))
    if storage is None:
        raise DashboardError(
            f"{run_dir} used storage=memory: its trials were not kept, so there is nothing to show. "
            "Re-run with storage=journal (the default) to inspect it"
        )
    app = wsgi(storage, artifact_store=artifact_store)
    server = make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    url = f"http://{host}:{server.server_port}/dashboard/"
    artifacts = "no artifacts" if artifact_store is None else "artifacts shown"
    print(f"optuna-dashboard for {run_dir} ({where}, {artifacts}): {url}", flush=True)
    print("Ctrl-C to stop.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


#: The settings ``python -m blackbox.dashboard`` takes.
SETTINGS = (
    Setting("run", "a run folder (default: the latest under runs=)", Path),
    Setting("runs", "where to look for the latest run", Path, default=Path("runs")),
    Setting("host", "address to bind (default: loopback only)", str, default="127.0.0.1"),
    Setting("port", "the port; 0 picks a free one", int, default=DEFAULT_PORT),
)


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").splitlines()[0]
    return run_command(_main, argv, SETTINGS, prog="python -m blackbox.dashboard", description=description)


def _main(args: dict) -> int:
    try:
        serve(resolve_run(args["run"], args["runs"]), host=args["host"], port=args["port"])
    except (DashboardError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the port is taken
        message = f"cannot serve on {args['host']}:{args['port']}: {error}; pick another port=N"
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0
