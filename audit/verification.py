"""Recompute the audit hash chain from the stored rows and report the first break.

Reads the chain in windows of consecutive links (their sizes come from a server-side cursor) and the events a
batch of links lists (one query per table per batch), so memory stays bounded by about ``batch_size`` events
plus the largest single link (one INSERT statement), however many millions of events there are.

The verification runs in one REPEATABLE READ snapshot when it owns its transaction: a write committed
meanwhile (event rows and their link commit together) is either wholly seen or wholly unseen.

Findings, in chain order:

- a link whose ``seq`` skips a number (a link was deleted) or whose ``prev_hash`` is not its predecessor's hash;
- a link whose ``hash`` does not match its content;
- an event listed by a link whose row is gone, or whose canonical text no longer matches its digest (tampered);
- an event row that no link lists (inserted around the chain trigger), or a link naming an unknown table.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import pgtrigger
from django.db import connection, transaction

from audit.chain import CANONICAL_TEXT_FUNCTION, CHAIN_TABLE, DIGEST_SIZE, ChainLinkTrigger, link_hash, row_digest

DEFAULT_BATCH_SIZE = 5000
DEFAULT_MAX_FINDINGS = 50


@dataclass(frozen=True, order=True)
class Finding:
    """One problem; ``seq`` is the chain link concerned (None for an event no link covers)."""

    seq: int | None
    table: str
    event_id: int | None
    problem: str

    def describe(self) -> str:
        where = [f"link seq {self.seq}" if self.seq is not None else "no link", f"table {self.table}"]
        if self.event_id is not None:
            where.append(f"event id {self.event_id}")
        return f"{', '.join(where)}: {self.problem}"


@dataclass
class ChainVerification:
    links: int = 0
    events: int = 0
    tables: int = 0
    head_seq: int = 0
    head_hash: bytes = b""
    findings: list[Finding] = field(default_factory=list)
    finding_count: int = 0

    @property
    def ok(self) -> bool:
        return self.finding_count == 0

    @property
    def first_finding(self) -> Finding | None:
        return min(self.findings, key=_chain_order) if self.findings else None

    def summary(self) -> str:
        if self.ok:
            return (
                f"OK: audit chain verified — {self.links} links, {self.events} events in {self.tables} tables; "
                f"head seq {self.head_seq} hash {self.head_hash.hex() or '-'}"
            )
        return (
            f"FAILED: {self.finding_count} finding(s) in {self.links} links / {self.events} events; "
            f"first: {self.first_finding.describe()}"
        )


def _chain_order(finding: Finding) -> tuple[int, int, str]:
    # Uncovered events have no link: report them after every chained problem.
    seq = finding.seq if finding.seq is not None else 2**63
    return (seq, finding.event_id or 0, finding.table)


@dataclass(frozen=True)
class ChainedTable:
    name: str
    id_column: str


def chained_tables() -> dict[str, ChainedTable]:
    """Every table that carries the chain trigger, by table name (from the pgtrigger registry)."""
    return {
        model._meta.db_table: ChainedTable(model._meta.db_table, model._meta.pk.column)
        for model, trigger in pgtrigger.registered()
        if isinstance(trigger, ChainLinkTrigger)
    }


@dataclass(frozen=True)
class _ListedEvent:
    seq: int
    event_id: int
    digest: bytes
    columns: tuple[str, ...]


class _Verifier:
    def __init__(self, *, batch_size: int, max_findings: int) -> None:
        self.batch_size = batch_size
        self.max_findings = max_findings
        self.tables = chained_tables()
        self.current_columns = {name: self._columns_of(name) for name in self.tables}
        self.result = ChainVerification(tables=len(self.tables))
        self.pending: dict[str, list[_ListedEvent]] = defaultdict(list)
        self.pending_count = 0

    def report(self, finding: Finding) -> None:
        self.result.finding_count += 1
        if len(self.result.findings) < self.max_findings:
            self.result.findings.append(finding)

    def run(self) -> ChainVerification:
        previous_hash, expected_seq = b"", 1
        for seq, table, event_ids, columns, digests, prev_hash, stored_hash in self._links():
            digests, prev_hash, stored_hash = bytes(digests), bytes(prev_hash), bytes(stored_hash)
            self.result.links += 1
            if seq != expected_seq:
                self.report(Finding(seq, table, None, f"chain gap: links {expected_seq}…{seq - 1} are missing"))
            if prev_hash != previous_hash:
                self.report(Finding(seq, table, None, "prev_hash is not the previous link's hash"))
            if link_hash(prev_hash, table, digests) != stored_hash:
                self.report(Finding(seq, table, None, "link hash does not match its content (link altered)"))
            previous_hash, expected_seq = stored_hash, seq + 1
            self.result.head_seq, self.result.head_hash = seq, stored_hash
            self._check_listing(seq, table, event_ids, columns, digests)
        self._flush()
        for table in self.tables.values():
            self._find_uncovered_events(table)
        self.result.findings.sort(key=_chain_order)
        return self.result

    def _check_listing(self, seq, table, event_ids, columns, digests) -> None:
        if table not in self.tables:
            self.report(Finding(seq, table, None, "the link names a table that is not a chained audit table"))
            return
        if len(digests) != DIGEST_SIZE * len(event_ids):
            self.report(Finding(seq, table, None, "the link's digests do not match its number of events"))
            return
        if any(a >= b for a, b in itertools.pairwise(event_ids)):
            self.report(Finding(seq, table, None, "the link's event ids are not strictly increasing"))
        columns = tuple(columns)
        for index, event_id in enumerate(event_ids):
            digest = digests[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE]
            self.pending[table].append(_ListedEvent(seq, event_id, digest, columns))
            self.pending_count += 1
            if self.pending_count >= self.batch_size:
                self._flush()
        self.result.events += len(event_ids)

    def _flush(self) -> None:
        for table_name, listed in self.pending.items():
            table = self.tables[table_name]
            by_columns: dict[tuple[str, ...], list[_ListedEvent]] = defaultdict(list)
            for item in listed:
                by_columns[item.columns].append(item)
            for columns, items in by_columns.items():
                self._compare(table, columns, items)
        self.pending.clear()
        self.pending_count = 0

    def _compare(self, table: ChainedTable, columns: tuple[str, ...], items: list[_ListedEvent]) -> None:
        later_columns = [name for name in self.current_columns[table.name] if name not in columns]
        gone_columns = [name for name in columns if name not in self.current_columns[table.name]]
        id_column, table_name = connection.ops.quote_name(table.id_column), connection.ops.quote_name(table.name)
        with connection.cursor() as cursor:
            cursor.execute(
                # Names come from the model registry, never from input.
                f"SELECT e.{id_column}, {CANONICAL_TEXT_FUNCTION}(e, %s::text[]) "  # noqa: S608
                f"FROM {table_name} e WHERE e.{id_column} = ANY(%s)",
                [later_columns, [item.event_id for item in items]],
            )
            texts = dict(cursor.fetchall())
        for item in items:
            text = texts.get(item.event_id)
            if text is None:
                self.report(Finding(item.seq, table.name, item.event_id, "event listed by the chain is missing"))
            elif row_digest(text) != item.digest:
                problem = "event content does not match its chained digest (tampered)"
                if gone_columns:
                    problem += f"; columns dropped or renamed since: {', '.join(gone_columns)}"
                self.report(Finding(item.seq, table.name, item.event_id, problem))

    def _find_uncovered_events(self, table: ChainedTable) -> None:
        id_column, table_name = connection.ops.quote_name(table.id_column), connection.ops.quote_name(table.name)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {id_column} FROM {table_name} "  # noqa: S608 - names from the model registry
                f"EXCEPT SELECT unnest(event_ids) FROM {CHAIN_TABLE} WHERE table_name = %s "
                f"ORDER BY 1 LIMIT %s",
                [table.name, self.max_findings],
            )
            for (event_id,) in cursor.fetchall():
                self.report(Finding(None, table.name, event_id, "event is not covered by any chain link"))

    def _links(self) -> Iterator[tuple]:
        """Links in seq order, read in windows of about ``batch_size`` events (a larger link alone)."""
        for first, last in self._link_windows():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT seq, table_name, event_ids, event_columns, row_digests, prev_hash, hash "  # noqa: S608
                    f"FROM {CHAIN_TABLE} WHERE seq BETWEEN %s AND %s ORDER BY seq",
                    [first, last],
                )
                yield from cursor.fetchall()

    def _link_windows(self) -> Iterator[tuple[int, int]]:
        window: list[int] = []
        events_in_window = 0
        with connection.chunked_cursor() as cursor:
            cursor.execute(f"SELECT seq, cardinality(event_ids) FROM {CHAIN_TABLE} ORDER BY seq")  # noqa: S608
            while rows := cursor.fetchmany(2000):
                for seq, size in rows:
                    if window and events_in_window + size > self.batch_size:
                        yield window[0], window[-1]
                        window, events_in_window = [], 0
                    window.append(seq)
                    events_in_window += size
        if window:
            yield window[0], window[-1]

    @staticmethod
    def _columns_of(table_name: str) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum",
                [table_name],
            )
            return [name for (name,) in cursor.fetchall()]


def verify_audit_chain(
    *, batch_size: int = DEFAULT_BATCH_SIZE, max_findings: int = DEFAULT_MAX_FINDINGS
) -> ChainVerification:
    """Recompute every link and event digest; the result lists up to ``max_findings`` findings in chain order."""
    with _consistent_snapshot():
        return _Verifier(batch_size=batch_size, max_findings=max_findings).run()


@contextlib.contextmanager
def _consistent_snapshot() -> Iterator[None]:
    if connection.in_atomic_block:
        # Inside a caller's transaction (tests, a shell) its isolation level stands.
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield
