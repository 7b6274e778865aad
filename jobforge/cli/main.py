"""jobforge serve | demo | accounts … | jobs … | version"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from urllib.parse import urlencode

from jobforge import __version__
from jobforge.config import Settings
from jobforge.execution import container_engine
from jobforge.execution.executor import EXECUTORS


CONNECTION_OPTIONS = ("header_timeout", "idle_timeout", "max_connections_per_client", "max_connections")
TLS_OPTIONS = ("tls_cert", "tls_key")  # when not given: $JOBFORGE_TLS_CERT and $JOBFORGE_TLS_KEY


def _settings(args) -> Settings:
    connections = {name: getattr(args, name) for name in CONNECTION_OPTIONS if hasattr(args, name)}
    plugins = {"plugins": tuple(args.plugins)} if getattr(args, "plugins", None) else {}  # else $JOBFORGE_PLUGINS
    tls = {name: getattr(args, name) for name in TLS_OPTIONS if getattr(args, name, None)}
    return Settings(data_dir=args.data_dir, database_url=args.database_url,
                    host=getattr(args, "host", "127.0.0.1"), port=getattr(args, "port", 4566),
                    auth=getattr(args, "auth", "sigv4"), object_store=_object_store(args),
                    cpus=getattr(args, "cpus", None), memory_mb=getattr(args, "memory_mb", None),
                    gpus=getattr(args, "gpus", None), executor=getattr(args, "executor", "local"),
                    advertise_url=getattr(args, "advertise_url", None),
                    container_engine=getattr(args, "container_engine", None),
                    ray_address=getattr(args, "ray_address", None) or Settings.ray_address,
                    lifecycle_interval=getattr(args, "lifecycle_interval", Settings.lifecycle_interval),
                    mlflow_tracking_uri=getattr(args, "mlflow_tracking_uri", None),
                    **connections, **plugins, **tls)


def _object_store(args) -> str | None:
    """--object-store, with --object-store-endpoint as its endpoint= option."""
    url, endpoint = getattr(args, "object_store", None), getattr(args, "object_store_endpoint", None)
    if endpoint is None:
        return url
    if not url:
        raise ValueError("--object-store-endpoint names the endpoint of an --object-store s3://bucket/prefix")
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'endpoint': endpoint})}"


def serve(args) -> None:
    import uvicorn

    from jobforge.server import connections
    from jobforge.server.app import create_app
    from jobforge.server.runtime import point_profiles_at

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = _settings(args)
    except ValueError as err:
        sys.exit(f"jobforge: {err}")
    _check_port_free(settings.host, settings.port)
    _check_tls_files(settings)
    if args.container_engine and (problem := container_engine.problem(args.container_engine)):
        sys.exit(f"jobforge: --container-engine {args.container_engine}: {problem}")
    app = create_app(settings)
    point_profiles_at(settings)
    print(f"jobforge {__version__} serving on {settings.endpoint_url}\n"
          f"  data dir     {settings.data_dir}\n"
          f"  credentials  {settings.credentials_file} (profile 'default')\n"
          f"  use it:      export AWS_SHARED_CREDENTIALS_FILE={settings.credentials_file} "
          f"AWS_CONFIG_FILE={settings.data_dir / 'config'}\n"
          f"               aws sts get-caller-identity --endpoint-url {settings.endpoint_url}\n"
          f"  jobs reach   {settings.advertised_url} ({settings.executor} executor)\n"
          f"  protocols    HTTP/1.1 and HTTP/2{' over TLS' if settings.tls_cert else ' (h2c)'}", flush=True)
    if settings.tls_cert:
        print(f"  certificate  {settings.tls_cert} (a client that does not trust its issuer: "
              f"export AWS_CA_BUNDLE={settings.tls_cert})", flush=True)
    if settings.auth == "none":
        print("  WARNING: --auth none: requests are not authenticated", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                lifespan="on", timeout_graceful_shutdown=5, **connections.uvicorn_options(settings))


def _check_port_free(host: str, port: int) -> None:
    """Say so before anything else when the port is taken (the banner would otherwise promise a server)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as err:
        sys.exit(f"jobforge: cannot serve on {host}:{port}: {err.strerror}")


def _check_tls_files(settings: Settings) -> None:
    """Say so before anything else when the certificate or its key cannot be used."""
    import ssl

    if settings.tls_cert is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as err:
        sys.exit(f"jobforge: cannot serve TLS with {settings.tls_cert} and {settings.tls_key}: {err}")


