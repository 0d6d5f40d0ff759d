"""Check or read the hash-chained audit log (no Ray needed).

Run:
    python -m pipelines.audit verify --url postgresql+psycopg2://auditor@db/amcp
    python -m pipelines.audit verify --url sqlite:///runs/audit.sqlite --table audit_log \\
        --expect-head 1200:3f5c...e9            # also catch a truncated tail (seq:hash kept offline)
    python -m pipelines.audit tail --url sqlite:///runs/audit.sqlite -n 20

``--url`` defaults to the ``DATABASE_URL`` environment variable. Neither command writes
anything: the table, its triggers and indexes are never created or altered, so a read-only role
is enough.

``verify`` recomputes every row's SHA-256 in ``seq`` order and prints one JSON line::

    {"ok": true, "rows": 1200, "first_bad_seq": null, "problem": null, "detail": "...",
     "head_seq": 1200, "head_hash": "...", "table": "audit_log"}

``problem`` is one of ``edited``, ``deleted``, ``reordered``, ``inserted``, ``bad_genesis``.
Exit code 0 when the chain verifies, 1 when it does not, 2 on bad input (no URL, unreachable
database, missing table, malformed ``--expect-head``) with the reason on stderr and
``{"ok": false, "error": ...}`` on stdout.

``tail`` prints the last ``-n`` records as JSON lines, oldest first (payload in its canonical
form: Decimals as ``{"$decimal": "..."}``); exit code 0, or 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from amcp.errors import AmcpError
from amcp.store.audit import AuditLog

EXIT_OK = 0
EXIT_BROKEN_CHAIN = 1
EXIT_BAD_INPUT = 2  # as pipelines._common.EXIT_BAD_INPUT, without importing the research stack


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _head(text: str) -> tuple[int, str]:
    seq_text, _, hash_text = text.partition(":")
    try:
        seq = int(seq_text)
    except ValueError:
        seq = 0
    if seq < 1 or len(hash_text) != 64 or any(c not in "0123456789abcdef" for c in hash_text):
        raise argparse.ArgumentTypeError(
            f"expected SEQ:HASH (seq >= 1, 64 lowercase hex digits), got {text!r}"
        )
    return seq, hash_text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.audit", description="Verify or read the hash-chained audit log."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("verify", "recompute every hash and report the first break"),
                       ("tail", "print the last records as JSON lines")):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--url", default=None,
                             help="SQLAlchemy database URL (default: the DATABASE_URL environment variable)")
        command.add_argument("--table", default="audit_log", help="audit table name (default: audit_log)")
        if name == "verify":
            command.add_argument("--expect-head", type=_head, default=None, metavar="SEQ:HASH",
                                 help="head_seq:head_hash of an earlier verify, kept outside the database; "
                                      "detects rows deleted from the end")
        else:
            command.add_argument("-n", type=_count, default=20, help="how many records (default: 20)")
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    print(json.dumps({"ok": False, "error": message.splitlines()[0][:500]}))
    return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 chain broken, 2 bad input)."""
    args = _parser().parse_args(argv)
    url = args.url or os.environ.get("DATABASE_URL")
    if not url:
        return _fail("no database URL: pass --url or set DATABASE_URL")
    try:
        with AuditLog(url, table=args.table, create=False) as log:
            if args.command == "tail":
                for record in log.tail(args.n):
                    print(json.dumps(record.to_dict(), ensure_ascii=False))
                return EXIT_OK
            report = log.verify(expected_head=args.expect_head)
    except AmcpError as exc:
        return _fail(str(exc))
    print(json.dumps(report.to_dict() | {"table": args.table}))
    return EXIT_OK if report.ok else EXIT_BROKEN_CHAIN


if __name__ == "__main__":
    sys.exit(main())
