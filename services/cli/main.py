"""The `quanzu` administration command (contract §7)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.cli import admin
from services.dispatch.settings import DispatchSettings
from services.feedback.settings import FeedbackSettings
from services.intake.settings import IntakeSettings
from services.sim.cli import add_arguments as add_simulate_arguments
from services.sim.cli import simulated_hours
from services.smsgw.settings import SmsGatewaySettings
from shared import migrate
from shared.auth import ROLES
from shared.migrate import SERVICES
from shared.settings import CommonSettings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quanzu", description="Administer Quanzu, the anti-fraud dissuasion dispatcher.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start the whole system (embedded database and broker unless configured)")
    run.add_argument("--no-demo", action="store_true", help="do not load the demo district")
    run.add_argument("--simulate", type=simulated_hours, metavar="HOURS",
                     help="then simulate HOURS of a district in the background (quanzu simulate --attach)")  # fmt: skip
    serve = sub.add_parser("serve", help="run one service (host and port from its QUANZU_<SERVICE>_HOST/_PORT)")
    serve.add_argument("service", choices=[*SERVICES, "smsgw"])
    sub.add_parser("migrate", help="apply the database migrations of every service")
    sub.add_parser("demo", help="load the demo district and print its keys")
    simulate = sub.add_parser("simulate", help="drive a synthetic district through Quanzu at an accelerated clock")
    add_simulate_arguments(simulate)

    source = sub.add_parser("source", help="upstream warning systems").add_subparsers(dest="action", required=True)
    add = source.add_parser("add", help="register a source and print its API key once")
    add.add_argument("name")
    add.add_argument("--rate-per-s", type=float, default=100.0, help="records per second (default 100)")
    revoke = source.add_parser("revoke", help="revoke a source and all its keys")
    revoke.add_argument("name")
    rotate = source.add_parser("rotate", help="add a new key (the old one keeps working until revoked)")
    rotate.add_argument("name")
    revoke_key = source.add_parser("revoke-key", help="revoke one key of a source, named by its prefix")
    revoke_key.add_argument("name")
    revoke_key.add_argument("prefix")

    feed = sub.add_parser("feed", help="upstream crime-report feeds").add_subparsers(dest="action", required=True)
    feed.add_parser("add", help="register a crime-report feed and print its API key once").add_argument("name")
    feed.add_parser("revoke", help="revoke a feed's API key").add_argument("name")

    feedback = sub.add_parser("feedback", help="the feedback service").add_subparsers(dest="action", required=True)
    feedback.add_parser(
        "rebuild", help="rebuild the read model of cases, tasks and warnings from the topics (stop feedback first)"
    )

    team = sub.add_parser("team", help="visit teams").add_subparsers(dest="action", required=True)
    team_add = team.add_parser("add", help="add a team to a police area")
    team_add.add_argument("name")
    team_add.add_argument("--area", required=True, metavar="AREA_CODE")
    team_add.add_argument("--backup", action="store_true", help="the station's backup team")

    member = sub.add_parser("member", help="people who log in").add_subparsers(dest="action", required=True)
    member_add = member.add_parser("add", help="add a member and print a one-time password")
    member_add.add_argument("username")
    member_add.add_argument("--name", required=True)
    member_add.add_argument("--role", required=True, choices=ROLES)
    where = member_add.add_mutually_exclusive_group(required=True)
    where.add_argument("--team", metavar="TEAM")
    where.add_argument("--station", metavar="STATION")
    where.add_argument("--district", action="store_true")
    member_add.add_argument("--password", help="set this password instead of a generated one-time password")
    deactivate = member.add_parser("deactivate", help="deactivate a member and end all their sessions")
    deactivate.add_argument("username")

    areas = sub.add_parser("areas", help="the area registry").add_subparsers(dest="action", required=True)
    imp = areas.add_parser("import", help="import area_code,area_name,station,street,district rows (idempotent)")
    imp.add_argument("file", type=Path)
    areas.add_parser("republish", help="publish every area again (rebuilds the other services' copies)")

    policy = sub.add_parser("policy", help="per-area dissuasion policies").add_subparsers(dest="action", required=True)
    policy_set = policy.add_parser("set", help="set an area's policy (or the district default's) from a JSON file")
    policy_set.add_argument("scope", metavar="AREA_CODE|default")
    policy_set.add_argument("file", type=Path)
    policy_show = policy.add_parser("show", help="the policy in force for an area, per risk level")
    policy_show.add_argument("area_code", metavar="AREA_CODE|default")

    outbox = sub.add_parser("outbox", help="the services' outboxes").add_subparsers(dest="action", required=True)
    replay = outbox.add_parser("replay", help="republish every event since TIME (after a broker lost its data)")
    replay.add_argument("--since", required=True, type=_aware_datetime, help="ISO 8601 with offset")
    return p


SETTINGS: dict[str, type[BaseSettings]] = {
    "intake": IntakeSettings,
    "dispatch": DispatchSettings,
    "feedback": FeedbackSettings,
    "smsgw": SmsGatewaySettings,
}


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-21T08:00:00+08:00)") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add e.g. +08:00)")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from services.cli.run import run

        return run(load_demo=not args.no_demo, simulate_hours=args.simulate)
    if args.command == "serve":
        return serve(args.service)
    if args.command == "simulate":
        from services.sim.cli import main as simulate

        return simulate(args)
    try:
        settings = CommonSettings()
    except ValidationError as exc:
        print(f"quanzu: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, settings)
    except admin.AdminError as exc:
        print(f"quanzu: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        print(
            f"quanzu: cannot reach the database ({exc}). Is `make run` up, or QUANZU_DATABASE_URL set?",
            file=sys.stderr,
        )
        return 1


def serve(service: str) -> int:
    import uvicorn

    settings = SETTINGS[service]()
    host, port = getattr(settings, f"{service}_host"), getattr(settings, f"{service}_port")
    uvicorn.run(
        f"services.{service}.main:create_app", factory=True, host=host, port=port, access_log=False, log_config=None
    )
    return 0


def _dispatch(args: argparse.Namespace, settings: CommonSettings) -> int:
    if args.command == "migrate":
        migrate.upgrade(settings.require_database_url())
        print("migrations applied")
    elif args.command == "demo":
        demo = asyncio.run(admin.demo(settings))
        print(f"areas: {demo.areas.created} created, {demo.areas.updated} updated, {demo.areas.unchanged} unchanged")
        for name, key in demo.sources.items():
            print(f"source {name}: API key {key}")
        for name, key in admin.DEMO_FEEDS.items():
            print(f"crime-report feed {name}: API key {key}")
        print(f"logins (password {admin.DEMO_PASSWORD}):")
        for username, role, where in demo.logins:
            print(f"  {username:<14} {role:<12} {where}")
    elif args.command == "source" and args.action == "add":
        key = asyncio.run(admin.source_add(settings, args.name, args.rate_per_s))
        print(f"source {args.name} registered. Its API key, shown only now:\n{key}")
    elif args.command == "source" and args.action == "revoke":
        asyncio.run(admin.source_revoke(settings, args.name))
        print(f"source {args.name} revoked")
    elif args.command == "source" and args.action == "rotate":
        key, prefix = asyncio.run(admin.source_rotate(settings, args.name))
        print(f"new key for {args.name} (prefix {prefix}), shown only now:\n{key}")
    elif args.command == "source" and args.action == "revoke-key":
        asyncio.run(admin.source_revoke_key(settings, args.name, args.prefix))
        print(f"key {args.prefix}… of {args.name} revoked")
    elif args.command == "feed" and args.action == "add":
        key = asyncio.run(admin.feed_add(settings, args.name))
        print(f"feed {args.name} registered. Its API key, shown only now:\n{key}")
    elif args.command == "feed" and args.action == "revoke":
        asyncio.run(admin.feed_revoke(settings, args.name))
        print(f"feed {args.name} revoked")
    elif args.command == "feedback" and args.action == "rebuild":
        replayed = asyncio.run(admin.feedback_rebuild(FeedbackSettings()))
        for topic, applied in replayed.applied.items():
            print(f"{topic}: {applied} events replayed, {replayed.skipped.get(topic, 0)} skipped")
    elif args.command == "team" and args.action == "add":
        team = asyncio.run(admin.team_add(settings, args.name, args.area, args.backup))
        print(f"team {team.name} added to {team.area_code} ({team.station}){' as backup' if team.backup else ''}")
    elif args.command == "member" and args.action == "add":
        member, generated = asyncio.run(
            admin.member_add(
                settings,
                username=args.username,
                name=args.name,
                role=args.role,
                team=args.team,
                station=args.station,
                district=args.district,
                password=args.password,
            )
        )
        print(f"member {member.username} ({member.role}) added")
        if generated:
            print(f"one-time password, shown only now: {generated}")
    elif args.command == "member" and args.action == "deactivate":
        asyncio.run(admin.member_deactivate(settings, args.username))
        print(f"member {args.username} deactivated; their sessions have ended")
    elif args.command == "areas" and args.action == "import":
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            raise admin.AdminError(f"cannot read {args.file}: {exc.strerror}") from None
        s = asyncio.run(admin.areas_import(settings, data))
        print(f"areas: {s.created} created, {s.updated} updated, {s.unchanged} unchanged")
    elif args.command == "areas" and args.action == "republish":
        print(f"{asyncio.run(admin.areas_republish(settings))} areas republished")
    elif args.command == "policy" and args.action == "set":
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            raise admin.AdminError(f"cannot read {args.file}: {exc.strerror}") from None
        version, changed = asyncio.run(admin.policy_set(settings, args.scope, data))
        print(f"policy of {args.scope}: version {version}" + ("" if changed else " (unchanged)"))
    elif args.command == "policy" and args.action == "show":
        shown = asyncio.run(admin.policy_show(settings, args.area_code))
        print(json.dumps(shown.model_dump(mode="json"), ensure_ascii=False, indent=2))
    elif args.command == "outbox" and args.action == "replay":
        counts = asyncio.run(admin.outbox_replay(settings, args.since))
        print(", ".join(f"{svc}: {n} events requeued" for svc, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
