"""`secretledger report`: the compliance report (docs/report.md, CR-1 to CR-17) as JSON,
Markdown or one self-contained HTML page.

The read side computes the report (:mod:`projections.report`); this face composes in
what needs keys: value reuse (CR-11, with ``--keyring``) and the ledger's integrity
(CR-13: ``verify`` and the latest signed checkpoint at or before the cut). matplotlib
is imported only for ``--format html``.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

import click

from ledger.checkpoints import CheckpointError, parse_checkpoint_line
from ledger.cli.common import (
    LedgerSettings,
    account_id_option,
    checkpoints_option,
    database_option,
    default_checkpoints_path,
    keyring_option,
    main,
    open_secrets,
    public_key_option,
    region_option,
    signing_key_option,
)
from ledger.cli.evidence import (
    VerifierKeys,
    first_origin,
    open_checkpoint_file,
    opened_log,
    run_verification,
    verifier_keys,
)
from ledger.cli.projections import caught_up, time_option
from ledger.evidence import CheckpointStore, Verification
from ledger.value_reuse import SharedValue, ValueReuse, find_value_reuse
from projections.base import format_instant
from projections.report import (
    MAX_AGE_SECONDS_DEFAULT,
    Evidence,
    Finding,
    ReportPeriod,
    ReportQueries,
    add_findings,
    parse_duration,
)

FORMATS: Final = ("json", "md", "html")
CHART_WIDTH_INCHES: Final = 9.0
CHART_ROW_INCHES: Final = 0.45
HTML_STYLE: Final = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #999;padding:3px 8px;font-size:13px;text-align:left}"
    "th{background:#eee}.critical,.high{color:#a00}.medium{color:#a60}"
    "figure{margin:1em 0}"
)


def duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    if value is None:
        return MAX_AGE_SECONDS_DEFAULT
    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


@main.command("report")
@database_option()
@time_option("--since", "The period starts at this time (default: the log's start).")
@time_option("--until", "The period ends at this time (default: the cut).")
@time_option("--as-of", "The report as the ledger stood at this instant (default: now).")
@click.option(
    "--max-age",
    "max_age_seconds",
    callback=duration,
    metavar="DURATION",
    help="An AWSCURRENT value older than this is stale: 90d, 12h, 30s (default 90d).",
)
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="json")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
@keyring_option()
@region_option()
@account_id_option()
@checkpoints_option()
@public_key_option()
@signing_key_option()
def report(
    database: str,
    since: datetime.datetime | None,
    until: datetime.datetime | None,
    as_of: datetime.datetime | None,
    max_age_seconds: int,
    output_format: str,
    out: Path | None,
    keyring_path: Path | None,
    region: str,
    account_id: str,
    checkpoints_path: Path | None,
    public_key_path: Path | None,
    signing_key_path: Path | None,
) -> None:
    """Rotation hygiene, churn and access per secret and in total, with findings that
    cite log positions and request ids (``secretledger prove --position`` backs each
    one). With --keyring, values shared across versions are named (never shown).
    JSON is the contract (docs/report.md); md is for a ticket; html is one page that
    opens without network, with a label timeline chart per secret.

    Exit codes: 0 (whatever the findings), 1 (the ledger cannot be read), 2 (usage).

    \b
    Examples:
      secretledger report --db team.db --since 2025-01-01 --max-age 90d
      secretledger report --db team.db --as-of 2025-03-31T23:59:59Z --format html --out q1.html
    """
    try:
        period = ReportPeriod(
            as_of=as_of or datetime.datetime.now(datetime.UTC),
            since=since,
            until=until,
            max_age_seconds=max_age_seconds,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    # CR-13: verify walks the whole log; it runs in its own process meanwhile.
    with (
        integrity_process(
            database, period.as_of, checkpoints_path, public_key_path, signing_key_path
        ) as checking,
        tempfile.TemporaryFile("w+", encoding="utf-8") as spool,
    ):
        reuse = (
            None
            if keyring_path is None
            else value_reuse(LedgerSettings(database, keyring_path, region, account_id))
        )
        with caught_up(database) as model:
            queries = ReportQueries(model.store)
            document = queries.report(period, lambda entry: spool_entry(spool, entry))
            shared, findings = ([], []) if reuse is None else reuse_at_cut(queries, reuse, period)
        document["Integrity"] = finish_integrity(checking)
        findings += integrity_findings(document["Integrity"])
        if reuse is not None:
            document["ValueReuse"] = {
                **reuse.to_json(),
                "SharedValues": [value.to_json() for value in shared],
            }
        add_findings(document, findings)
        with click.open_file("-" if out is None else str(out), "w", encoding="utf-8") as stream:
            render(document, lambda: spooled_entries(spool), output_format, stream)


def spool_entry(spool: IO[str], entry: dict[str, Any]) -> None:
    """A secret's entry kept on disk (a report holds no value) until it is rendered."""
    spool.write(json.dumps(entry, ensure_ascii=False) + "\n")


