"""`askgate serve | create-admin | db upgrade/downgrade/purge`."""

import argparse
import asyncio
import getpass
import logging
import logging.config
import os
import signal
import sys
from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from askgate import migrate
from askgate.config import (
    Settings,
    ensure_data_dir,
    ensure_private_database,
    ensure_secret_key,
)
from askgate.db import Database, create_engine
from askgate.errors import Conflict
from askgate.llm.local import (
    MODEL_ALIAS,
    LocalModelError,
    LocalModelServer,
    bundled_model_path,
)
from askgate.llm.models_file import ModelsFileError, load_models_file
from askgate.logconfig import logging_config
from askgate.metrics import multiprocess_dir
from askgate.questions import retention
from askgate.users.models import Role
from askgate.users.schemas import AdminUserCreate, admin_from_settings
from askgate.users.service import create_user

logger = logging.getLogger("askgate.cli")


class CommandError(Exception):
    """A failure to report in one line, without a traceback."""


# What a stop may take beyond the grace: storing the cut questions, closing.
SHUTDOWN_MARGIN_SECONDS = 15


class _Terminated(Exception):
    """SIGTERM arrived: unwind so that the model server is stopped cleanly."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _describe(error: ValidationError, prefix: str) -> str:
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        location = "_".join(str(part) for part in item["loc"])
        location = location.upper() if prefix else location
        name = f"{prefix}{location}" if location else "settings"
        lines.append(f"invalid {name}: {item['msg']}")
    return "\n".join(lines)


def load_settings() -> Settings:
    """Settings, with logging configured, the signing key loaded and a SQLite
    database private."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise CommandError(_describe(exc, "ASKGATE_")) from None
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    try:
        # Checked as create-admin checks its input (and again by `serve`'s app).
        admin_from_settings(settings)
        ensure_secret_key(settings)
        ensure_private_database(settings)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    return settings


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = load_settings()
    if settings.models_file is not None:
        try:  # checked before anything starts (and again by each worker's app)
            load_models_file(settings.models_file)
        except ModelsFileError as exc:
            raise CommandError(str(exc)) from None
    if not migrate.upgrade_in_child(settings.sqlalchemy_url):
        raise CommandError("the database migration failed (see above)")
    local: LocalModelServer | None = None
    if settings.llm_base_url is None and settings.models_file is None:
        try:
            ensure_data_dir(settings)  # for the model server's log
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            model_path = settings.local_model_path or bundled_model_path()
            # One model server for the whole `serve`, shared by every worker.
            local = LocalModelServer(
                model_path,
                log_path=settings.data_dir / "local-model.log",
                startup_timeout=settings.local_model_startup_timeout,
                context_size=settings.local_model_context,
            )
            os.environ["ASKGATE_LLM_BASE_URL"] = local.start()
        except LocalModelError as exc:
            raise CommandError(str(exc)) from None
        os.environ.setdefault("ASKGATE_LLM_MODEL", MODEL_ALIAS)
    url = f"http://{args.host}:{args.port}"
    if settings.web_enabled:
        logger.info(
            "Serving askgate: web page at %s/ and API docs at %s/docs", url, url
        )
    else:
        logger.info("Serving askgate on %s; API docs at %s/docs", url, url)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal; with a
    # Python handler in place that becomes an exception, so `finally` still runs.
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        # With several workers, they write their metrics to files in a fresh
        # directory (askgate.metrics), removed once they have all stopped.
        with multiprocess_dir(args.workers):
            uvicorn.run(
                "askgate.app:create_app",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                access_log=False,  # askgate logs one line per request itself
                server_header=False,
                # askgate reads X-Forwarded-For itself, and only from the peers in
                # ASKGATE_TRUSTED_PROXIES; uvicorn would trust it from 127.0.0.1.
                proxy_headers=False,
                log_config=logging_config(settings.log_level, settings.log_format),
                # askgate cuts the questions still running after the grace itself
                # (askgate.shutdown); uvicorn's own limit only backs that up.
                timeout_graceful_shutdown=settings.shutdown_grace_seconds
                + SHUTDOWN_MARGIN_SECONDS,
            )
    except _Terminated:
        logger.info("Stopped on SIGTERM")
    finally:
        if local is not None:
            local.stop()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise CommandError("the passwords differ")
    return password


async def _create_admin(settings: Settings, data: AdminUserCreate) -> int:
    db = Database(create_engine(settings.sqlalchemy_url))
    try:
        user = await create_user(
            db=db,
            username=data.username,
            password=data.password,
            email=data.email,
            role=Role.ADMIN,
        )
        return user.id
    except Conflict as exc:
        raise CommandError(exc.detail) from None
    finally:
        await db.dispose()


def _create_admin_command(args: argparse.Namespace) -> None:
    settings = load_settings()
    password = _read_password(args.password_stdin)
    try:
        data = AdminUserCreate(
            username=args.username,
            password=password,
            email=args.email,
            role=Role.ADMIN,
        )
    except ValidationError as exc:
        raise CommandError(_describe(exc, "")) from None
    _migrate(migrate.upgrade, settings.sqlalchemy_url)
    user_id = asyncio.run(_create_admin(settings, data))
    print(f"Created admin {data.username!r} (id {user_id})")


def _db_command(args: argparse.Namespace) -> None:
    if (args.action == "purge") != (args.older_than is not None):
        raise CommandError("--older-than DAYS goes with `db purge`, and only with it")
    if args.action == "purge" and args.revision is not None:
        raise CommandError("db purge takes no revision")
    settings = load_settings()
    if args.action == "purge":
        _purge(settings, args.older_than)
    elif args.action == "upgrade":
        _migrate(migrate.upgrade, settings.sqlalchemy_url, args.revision or "head")
    else:
        _migrate(migrate.downgrade, settings.sqlalchemy_url, args.revision or "-1")


def _purge(settings: Settings, days: int) -> None:
    async def purge() -> int | None:
        db = Database(create_engine(settings.sqlalchemy_url))
        try:
            return await retention.purge_older_than(db=db, days=days)
        finally:
            await db.dispose()

    try:
        deleted = asyncio.run(purge())
    except (SQLAlchemyError, OSError) as exc:
        # The driver's own one-line message, without SQLAlchemy's statement.
        reason = getattr(exc, "orig", None) or exc
        raise CommandError(
            f"purging failed ({reason.__class__.__name__}: {reason}); is the "
            "database reachable and migrated (askgate db upgrade)?"
        ) from None
    if deleted is None:
        raise CommandError(
            "another purge is running (the retention task of a running askgate, "
            "or another `db purge`); try again when it has finished"
        )
    print(f"Deleted {deleted} questions older than {days} days")


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = 0
    if not 1 <= days <= retention.MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a whole number of days from 1 to {retention.MAX_DAYS}"
        )
    return days


def _migrate(
    step: Callable[[str, str], None], url: str, revision: str = "head"
) -> None:
    try:
        step(url, revision)
    except migrate.MigrationRefused as exc:
        raise CommandError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="askgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="migrate the database, then serve the API",
        description="Runs the migrations, starts the bundled model unless "
        "ASKGATE_MODELS_FILE or ASKGATE_LLM_BASE_URL is set, and serves the API.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=_serve)

    admin = commands.add_parser("create-admin", help="create an administrator")
    admin.add_argument("--username", required=True)
    admin.add_argument("--email")
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    admin.set_defaults(handler=_create_admin_command)

    db = commands.add_parser(
        "db", help="apply or revert migrations; delete old questions"
    )
    db.add_argument("action", choices=["upgrade", "downgrade", "purge"])
    db.add_argument(
        "revision",
        nargs="?",
        help="target revision (upgrade: head by default; downgrade: -1 by default)",
    )
    db.add_argument(
        "--older-than",
        type=_days,
        metavar="DAYS",
        help="purge: delete the questions created more than DAYS days ago "
        "(usage totals stay) and print how many",
    )
    db.set_defaults(handler=_db_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except CommandError as exc:
        print(f"askgate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
