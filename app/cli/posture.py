"""``accessbot posture``: check a device against the policy file's postures, and lint the policy file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from app.cli.attrs import purge_expired
from app.cli.common import console, err_console, exit_with, fail, opened_services, print_json
from app.posture.check import DeviceCheck, RuleCheck
from app.posture.check import check_device as run_check
from app.posture.expr import format_literal
from app.posture.lint import has_errors, lint
from app.posture.policy import Policy, PolicyError, load_policy, parse_policy, read_policy_text
from app.tailnet.service import resolve_device

group = typer.Typer(
    help="Postures of the tailnet policy file: check a device, lint the file, see what a profile unlocks.",
    no_args_is_help=True,
)

PASS, FAIL = "✓", "✗"
NO_POLICY = "no policy file: pass one (--policy FILE / FILE) or set policy_file in the config file"


def configured_policy_path() -> Path | None:
    """The config's ``policy_file``, relative paths taken from the config file's folder."""
    from app import bootstrap  # the whole service graph: loaded when a command runs, not for --help

    return bootstrap.configured_policy_path()


def _policy_path(given: Path | None) -> Path:
    path = given if given is not None else configured_policy_path()
    if path is None:
        fail(NO_POLICY, code=2)
    return path


def _mark(passed: bool) -> Text:
    return Text(PASS if passed else FAIL, style="green" if passed else "red")


def _line(*parts: str | Text) -> None:
    console.print(Text.assemble(*parts), highlight=False, soft_wrap=True)


def _print_postures(result: DeviceCheck) -> None:
    if not result.postures:
        _line("The policy defines no postures.")
        return
    _line("Postures:")
    for posture in result.postures:
        _line("  ", _mark(posture.passed), f" {posture.name}")
        for condition in posture.conditions:
            actual = (
                format_literal(condition.actual) if condition.is_set and condition.actual is not None else "not set"
            )
            _line(
                "      ",
                _mark(condition.passed),
                f" {condition.condition.text}  [actual: {actual}] {condition.reason}",
            )
        for error in posture.errors:
            _line("      ", _mark(False), f" error: {error}")


def _requirement(check: RuleCheck) -> str:
    if check.via == "open":
        return "open: no srcPosture and no defaultSrcPosture"
    names = ", ".join(check.required)
    where = "srcPosture" if check.via == "srcPosture" else "defaultSrcPosture"
    if check.met:
        return f"{where} {names}: met by {', '.join(check.passed)}"
    undefined = f" ({', '.join(check.undefined)} not defined)" if check.undefined else ""
    return f"{where} {names}: not met{undefined}"


def _print_rules(result: DeviceCheck) -> None:
    if not result.rules:
        _line("The policy has no grants or acls.")
        return
    _line(f"Rules (the device meets {len(result.met_rules)} of {len(result.rules)}):")
    for check in result.rules:
        rule = check.rule
        src = ", ".join(rule.src) or "-"
        dst = ", ".join(rule.dst) or "-"
        _line("  ", _mark(check.met), f" {rule.label} (line {rule.line}) {src} -> {dst}: {_requirement(check)}")


def _warn_problems(policy: Policy) -> None:
    for problem in policy.problems:
        err_console.print(
            f"{problem.level}: {policy.source}:{problem.line}:{problem.column}: {problem.message} (ignored)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if policy.problems:
        err_console.print("run accessbot posture lint for details", markup=False, highlight=False, soft_wrap=True)


@group.command("check")
def check_cmd(
    device_ref: Annotated[str, typer.Argument(metavar="DEVICE", help="Device id, nodeId, name or hostname")],
    policy_file: Annotated[
        Path | None, typer.Option("--policy", metavar="FILE", help="Policy file (default: the config's policy_file)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Check a device's live attributes against every posture and list the grants/acls it meets."""
    path = _policy_path(policy_file)
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        fail(str(exc), code=2)
    with opened_services() as rt:
        purge_expired(rt.tailnet)
        device = resolve_device(rt.tailnet, device_ref)
        attributes = rt.tailnet.get_attributes(device.id).attributes
    result = run_check(policy, attributes)
    _warn_problems(policy)
    if as_json:
        out: dict[str, Any] = {
            "device": {"id": device.id, "nodeId": device.node_id, "name": device.name, "hostname": device.hostname},
            "policy": str(path),
            **result.to_json(),
            "problems": [
                {"level": p.level, "line": p.line, "column": p.column, "message": p.message} for p in policy.problems
            ],
        }
        print_json(out)
        return
    _line(f"{device.name} ({device.id}) against {path}")
    _print_postures(result)
    _print_rules(result)


@group.command("lint")
def lint_cmd(
    policy_file: Annotated[
        Path | None, typer.Argument(metavar="[FILE]", help="Policy file (default: the config's policy_file)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as a JSON list")] = False,
) -> None:
    """Report errors and likely mistakes in the policy file's postures; exit 1 if there is any error."""
    path = _policy_path(policy_file)
    try:
        text = read_policy_text(path)
    except PolicyError as exc:
        fail(str(exc), code=2)
    findings = lint(parse_policy(text, str(path)))
    if as_json:
        print_json([f.to_json() for f in findings])
    else:
        for finding in findings:
            console.print(finding.format(str(path)), markup=False, highlight=False, soft_wrap=True)
        errors = sum(1 for f in findings if f.level == "error")
        warnings = len(findings) - errors
        summary = f"{path}: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        err_console.print(summary, markup=False, highlight=False, soft_wrap=True)
    exit_with(1 if has_errors(findings) else 0)


def register(cli: typer.Typer) -> None:
    """Add the ``posture`` group to the CLI (with ``posture unlock``: what a profile would open on a device)."""
    from app.cli import posture_unlock

    posture_unlock.register(group)
    cli.add_typer(group, name="posture")