def spooled_entries(spool: IO[str]) -> Iterator[dict[str, Any]]:
    spool.flush()
    spool.seek(0)
    for line in spool:
        entry: dict[str, Any] = json.loads(line)
        yield entry


# Composed in: integrity (CR-13) and value reuse (CR-11) -----------------------------


INTEGRITY_PROGRAM: Final = (
    "import sys; from ledger.cli.report import integrity_main; "
    "sys.exit(integrity_main(sys.argv[1:]))"
)


@contextmanager
def integrity_process(
    database: str,
    as_of: datetime.datetime,
    checkpoints_path: Path | None,
    public_key_path: Path | None,
    signing_key_path: Path | None,
) -> Iterator[subprocess.Popen[str]]:
    """``integrity`` in a fresh interpreter (not a fork: this process will hold
    connections), beside the report's queries; its progress and errors on stderr.
    Ended if the report fails first."""
    paths = (checkpoints_path, public_key_path, signing_key_path)
    arguments = [database, format_instant(as_of)]
    arguments += ["" if path is None else str(path) for path in paths]
    checking = subprocess.Popen(
        [sys.executable, "-c", INTEGRITY_PROGRAM, *arguments], stdout=subprocess.PIPE, text=True
    )
    try:
        yield checking
    finally:
        if checking.poll() is None:
            checking.kill()
        checking.wait()
        assert checking.stdout is not None
        checking.stdout.close()


def finish_integrity(checking: subprocess.Popen[str]) -> dict[str, Any]:
    output, _ = checking.communicate()
    if checking.returncode != 0:
        raise click.ClickException("the ledger's integrity could not be checked (above)")
    document: dict[str, Any] = json.loads(output)
    return document


def integrity_main(arguments: Sequence[str]) -> int:
    """The integrity process: the Integrity section as one JSON line on stdout."""
    database, as_of, *paths = arguments
    checkpoints_path, public_key_path, signing_key_path = (
        Path(path) if path else None for path in paths
    )
    try:
        document = integrity(
            database,
            datetime.datetime.fromisoformat(as_of),
            checkpoints_path,
            public_key_path,
            signing_key_path,
        )
    except click.ClickException as error:
        error.show()
        return 1
    print(json.dumps(document))
    return 0


def integrity(
    database: str,
    as_of: datetime.datetime,
    checkpoints_path: Path | None,
    public_key_path: Path | None,
    signing_key_path: Path | None,
) -> dict[str, Any]:
    path = default_checkpoints_path(database, checkpoints_path)
    checkpoint_file = open_checkpoint_file(path, required=checkpoints_path is not None)
    with opened_log(database) as store:
        keys = verifier_keys(
            database, public_key_path, signing_key_path, first_origin(store, checkpoint_file)
        )
        verification = run_verification(store, keys, checkpoint_file)
        latest = latest_checkpoint(store, as_of)
    return integrity_json(verification, keys, latest)


def latest_checkpoint(store: CheckpointStore, as_of: datetime.datetime) -> dict[str, Any] | None:
    """The last stored checkpoint signed at or before the cut."""
    latest = None
    for stored in store.select_checkpoints():
        try:
            checkpoint = parse_checkpoint_line(stored.line)
        except CheckpointError:
            continue  # verify reports it (CR-13)
        if checkpoint.time <= as_of:
            latest = {
                "Sequence": stored.sequence,
                "TreeSize": checkpoint.tree_size,
                "Position": checkpoint.position,
                "Time": format_instant(checkpoint.time),
                "Root": checkpoint.root.hex(),
            }
    return latest


def integrity_json(
    verification: Verification, keys: VerifierKeys, latest: dict[str, Any] | None
) -> dict[str, Any]:
    problem = verification.problem
    return {
        "Intact": verification.intact,
        "Problem": None if problem is None else problem.to_json(),
        "Keys": keys.source,
        "LatestCheckpoint": latest,
    }


def integrity_findings(integrity_document: dict[str, Any]) -> list[Finding]:
    problem = integrity_document["Problem"]
    if problem is None:
        return []
    position = problem.get("position")
    evidence = (Evidence(int(position), ""),) if isinstance(position, int) else ()
    summary = f"verify: {problem.get('problem', 'not intact')}"
    return [Finding("integrity", None, summary, evidence)]


def value_reuse(settings: LedgerSettings) -> ValueReuse:
    """CR-11: compared in memory with the keyring; names and version ids only."""
    secrets = open_secrets(settings)
    try:
        return find_value_reuse(secrets, list(secrets.secret_ids()))
    finally:
        secrets.close()


