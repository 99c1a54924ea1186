"""Where a run's numbers go besides its folder: provenance (git commit, package versions) and the
MLflow run (parameters, per-layer bits, tags, per-epoch metrics, artifacts)."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch

from sinreq.config import TrainConfig, flat_config, result_config

# MLflow's telemetry thread sets and unsets an environment variable while `requests` iterates
# os.environ for proxy settings: a run logging to a server died of KeyError
# '_MLFLOW_TELEMETRY_SESSION_ID' (a local-workers test, 1 run in 4). Off unless the user set it;
# before mlflow is imported, in every process that logs (workers inherit it).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def provenance() -> dict[str, Any]:
    """Git commit and dirty flag of the checkout holding this package (None for an installed
    copy outside any git repository), and the versions that matter."""
    source = Path(__file__).resolve().parent

    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *cmd], capture_output=True, text=True, timeout=10, cwd=source
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    packages = ["sinreq", "torch", "torchvision", "numpy", "mlflow", "pydantic"]
    versions = {p: metadata.version(p) for p in packages}
    versions["torch"] = torch.__version__  # with its build tag, e.g. +cu130
    versions["python"] = sys.version.split()[0]
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "package_versions": versions,
    }


# ---------------------------------------------------------------------------------------------
# The tracking URI, checked before a run writes anything


PROBE_TIMEOUT_S = 5.0  # a tracking server that does not accept a connection by then is down
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores besides sqlite
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
ALLOWED_URIS = (
    "sqlite:///PATH (its folder must exist), file:PATH, http(s)://HOST[:PORT], "
    "databricks[://PROFILE], postgresql|mysql|mssql://HOST/DB"
)


def check_tracking_uri(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise a one-line ValueError unless ``uri`` is a tracking URI a run can log to: a known
    scheme (a bare path such as ``mlflow.db`` is refused: MLflow would take it for a file store
    folder), a sqlite file whose folder exists (never created here), a ``file:`` store whose
    parent folder exists, and a server (http, https, a database) that answers within
    ``timeout`` seconds (one probe, :func:`probe_server`, not MLflow's retry loop). Databricks
    URIs are taken as they are. Writes nothing."""
    where = f"--tracking-uri {uri!r}"
    if uri in ("databricks", "databricks-uc", "uc") or uri.startswith(("databricks:", "uc:")):
        return  # a Databricks workspace: its profile's credentials are MLflow's business
    parts = urlsplit(uri)
    scheme = parts.scheme.lower().partition("+")[0]  # postgresql+psycopg2 -> postgresql
    if not uri.strip() or not scheme or len(scheme) == 1:  # "C:" is a Windows drive, a path
        raise ValueError(f"{where}: a bare path is not a tracking URI; allowed: {ALLOWED_URIS}")
    if scheme == "sqlite":
        _check_sqlite(where, uri)
    elif scheme == "file":
        _check_file_store(where, parts.path)
    elif scheme in ("http", "https", *DATABASE_SCHEMES):
        if not parts.hostname:
            raise ValueError(f"{where}: no host; allowed: {ALLOWED_URIS}")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError as err:  # a port that is not a number, or out of range
            raise ValueError(f"{where}: {err}; allowed: {ALLOWED_URIS}") from None
        probe_server(where, scheme, parts.hostname, port, timeout, parts.path)
    else:
        raise ValueError(f"{where}: unknown scheme {scheme!r}; allowed: {ALLOWED_URIS}")


def _check_sqlite(where: str, uri: str) -> None:
    if not uri.startswith("sqlite:///"):
        raise ValueError(f"{where}: a sqlite URI has three slashes; allowed: {ALLOWED_URIS}")
    path = uri.removeprefix("sqlite:///").partition("?")[0]
    if path in ("", ":memory:"):
        raise ValueError(f"{where}: an in-memory store keeps nothing; allowed: {ALLOWED_URIS}")
    store = Path(path)
    if not store.parent.is_dir():
        raise ValueError(
            f"{where}: folder {str(store.parent)!r} of the sqlite store does not exist; "
            "allowed: a sqlite file in an existing folder (create the folder first)"
        )
    if store.exists() and not store.is_file():
        raise ValueError(f"{where}: {path!r} is not a file; allowed: a sqlite database file")