def accounts_create(args) -> None:
    from jobforge.server.runtime import Runtime

    runtime = Runtime(_settings(args))
    try:
        credential = runtime.create_account(args.name)
    except ValueError as err:
        sys.exit(str(err))
    print(f"Account {args.name}: {credential.account_id}\n"
          f"Keys written as profile '{args.name}' in {runtime.settings.credentials_file}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="jobforge", description=__doc__)
    for flag, default, text in STORE_OPTIONS:
        parser.add_argument(flag, default=default, help=text)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4566)
    p.add_argument("--object-store", help="s3://bucket/prefix: every object in that S3 bucket (options after '?': "
                                           "endpoint=URL, region=R, profile=P; default: a directory under the data "
                                           "dir)")
    p.add_argument("--object-store-endpoint", metavar="URL",
                   help="the endpoint of the --object-store bucket's S3 service (default: AWS's)")
    p.add_argument("--auth", choices=["sigv4", "none"], default="sigv4",
                   help="'none' turns off request authentication: only for trusted, local use")
    p.add_argument("--advertise-url", metavar="URL",
                   help="the URL jobs reach this server by (default: http://HOST:PORT, https:// with TLS, or this "
                        "host's address when HOST is 0.0.0.0 or ::)")
    p.add_argument("--executor", choices=sorted(EXECUTORS), default="local",
                   help="where jobs run: 'local' runs each job as a process group on this host, 'ray' as a Ray "
                        "actor on a Ray cluster (pip install 'jobforge[ray]')")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="the Ray cluster of --executor ray: its address (HOST:PORT of the head node) or 'auto', "
                        "the cluster this host's 'ray start' joined (default: auto)")
    p.add_argument("--plugin", action="append", dest="plugins", metavar="MODULE",
                   help="also import MODULE at start, to serve the job kinds and operations it declares "
                        "(repeatable; default: the comma-separated modules of $JOBFORGE_PLUGINS)")
    p.add_argument("--cpus", type=int, help="CPU slots jobs may use (default: all)")
    p.add_argument("--memory-mb", type=int, help="memory jobs may use (default: all)")
    p.add_argument("--gpus", type=int, help="GPUs jobs may use (default: detected)")
    p.add_argument("--header-timeout", type=float, default=Settings.header_timeout, metavar="SECONDS",
                   help="close a connection that has not sent a request's headers in full within this time "
                        "(default %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=Settings.idle_timeout, metavar="SECONDS",
                   help="close a kept-alive connection idle this long (default %(default)s)")
    p.add_argument("--max-connections-per-client", type=int, default=Settings.max_connections_per_client,
                   metavar="N", help="connections one client address may hold (default %(default)s)")
    p.add_argument("--max-connections", type=int, default=Settings.max_connections, metavar="N",
                   help="connections all clients together may hold, kept below the open-file limit "
                        "(default %(default)s)")
    p.add_argument("--lifecycle-interval", type=float, default=Settings.lifecycle_interval, metavar="SECONDS",
                   help="how often S3 buckets' lifecycle rules are applied: objects expired, incomplete uploads "
                        "aborted (default %(default)s)")
    p.add_argument("--mlflow-tracking-uri", metavar="URL",
                   help="the database that keeps MLflow Apps' experiments and runs, e.g. postgresql://... "
                        "(default: SQLite under the data dir)")
    p.add_argument("--tls-cert", type=Path, metavar="FILE",
                   help="serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this PEM certificate or chain "
                        "(default: $JOBFORGE_TLS_CERT; needs --tls-key)")
    p.add_argument("--tls-key", type=Path, metavar="FILE",
                   help="the certificate's PEM private key (default: $JOBFORGE_TLS_KEY)")
    p.add_argument("--container-engine", choices=container_engine.ENGINES,
                   help="run container images (Lambda functions of PackageType Image, AgentCore runtimes with a "
                        "containerConfiguration) with this engine; checked at start")
    p.set_defaults(func=serve)

    p = sub.add_parser("accounts", help="manage accounts")
    asub = p.add_subparsers(dest="accounts_command", required=True)
    q = asub.add_parser("create", help="add an account and write its keys as a new profile")
    q.add_argument("name")
    q.set_defaults(func=accounts_create)

    from jobforge.cli import console, jobs, models
    from jobforge.demo import main as demo

    console.add_parser(sub)
    jobs.add_parser(sub)
    models.add_parser(sub)
    demo.add_parser(sub)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=lambda _args: print(f"jobforge {__version__}"))

    _store_options_after_commands(parser)
    args = parser.parse_args(argv)
    args.func(args)


STORE_OPTIONS = (
    ("--data-dir", ".jobforge", "state, objects and credentials (default ./.jobforge)"),
    ("--database-url", None, "e.g. postgresql://user@host/db (default: SQLite under the data dir)"),
)


def _store_options_after_commands(parser: argparse.ArgumentParser) -> None:
    """Accept the store options after any command too (`jobforge serve --data-dir DIR`).

    argparse keeps a command's own options apart from the main parser's, so each
    command gets them again, defaulting to "not given" so that a value given
    before the command still counts.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                for flag, _, text in STORE_OPTIONS:
                    if flag not in command._option_string_actions:
                        command.add_argument(flag, default=argparse.SUPPRESS, help=text)
                _store_options_after_commands(command)