def reuse_at_cut(
    queries: ReportQueries, outcome: ValueReuse, period: ReportPeriod
) -> tuple[list[SharedValue], list[Finding]]:
    """CR-11: the shared values among versions created at or before the cut, and one
    finding per secret of each, citing each version's creation."""
    kept, findings = [], []
    for shared in outcome.shared:
        cited = [
            (version, queries.version_evidence(version.arn, version.version_id, period.as_of))
            for version in shared.versions
        ]
        held = [(version, evidence) for version, evidence in cited if evidence is not None]
        if len(held) < 2:
            continue
        value = SharedValue(tuple(version for version, _ in held))
        evidence = tuple(evidence for _, evidence in held)
        scope = "across secrets" if value.across_secrets else "within one secret"
        names = ", ".join(f"{version.name}:{version.version_id}" for version in value.versions)
        kept.append(value)
        for arn in sorted({version.arn for version in value.versions}):
            findings.append(Finding("value-reuse", arn, f"one value {scope}: {names}", evidence))
    return kept, findings


# Rendering ---------------------------------------------------------------------------


Entries = Callable[[], Iterator[dict[str, Any]]]


def render(document: dict[str, Any], entries: Entries, output_format: str, out: IO[str]) -> None:
    """``entries()``: the secrets' entries, from the start, each time it is called."""
    if output_format == "json":
        write_json(document, entries(), out)
    elif output_format == "md":
        write_markdown(document, entries(), out)
    else:
        assert output_format == "html", output_format
        write_html(document, entries, out)


def write_json(document: dict[str, Any], entries: Iterator[dict[str, Any]], out: IO[str]) -> None:
    """One top-level member per line, a list's items one per line, ``Secrets`` last."""
    out.write("{")
    separator = "\n  "
    for key, value in [*document.items(), ("Secrets", entries)]:
        out.write(f"{separator}{json.dumps(key)}: ")
        separator = ",\n  "
        if isinstance(value, list | Iterator):
            write_json_items(value, out)
        else:
            out.write(json.dumps(value, ensure_ascii=False))
    out.write("\n}\n")


def write_json_items(items: Iterable[Any], out: IO[str]) -> None:
    separator = "[\n    "
    for item in items:
        out.write(separator + json.dumps(item, ensure_ascii=False))
        separator = ",\n    "
    out.write("[]" if separator == "[\n    " else "\n  ]")


FINDING_HEADER: Final = ("Kind", "Severity", "Secret", "Principal", "Summary", "Evidence")
SECRET_HEADER: Final = (
    "Secret",
    "Current age",
    "Last rotation",
    "Next rotation",
    "Rotations ok/failed/abandoned/rolled back",
    "Puts",
    "Bursts",
    "Versions (cap)",
    "Retention/destroyed",
    "Deprecated",
    "Custom labels",
    "Non-current reads",
)


def evidence_text(finding: dict[str, Any]) -> str:
    return " ".join(
        f"#{item['Position']}" + (f" ({item['RequestId']})" if item["RequestId"] else "")
        for item in finding["Evidence"]
    )


def finding_cells(finding: dict[str, Any]) -> list[str]:
    return [
        finding["Kind"],
        finding["Severity"],
        finding["SecretARN"] or finding["SecretReference"] or "-",
        finding["Principal"] or "-",
        finding["Summary"],
        evidence_text(finding),
    ]