def _check_file_store(where: str, path: str) -> None:
    store = Path(urllib.request.url2pathname(path)) if path else Path.cwd()
    if store.exists() and not store.is_dir():
        raise ValueError(f"{where}: {str(store)!r} is not a folder; allowed: a file store folder")
    if not store.exists() and not store.parent.is_dir():
        raise ValueError(
            f"{where}: folder {str(store.parent)!r} does not exist; allowed: a file store in an "
            "existing folder"
        )


def probe_server(
    where: str,
    scheme: str,
    host: str,
    port: int,
    timeout: float = PROBE_TIMEOUT_S,
    path: str = "",
) -> None:
    """One probe of the server at ``host:port``, each step bounded by ``timeout`` seconds: for
    http(s) one GET of ``PATH/health`` (through the proxies the environment names, as MLflow's
    requests go; any HTTP answer, even an error status, means it is up), for a database one TCP
    connection, closed at once. A one-line ValueError when it does not answer."""
    try:
        if scheme in ("http", "https"):
            netloc = f"[{host}]" if ":" in host else host  # an IPv6 address
            url = f"{scheme}://{netloc}:{port}{path.rstrip('/')}/health"
            try:
                with urllib.request.urlopen(url, timeout=timeout):
                    pass
            except urllib.error.HTTPError:
                pass  # it answered
            except urllib.error.URLError as err:
                if not isinstance(err.reason, ssl.SSLError):  # TLS trouble: it answered
                    raise OSError(str(getattr(err.reason, "strerror", None) or err.reason)) from err
        else:
            with socket.create_connection((host, port), timeout=timeout):
                pass
    except (OSError, http.client.HTTPException) as err:
        if isinstance(err, TimeoutError | socket.timeout) or "timed out" in str(err):
            reason = "timed out"
        else:
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise ValueError(
            f"{where}: cannot reach {host}:{port} within {timeout:g} s ({reason}); "
            "start the tracking server or pass another URI, e.g. sqlite:///mlflow.db"
        ) from None


KIND_TAG = "mlflow.experimentKind"  # the MLflow 3 UI opens such an experiment on its runs table
TRAINING_KIND = "custom_model_development"


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside a sqlite store's file
    (not ``./mlruns`` of whatever folder a run started in); None lets the store decide, as a
    tracking server does with its ``--artifacts-destination``."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    store = Path(tracking_uri.removeprefix("sqlite:///")).expanduser().resolve()
    return (store.parent / "mlartifacts").as_uri()


def experiment_id(tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created (artifact location, training-runs kind) if new."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(
            name, artifact_location(tracking_uri), tags={KIND_TAG: TRAINING_KIND}
        )
    except MlflowException:  # a parallel run created it first
        return client.get_experiment_by_name(name).experiment_id


def start_mlflow_run(cfg: TrainConfig, run_id: str | None):
    """The MLflow run of ``cfg``: resumed when ``run_id`` is given, else a new one, a child of
    ``cfg.parent_run_id`` when set (a context manager, as ``mlflow.start_run`` returns)."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep stderr for what matters
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    # made active: resuming checks the run against the process's active experiment, which an
    # earlier run of another store or experiment in this process may have left behind
    experiment = mlflow.set_experiment(
        experiment_id=experiment_id(cfg.tracking_uri, cfg.experiment)
    )
    return mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment.experiment_id,
        run_name=cfg.run_name(),
        parent_run_id=None if run_id else cfg.parent_run_id,
    )


def dataset_input(cfg: TrainConfig):
    """``cfg``'s dataset as an MLflow dataset (name, source folder, and a digest of what defines
    its splits: the published file checksums, hold-out fraction, classes)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    from sinreq.data.checksums import expected_checksums

    defined_by = {
        "dataset": cfg.dataset,
        "files": expected_checksums(cfg.dataset),
        "val_fraction": cfg.val_fraction,
        "classes": cfg.classes,
    }
    digest = hashlib.sha256(json.dumps(defined_by, sort_keys=True).encode()).hexdigest()[:8]
    source = LocalArtifactDatasetSource(str(Path(cfg.data_dir).expanduser().resolve()))
    return MetaDataset(source, name=cfg.dataset, digest=digest)


