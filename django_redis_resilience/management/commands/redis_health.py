"""``manage.py redis_health``: every Redis node of every resilient cache, and what is wrong.

Exit codes: 0 healthy (information only), 1 warnings, 2 critical, 3 could not
check (usage errors, unknown aliases and crashes included).
"""

from __future__ import annotations

import json
import sys
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_redis_resilience.conf import conf
from django_redis_resilience.health import (
    CacheReport,
    Finding,
    NodeReport,
    Report,
    Severity,
    build_report,
)

CANNOT_CHECK = 3


def _size(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return "-"


def _slots(node: NodeReport) -> str:
    for peer in node.cluster.get("nodes", []):
        if "myself" in peer["flags"]:
            return str(sum(last - first + 1 for first, last in peer["slots"]))
    return "-"


class Command(BaseCommand):
    help = (
        "Probe every Redis node of every resilient cache (in parallel, each with its own "
        "timeout) and report findings. Exit code 0 healthy, 1 warnings, 2 critical, "
        "3 could not check."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str) -> Any:
            # A usage error is "could not check" (3), not argparse's 2 (critical here).
            raise CommandError(f"Error: {message}", returncode=CANNOT_CHECK)

        parser.error = error  # type: ignore[method-assign]
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        try:
            super().run_from_argv(argv)
        except CommandError as exc:  # a usage error: Django parses outside its own handler
            self.stderr.write(f"{type(exc).__name__}: {exc}")
            sys.exit(exc.returncode)

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--alias",
            action="append",
            dest="aliases",
            metavar="A",
            help="Only this CACHES alias (repeat for several); default: every resilient cache.",
        )
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        parser.add_argument(
            "--watch",
            type=float,
            metavar="SECONDS",
            help="Report again every SECONDS until interrupted; exit with the last code.",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            metavar="SECONDS",
            help="Per-node probe timeout (default: REDIS_RESILIENCE['HEALTH']['TIMEOUT']).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = options["aliases"]
        watch, timeout = options["watch"], options["timeout"]
        _check_arguments(aliases, watch=watch, timeout=timeout)
        code = CANNOT_CHECK
        try:
            while True:
                report = self._report(aliases, timeout)
                code = report.exit_code
                self._show(report, as_json=options["json"])
                if watch is None:
                    break
                time.sleep(watch)
        except KeyboardInterrupt:
            pass
        except CommandError:
            raise
        except Exception as exc:
            raise CommandError(
                f"Could not check: {type(exc).__name__}: {exc}", returncode=CANNOT_CHECK
            ) from exc
        if code:
            sys.exit(code)

    def _report(self, aliases: list[str] | None, timeout: float | None) -> Report:
        return build_report(aliases, timeout=timeout)

    # --- output -------------------------------------------------------------

    def _show(self, report: Report, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, default=str))
            return
        for cache in report.caches:
            self._show_cache(cache)
        self._show_findings(report.findings)
        self.stdout.write(
            f"status: {report.status} (exit {report.exit_code}), {report.duration_ms:.0f} ms"
        )

    def _show_cache(self, cache: CacheReport) -> None:
        """A cache's line, its nodes' table, its slot coverage and this process's breakers."""
        paint = {
            "ok": self.style.SUCCESS,
            "warning": self.style.WARNING,
            "critical": self.style.ERROR,
        }.get(cache.status, self.style.ERROR)
        self.stdout.write(
            f"{cache.alias}  {cache.topology}  {cache.location}  "
            + paint(cache.status.upper())
            + f"  ({cache.duration_ms:.0f} ms)"
        )
        for line in _table([NODE_COLUMNS, *(_node_row(node) for node in cache.nodes)]):
            self.stdout.write("  " + line)
        if cache.cluster:
            c = cache.cluster
            self.stdout.write(
                f"  slots served: {c.get('slots_covered')}/{c.get('slots_total')}"
                + (f" (not served: {c['uncovered'][:120]})" if c.get("uncovered") else "")
            )
        client = cache.client
        breakers = ", ".join(
            f"{e['role']} {e['breaker']}"
            + (f" journal {e['journal_size']}" if e["journal_size"] else "")
            for e in client.get("endpoints", [])
        )
        self.stdout.write(f"  this process ({client.get('process')}): {breakers or '-'}")
        self.stdout.write("")

    def _show_findings(self, findings: list[Finding]) -> None:
        """Every finding, worst first, or a line saying there is none."""
        if not findings:
            self.stdout.write(self.style.SUCCESS("no findings"))
            return
        self.stdout.write("findings:")
        paint_of = {
            Severity.INFO: self.style.NOTICE,
            Severity.WARNING: self.style.WARNING,
            Severity.CRITICAL: self.style.ERROR,
        }
        for f in sorted(findings, key=lambda f: -f.severity.rank):
            self.stdout.write(
                "  " + paint_of[f.severity](f"{f.severity.value.upper():8}") + f" {f.code} "
                f"[{f.alias}] {f.message}"
            )


def _check_arguments(
    aliases: list[str] | None, *, watch: float | None, timeout: float | None
) -> None:
    """Usage errors: unknown aliases, no resilient cache, a bad ``--watch`` or ``--timeout``."""
    known = conf.resilient_aliases()
    if aliases:
        unknown = [a for a in aliases if a not in known]
        if unknown:
            raise CommandError(
                f"Not a ResilientRedisCache alias: {', '.join(unknown)} "
                f"(known: {', '.join(known) or 'none'}).",
                returncode=CANNOT_CHECK,
            )
    elif not known:
        raise CommandError("No ResilientRedisCache in CACHES.", returncode=CANNOT_CHECK)
    if watch is not None and watch <= 0:
        raise CommandError("--watch needs a number of seconds > 0.", returncode=CANNOT_CHECK)
    if timeout is not None and not 0 < timeout <= 30:
        raise CommandError("--timeout needs seconds from 0 to 30.", returncode=CANNOT_CHECK)


#: The nodes' table: one row per node.
NODE_COLUMNS = (
    "node",
    "kind",
    "up",
    "ping ms",
    "role",
    "version",
    "memory",
    "clients",
    "link",
    "slots",
)


def _node_row(node: NodeReport) -> tuple[str, ...]:
    memory = node.memory
    used = _size(memory.get("used_memory"))
    limit = memory.get("maxmemory")
    clients = node.clients
    return (
        node.address,
        node.kind,
        "yes" if node.reachable else f"no ({node.error})",
        "-" if node.ping_ms is None else f"{node.ping_ms:.2f}",
        str(node.replication.get("role", "-")),
        node.server or "-",
        f"{used}/{_size(limit)}" if limit else used,
        "/".join(
            str(clients.get(k, "-"))
            for k in ("connected_clients", "blocked_clients", "rejected_connections")
        ),
        str(node.replication.get("master_link_status", "-")),
        _slots(node),
    )


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines of left-aligned columns, each as wide as its widest cell."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