def seconds_text(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds // 86_400}d {seconds % 86_400 // 3_600}h"


def next_rotation_text(rotation: dict[str, Any] | None) -> str:
    """CR-15, CR-17: "-" never configured, "off", or the date (and "overdue")."""
    if rotation is None:
        return "-"
    if not rotation["RotationEnabled"]:
        return "off"
    date = rotation["NextRotationDate"] or "not scheduled"
    return date + (" (overdue)" if rotation["Overdue"] else "")


def secret_cells(entry: dict[str, Any]) -> list[str]:
    current = entry["Current"]
    last = entry["LastRotation"]
    rotations = entry["Rotations"]
    churn = entry["Churn"]
    return [
        entry["Name"] + (" (deleted)" if entry["Deleted"] else ""),
        seconds_text(None if current is None else current["AgeSeconds"]),
        seconds_text(None if last is None else last["SecondsSince"]),
        next_rotation_text(entry["Rotation"]),
        "/".join(str(rotations[key]) for key in ("Completed", "Failed", "Abandoned", "RolledBack")),
        str(churn["Puts"]),
        str(churn["WriteBursts"]),
        f"{churn['Versions']} ({churn['VersionCap']})",
        f"{churn['RemovedByRetention']}/{churn['Destroyed']}",
        str(entry["DeprecatedVersions"]),
        ", ".join(entry["CustomLabels"]) or "-",
        str(entry["Access"]["NonCurrentReads"]),
    ]


def markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [markdown_row(header), markdown_row(["---"] * len(header)), *map(markdown_row, rows)]


def header_lines(document: dict[str, Any]) -> list[tuple[str, str]]:
    period = document["Period"]
    totals = document["Totals"]
    integrity_state = document["Integrity"]
    latest = integrity_state["LatestCheckpoint"]
    return [
        ("As of", period["AsOf"]),
        ("Period", f"{period['Since'] or 'start of the log'} to {period['Until']}"),
        ("Secrets", str(totals["Secrets"])),
        ("Integrity", "intact" if integrity_state["Intact"] else "NOT INTACT"),
        (
            "Latest checkpoint",
            "none"
            if latest is None
            else f"#{latest['Sequence']} size {latest['TreeSize']} at {latest['Time']}",
        ),
        (
            "Findings",
            ", ".join(f"{kind} {count}" for kind, count in totals["FindingsByKind"].items())
            or "none",
        ),
    ]


def write_markdown(
    document: dict[str, Any], entries: Iterator[dict[str, Any]], out: IO[str]
) -> None:
    lines = ["# Secret ledger compliance report", ""]
    lines += [f"- **{name}**: {value}" for name, value in header_lines(document)]
    lines += ["", "## Findings", ""]
    lines += markdown_table(FINDING_HEADER, [finding_cells(item) for item in document["Findings"]])
    lines += ["", "## Secrets", ""]
    lines += markdown_table(SECRET_HEADER, [])
    out.write("\n".join(lines) + "\n")
    for entry in entries:
        out.write(markdown_row(secret_cells(entry)) + "\n")
    denied = document["DeniedByPrincipal"]
    lines = ["", "## Denied calls by principal", ""]
    lines += markdown_table(
        ("Principal", "Denied calls"),
        [(principal or "(unauthenticated)", str(count)) for principal, count in denied.items()],
    )
    out.write("\n".join(lines) + "\n")


def html_row(cells: Sequence[str]) -> str:
    return "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"


def html_table_start(header: Sequence[str], css_id: str) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>'


def write_html(document: dict[str, Any], entries: Entries, out: IO[str]) -> None:
    out.write(
        "".join(
            [
                "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
                "<title>Secret ledger compliance report</title>",
                f"<style>{HTML_STYLE}</style></head><body>",
                "<h1>Secret ledger compliance report</h1><ul>",
                *(
                    f"<li><b>{html.escape(name)}</b>: {html.escape(value)}</li>"
                    for name, value in header_lines(document)
                ),
                "</ul><h2>Findings</h2>",
                html_table_start(FINDING_HEADER, "findings"),
                *(html_row(finding_cells(item)) for item in document["Findings"]),
                "</tbody></table><h2>Secrets</h2>",
                html_table_start(SECRET_HEADER, "secrets"),
            ]
        )
    )
    for entry in entries():
        out.write(html_row(secret_cells(entry)))
    out.write("</tbody></table><h2>Label timelines</h2>")
    for entry in entries():
        if entry["LabelTimeline"]:
            out.write(
                f'<figure class="timeline"><figcaption>{html.escape(entry["ARN"])}'
                f"</figcaption>{timeline_chart(entry['LabelTimeline'])}</figure>"
            )
    out.write("</body></html>\n")


def timeline_chart(bars: Sequence[dict[str, Any]]) -> str:
    """Which version held each label over time: a broken-bar chart as an inline
    ``<img>`` of base64 SVG (no script, no external reference)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates
    from matplotlib import pyplot as plt

    labels = sorted({bar["Label"] for bar in bars})
    versions = sorted({bar["VersionId"] for bar in bars})
    colours = plt.get_cmap("tab20")
    figure, axes = plt.subplots(figsize=(CHART_WIDTH_INCHES, 1 + CHART_ROW_INCHES * len(labels)))
    try:
        for bar in bars:
            start = float(dates.date2num(datetime.datetime.fromisoformat(bar["From"])))  # type: ignore[no-untyped-call]
            end = float(dates.date2num(datetime.datetime.fromisoformat(bar["To"])))  # type: ignore[no-untyped-call]
            row = labels.index(bar["Label"])
            colour = colours(versions.index(bar["VersionId"]) % 20)
            axes.broken_barh([(start, max(end - start, 1e-6))], (row - 0.4, 0.8), color=colour)
            axes.text(start, row, bar["VersionId"][:8], va="center", fontsize=7)
        axes.set_yticks(range(len(labels)), labels)
        axes.xaxis_date()
        figure.autofmt_xdate()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue().encode("utf-8")).decode("ascii")
    return f'<img class="chart" alt="label timeline" src="data:image/svg+xml;base64,{encoded}">'