def log_dataset_input(cfg: TrainConfig) -> None:
    """Log ``cfg``'s dataset as the active run's training input, safe when parallel runs log it
    at the same instant."""
    import mlflow

    dataset = dataset_input(cfg)
    _log_input(lambda: mlflow.log_input(dataset, context="training"))


def _log_input(log) -> None:
    """Call ``log`` (which logs a dataset input) once more when a parallel run inserted the same
    (experiment, name, digest) dataset row first: the second call links to that row."""
    from mlflow.exceptions import MlflowException

    try:
        log()
    except MlflowException as err:
        if err.error_code != "BAD_REQUEST":  # what the store's IntegrityError arrives as
            raise
        log()


def log_run_header(
    cfg: TrainConfig, config: dict, layers: list[dict], device: torch.device
) -> None:
    """Parameters (the resolved configuration and every layer's bits), tags and the layer table
    of a new run."""
    import mlflow

    params = {
        k: json.dumps(v) if isinstance(v, list | dict) else v
        for k, v in flat_config(result_config(cfg)).items()
    }
    for row in layers:
        bits = row["weight_bits"] if row["kind"] != "QuantAct" else f"act{row['act_bits']}"
        params[f"bits.{row['layer']}"] = bits
    mlflow.log_params(params)
    tags = {
        "git_commit": config["git_commit"],
        "git_dirty": config["git_dirty"],
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "world_size": config["world_size"],
        **{f"version.{k}": v for k, v in config["package_versions"].items()},
    }
    tags.update({k: getattr(cfg, k) for k in ("profile", "stage", "phase") if getattr(cfg, k)})
    mlflow.set_tags(tags)
    mlflow.log_dict({"layers": layers}, "layers_table.json")
    log_dataset_input(cfg)


def parent_run_id(folder: Path, cfgs: TrainConfig | list[TrainConfig]) -> str:
    """The MLflow run that groups the grid in ``folder`` (its runs ``cfgs``, or one of them):
    created once, its id kept in ``folder/mlflow_parent.json`` so that a rerun files its runs
    under the same parent. It carries a name that tells grids apart (:func:`parent_run_name`),
    the grid's parameters (:func:`parent_params`) and its dataset(s) as inputs, so that the
    runs table can filter and group parents as it does their children; a parent made before
    these were logged gets them on the next rerun (existing parameters are kept)."""
    from mlflow import MlflowClient

    from sinreq.checkpoint import write_json

    cfgs = [cfgs] if isinstance(cfgs, TrainConfig) else list(cfgs)
    cfg = cfgs[0]
    check_tracking_uri(cfg.tracking_uri)  # before the grid's folder or its MLflow run exists
    client = MlflowClient(cfg.tracking_uri)
    name, params = parent_run_name(folder, cfgs), parent_params(cfgs)
    file = folder / "mlflow_parent.json"
    if file.is_file():
        kept = json.loads(file.read_text())
        if kept["tracking_uri"] == cfg.tracking_uri:
            run = client.get_run(kept["run_id"])
            if run.info.run_name != name:
                client.update_run(run.info.run_id, name=name)
            missing = {k: v for k, v in params.items() if k not in run.data.params}
            if missing:  # a parent made before its parameters were logged
                _describe_parent(client, run.info.run_id, missing, cfgs)
            return run.info.run_id
    tags = {k: getattr(cfg, k) for k in ("profile", "stage") if getattr(cfg, k)}
    if len({c.phase for c in cfgs}) == 1 and cfg.phase:
        tags["phase"] = cfg.phase
    varied = [k for k in params if k in _varied_keys(cfgs)]
    if varied:
        tags["sinreq.grid_varies"] = ", ".join(varied)
    run = client.create_run(
        experiment_id(cfg.tracking_uri, cfg.experiment),
        run_name=name,
        tags={**tags, "sinreq.grid": str(folder)},
    )
    _describe_parent(client, run.info.run_id, params, cfgs)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(file, {"run_id": run.info.run_id, "tracking_uri": cfg.tracking_uri})
    return run.info.run_id


