"""Gate results for CI: JUnit XML and a Markdown summary (the terminal table: harness/cli/gate.py).

JUnit follows the schema CI tools read (Jenkins xunit junit-10.xsd, also
GitLab and GitHub test reporters): <testsuites> holds one <testsuite> per
gate with name/tests/failures/errors/skipped/time, each holding one
<testcase> per decoder (and size) with a <failure> or <skipped> child.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from harness.gates.outcomes import FAIL, PASS, SKIP, UNDECIDED, Check, GateReport

ICONS = {PASS: "✅", FAIL: "❌", SKIP: "⏭️", UNDECIDED: "❔"}
ENVIRONMENT_ADVICE = ("Latency and memory gates fail on these differences unless allowed: re-baseline on "
                      "this machine, or set allow_environment_mismatch = true on the gate "
                      "(--allow-environment-mismatch).")
_XML_INVALID = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def counts(report: GateReport) -> str:
    counts = {s: sum(c.status == s for c in report.checks) for s in (PASS, FAIL, UNDECIDED, SKIP)}
    text = f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped"
    return text + (f", {counts[UNDECIDED]} undecided" if counts[UNDECIDED] else "")


def verdict(report: GateReport) -> str:
    if report.failed:
        return "gates failed"
    return "all gates hold" if report.passed else "gates undecided: the data cannot decide some of them"


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("?", text)


def junit_xml(report: GateReport) -> str:
    root = ET.Element("testsuites", name="decoderbench gates", tests=str(len(report.checks)),
                      failures=str(sum(c.status == FAIL for c in report.checks)),
                      errors=str(sum(c.status == UNDECIDED for c in report.checks)), time="0")
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    gates = list(dict.fromkeys(check.gate for check in report.checks))
    for gate in gates:
        checks = [c for c in report.checks if c.gate == gate]
        suite = ET.SubElement(
            root, "testsuite", name=_xml_text(gate), tests=str(len(checks)),
            failures=str(sum(c.status == FAIL for c in checks)),
            errors=str(sum(c.status == UNDECIDED for c in checks)),
            skipped=str(sum(c.status == SKIP for c in checks)), time="0", timestamp=timestamp,
            hostname=_xml_text(socket.gethostname()),
        )
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="baseline", value=_xml_text(report.baseline))
        ET.SubElement(properties, "property", name="run_dir", value=_xml_text(str(report.run_dir)))
        for mismatch in report.mismatches:
            ET.SubElement(properties, "property", name=_xml_text(f"environment {mismatch.fact}"),
                          value=_xml_text(str(mismatch).split(": ", 1)[1]))
        for check in checks:
            _testcase(suite, check)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _testcase(suite: ET.Element, check: Check) -> None:
    case = ET.SubElement(suite, "testcase", name=_xml_text(check.name),
                         classname=_xml_text(f"decoderbench.gates.{check.gate}"), time="0")
    summary = "; ".join(part for part in (check.observed, f"limit {check.limit}" if check.limit else "",
                                          check.message) if part)
    if check.status == FAIL:
        failure = ET.SubElement(case, "failure", message=_xml_text(check.message or summary),
                                type="GateFailed")
        failure.text = _xml_text(summary)
    elif check.status == UNDECIDED:  # not a failure of the decoder: the data cannot decide
        error = ET.SubElement(case, "error", message=_xml_text(check.message), type="GateUndecided")
        error.text = _xml_text(summary)
    elif check.status == SKIP:
        ET.SubElement(case, "skipped", message=_xml_text(check.message))
    out = ET.SubElement(case, "system-out")
    out.text = _xml_text(summary)


def _md(text: str) -> str:
    """Table-cell-safe Markdown: no pipes, no HTML, one line."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_summary(report: GateReport) -> str:
    icon = "✅" if report.passed else ("❌" if report.failed else "❔")
    lines = [f"## {icon} decoderbench {verdict(report)} · baseline `{_md(report.baseline)}`", "",
             f"Run `{_md(str(report.run_dir))}` · {counts(report)}.", "",
             "| result | gate | decoder | observed | limit | note |", "|---|---|---|---|---|---|"]
    for check in report.checks:
        lines.append(f"| {ICONS[check.status]} {check.status} | {_md(check.gate)} | {_md(check.name)} | "
                     f"{_md(check.observed)} | {_md(check.limit)} | {_md(check.message)} |")
    if report.mismatches:
        lines += ["", "### Environment differs from the baseline", ""]
        lines += [f"- {_md(str(m))}" for m in report.mismatches]
        lines += ["", ENVIRONMENT_ADVICE]
    if report.notes:
        lines += ["", "### Notes", ""] + [f"- {_md(note)}" for note in report.notes]
    return "\n".join(lines) + "\n"


def write_outputs(report: GateReport, junit: Path, markdown: Path, step_summary: Path | None) -> None:
    for path, text in ((junit, junit_xml(report)), (markdown, markdown_summary(report))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if step_summary is not None:
        with step_summary.open("a", encoding="utf-8") as handle:
            handle.write(markdown_summary(report) + "\n")
