"""jobforge console-url: a one-time sign-in URL for the web console."""

from __future__ import annotations

import configparser
import sys

from jobforge.config import Settings

PATH = "/_console/federation"


def console_url(args) -> None:
    from jobforge.console import sessions
    from jobforge.core.accounts import KeyRing
    from jobforge.core.store import open_store

    settings = Settings(data_dir=args.data_dir, database_url=args.database_url)
    if settings.database_url is None and not (settings.data_dir / "jobforge.db").exists():
        sys.exit(f"No jobforge data in {settings.data_dir} (use --data-dir)")
    credentials = configparser.ConfigParser()
    credentials.read(settings.credentials_file)
    if not credentials.has_section(args.profile):
        known = ", ".join(credentials.sections()) or "none"
        sys.exit(f"No profile {args.profile!r} in {settings.credentials_file} (profiles: {known})")
    engine = open_store(settings.db_url)
    credential = KeyRing(engine).get(credentials[args.profile].get("aws_access_key_id", ""))
    if credential is None or credential.session_token is not None:
        sys.exit(f"Profile {args.profile!r} holds no access key of this server's accounts")
    token = sessions.issue_signin_token(engine, credential)
    print(f"{_endpoint(settings, args.profile)}{PATH}?token={token}")
    print(f"Signs in to account {credential.account_id}, once, within {sessions.SIGNIN_TOKEN_SECONDS // 60} "
          "minutes.", file=sys.stderr)


def _endpoint(settings: Settings, profile: str) -> str:
    """The URL the server was last served on, as its config file says; else the default address."""
    config = configparser.ConfigParser()
    config.read(settings.data_dir / "config")
    section = "default" if profile == "default" else f"profile {profile}"
    url = config.get(section, "endpoint_url", fallback=None) or config.get("default", "endpoint_url",
                                                                           fallback=settings.endpoint_url)
    return url.rstrip("/")


def add_parser(sub) -> None:
    p = sub.add_parser("console-url", help="print a one-time sign-in URL for the web console")
    p.add_argument("--profile", default="default", help="the profile in DATA_DIR/credentials whose account to "
                                                         "sign in to (default: default)")
    p.set_defaults(func=console_url)