PARENT_SKIPPED = ("out", "parent_run_id", "init_from")  # per run: no grid-wide value
PARAM_MAX_CHARS = 500  # a varied parameter's list of values longer than this is left out


def _param_value(value: Any) -> str:
    """A parameter as ``log_run_header`` logs it (lists and mappings as JSON)."""
    return str(json.dumps(value) if isinstance(value, list | dict) else value)


def _varied_keys(cfgs: list[TrainConfig]) -> set[str]:
    """The flat configuration keys whose value differs between ``cfgs``."""
    flats = [flat_config(result_config(c)) for c in cfgs]
    keys = {k for flat in flats for k in flat}
    return {k for k in keys if len({_param_value(f.get(k)) for f in flats}) > 1}


def parent_params(cfgs: list[TrainConfig]) -> dict[str, str]:
    """The parameters of a grid's parent run: every configuration key its runs share, with
    their value (model, dataset, ``quant.*``, ``regularizer.*``, profile, stage, phase...), and
    each key the grid varies with its distinct values, comma-separated and sorted (``seed``
    ``0,1,2``; ``regularizer.name`` ``msqe,sinreq`` for arms). Left out: what is each run's
    own (``out``, ``init_from``, ``parent_run_id``) and lists over :data:`PARAM_MAX_CHARS`."""
    flats = [flat_config(result_config(c)) for c in cfgs]
    params: dict[str, str] = {}
    for key in dict.fromkeys(k for flat in flats for k in flat):
        if key in PARENT_SKIPPED:
            continue
        values = list(dict.fromkeys(_param_value(flat.get(key)) for flat in flats))
        if len(values) > 1:

            def order(v: str) -> tuple[int, float, str]:
                try:
                    return (0, float(v), v)
                except ValueError:
                    return (1, 0.0, v)

            joined = ",".join(sorted(values, key=order))
            if len(joined) > PARAM_MAX_CHARS:
                continue
            params[key] = joined
        else:
            params[key] = values[0]
    return params


def parent_run_name(folder: Path, cfgs: list[TrainConfig]) -> str:
    """A parent run's name that tells grids apart: the grid folder's last two parts, words
    split at ``-`` (``runs/default/q/cifar10_convnet-dorefa-w3`` -> ``q cifar10_convnet dorefa
    w3``; ``.../fp/cifar10_convnet`` and ``.../fpcont/cifar10_convnet`` -> ``fp
    cifar10_convnet``, ``fpcont cifar10_convnet``), completed by the grid's shared quantizer
    and bits when the folder does not name them (``w3`` -> ``w3a3``)."""
    words = [w for w in (folder.parent.name, *folder.name.split("-")) if w]
    quants = {(c.quant.name, c.quant.bits, c.quant.act_bits) for c in cfgs}
    if len(quants) == 1:
        method, bits, act_bits = quants.pop()
        if method != "fp":
            label = f"w{bits}" + (f"a{act_bits}" if act_bits else "")
            if method not in words:
                words.append(method)
            if f"w{bits}" in words:
                words[words.index(f"w{bits}")] = label
            elif label not in words:
                words.append(label)
    return " ".join(words) or folder.as_posix()


def _describe_parent(client, run_id: str, params: dict[str, str], cfgs: list[TrainConfig]):
    """Log ``params`` and the grid's dataset(s) (as its runs log theirs) on parent ``run_id``."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow's batch limit is 100 parameters
        client.log_batch(run_id, params=items[start : start + 100])
    seen = set()
    for cfg in cfgs:
        key = (cfg.dataset, cfg.data_dir, cfg.val_fraction, cfg.classes)
        if key not in seen:
            seen.add(key)
            _log_input(lambda cfg=cfg: _log_parent_dataset(client, run_id, cfg))


def _log_parent_dataset(client, run_id: str, cfg: TrainConfig) -> None:
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    entity = dataset_input(cfg)._to_mlflow_entity()
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, "training")]
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])


def finish_parent_run(
    run_id: str | None, tracking_uri: str, metrics: dict[str, float], tags: dict[str, str]
) -> None:
    """Log the grid's summary on its parent run and mark the run finished."""
    if run_id is None:
        return
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client, now = MlflowClient(tracking_uri), int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    client.set_terminated(run_id)


# ---------------------------------------------------------------------------------------------
# `sinreq ui`: the MLflow UI on a store, opened on the experiment's runs table


UI_READY_TIMEOUT_S = 120.0  # how long `sinreq ui` waits for the server to answer /health


def runs_table_url(host: str, port: int, experiment_id: str, view: str | None = None) -> str:
    """The link that opens experiment ``experiment_id``'s runs table in the MLflow 3 UI of the
    server at ``host:port``, in shared view ``view`` if given (:func:`write_ui_view`).
    ``workflowType=machine_learning`` overrides the UI's global GenAI / model-training toggle
    (GenAI on a fresh browser, which shows traces instead of runs). A server bound to every
    interface (``0.0.0.0``, ``::``) is reached on 127.0.0.1."""
    table = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if view:
        table += f"&viewStateShareKey={urllib.parse.quote(view)}"
    return f"{ui_base_url(host, port)}/{table}"


def ui_base_url(host: str, port: int) -> str:
    """``http://HOST:PORT`` of a server bound to ``host`` (every interface: 127.0.0.1)."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{port}"


def ui_experiment_id(tracking_uri: str, name: str) -> str:
    """The id of existing experiment ``name`` in the store at ``tracking_uri``; a one-line
    ValueError when the store is not there (a sqlite file or file store is never created here)
    or has no such experiment (naming those it has)."""
    from mlflow import MlflowClient

    check_tracking_uri(tracking_uri)
    where = f"--tracking-uri {tracking_uri!r}"
    if tracking_uri.startswith("sqlite:///"):
        path = tracking_uri.removeprefix("sqlite:///").partition("?")[0]
        if not Path(path).is_file():
            raise ValueError(f"{where}: no store at {path!r}; train a run first or pass its URI")
    elif tracking_uri.startswith("file:"):
        path = urllib.request.url2pathname(urlsplit(tracking_uri).path) or "."
        if not Path(path).is_dir():
            raise ValueError(f"{where}: no store at {path!r}; train a run first or pass its URI")
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        allowed = ", ".join(repr(n) for n in names) if names else "none (train a run first)"
        raise ValueError(f"--experiment {name!r}: not in the store; its experiments: {allowed}")
    return found.experiment_id


UI_VIEW = "sinreq"  # the shared view `sinreq ui` writes and links to
UI_VIEW_TAG = "mlflow.sharedViewState."  # + view name: an experiment tag the UI reads views from
UI_PARAMS = (
    "model",
    "dataset",
    "quant.name",
    "quant.bits",
    "quant.act_bits",
    "regularizer.name",
    "regularizer.lambda",
    "seed",
    "profile",
    "stage",
    "phase",
)


def ui_view(client, experiment_id: str) -> dict[str, Any]:
    """The runs-table view ``sinreq ui`` opens (the MLflow 3.17 UI's shared view state): the
    grid parameters (:data:`UI_PARAMS`, those some run sets) and the accuracy
    columns the store has: each run's ``test_acc`` and each parent's summary
    (``test_acc_mean``/``_std``, per arm ``test_acc_mean_<arm>``, ``gain_mean_<arm>``,
    ``gain_p_<arm>``, ``lambda_chosen_<arm>``). The UI's default shows no parameter or metric
    column at all."""
    parents = "tags.`sinreq.grid` LIKE '%'"  # every parent run: their summaries' columns
    runs = client.search_runs([experiment_id], parents, max_results=5000)
    runs += client.search_runs([experiment_id], max_results=500)  # and the latest runs'
    params = {k for r in runs for k, v in r.data.params.items() if v not in ("None", "")}
    metrics = {k for r in runs for k in r.data.metrics}
    prefixes = ("test_acc_mean", "test_acc_std", "gain_mean_", "gain_p_", "lambda_chosen_")

    def rank(key: str) -> tuple[int, str]:
        return next((i + 1 for i, p in enumerate(prefixes) if key.startswith(p)), 0), key

    chosen = sorted((k for k in metrics if k == "test_acc" or k.startswith(prefixes)), key=rank)
    columns = [f"params.`{k}`" for k in UI_PARAMS if k in params]  # no Dataset: it is wide
    columns += [f"metrics.`{k}`" for k in chosen]
    return {"selectedColumns": columns}


def write_ui_view(tracking_uri: str, experiment_id: str) -> str:
    """Write :func:`ui_view` as the experiment's shared view :data:`UI_VIEW` (an experiment tag,
    rewritten each time: new arms, new columns); its name, for ``viewStateShareKey``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    view = json.dumps(ui_view(client, experiment_id))
    client.set_experiment_tag(experiment_id, UI_VIEW_TAG + UI_VIEW, view)
    return UI_VIEW


def ui_command(tracking_uri: str, host: str, port: int) -> list[str]:
    """``mlflow server`` on ``tracking_uri`` bound to ``host:port``, one worker (a laptop's UI,
    not a team server); a sqlite store's proxied artifacts in ``mlartifacts/`` beside its file,
    where the runs put theirs (:func:`artifact_location`)."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri]
    cmd += ["--host", host, "--port", str(port), "--workers", "1"]
    artifacts = artifact_location(tracking_uri)
    if artifacts is not None:
        cmd += ["--artifacts-destination", artifacts]
    return cmd


def check_ui_address(host: str, port: str | int) -> int:
    """``port`` as a number, or a one-line ValueError for an empty host or a bad port."""
    if not host.strip() or any(c.isspace() or c in "/@#?" for c in host):
        raise ValueError(f"--host {host!r}: allowed: an interface address, e.g. 127.0.0.1")
    try:
        number = int(port)
    except (TypeError, ValueError):
        number = -1
    if not 1 <= number <= 65535:
        raise ValueError(f"--port {port!r}: allowed: a port number 1..65535")
    return number


def serve_ui(cmd: list[str], url: str, health: str, out=None) -> int:
    """Run the MLflow server ``cmd`` in its own process group, print ``url`` once ``health``
    answers, and wait; Ctrl-C (or SIGTERM) stops the server's whole group. A server that exits
    before answering is a one-line RuntimeError (e.g. its port is taken)."""
    import signal

    out = out or sys.stdout
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no GenAI job workers (8)
    # its log (stdout too) on stderr: stdout carries the link alone
    proc = subprocess.Popen(cmd, start_new_session=True, env=env, stdout=2)

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        deadline = time.monotonic() + UI_READY_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(health, timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answered
            except (OSError, http.client.HTTPException):
                time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with code {proc.returncode} before answering {health} "
                "(is the port taken? pass another --port)"
            )
        print(url, file=out, flush=True)
        print("sinreq ui: serving; Ctrl-C stops it", file=sys.stderr, flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the server's process group until it is gone."""
    import signal

    for sig, wait in ((signal.SIGINT, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone: its workers may linger a moment
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
