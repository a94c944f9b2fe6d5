"""The parts of a tailnet policy file that posture checks need, with the line of everything.

Read: ``postures`` (``posture:name`` → list of condition strings), ``defaultSrcPosture``, and of each rule in
``grants`` and ``acls`` its position, ``src``, ``dst`` (for acls the legacy ``users``/``ports`` when ``src``/
``dst`` are absent), ``srcPosture`` and, of grants, ``ip`` and the capability names of ``app`` (what "what will
this unlock" shows). Everything else — ``groups``, ``hosts``, ``tagOwners``, ``autoApprovers``, ``nodeAttrs``,
``ssh``, ``tests``, ``sshTests``, ``ipsets``, network settings and the other fields of rules (``via``,
``action``, ``proto``) — is ignored.

Nothing in the file aborts parsing except malformed HuJSON: a condition that does not parse is kept as an
entry with its error (line and column within the file), and a section of the wrong shape is recorded as a
``Problem``, so lint and check can report everything at once. An empty ``srcPosture`` counts as none (the
``defaultSrcPosture`` applies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal as TypingLiteral

from app.posture.expr import parse_condition
from app.posture.hujson import HuJSONError, Node, parse
from app.posture.model import Condition, ConditionSyntaxError

POSTURE_NAME = re.compile(r"posture:[A-Za-z0-9_][A-Za-z0-9_.\-]*")
Level = TypingLiteral["error", "warning"]
RuleKind = TypingLiteral["grant", "acl"]


class PolicyError(Exception):
    """The policy file cannot be read or is not valid HuJSON; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with the file's structure (not with a condition): where and what."""

    level: Level
    line: int
    column: int
    message: str


@dataclass(frozen=True, slots=True)
class ConditionEntry:
    """One condition string of a posture: parsed, or with the reason it is not.

    ``line``/``column`` are where the string starts (its opening quote). When ``condition`` is ``None``,
    ``error`` says why and ``error_line``/``error_column`` point into the file.
    """

    text: str
    line: int
    column: int
    condition: Condition | None
    error: str | None = None
    error_line: int = 0
    error_column: int = 0
    syntax: ConditionSyntaxError | None = None
    node: Node | None = field(default=None, compare=False, repr=False)

    def position(self, column: int) -> tuple[int, int]:
        """The file (line, column) of ``column`` (1-based) of the condition's text."""
        if self.node is None or self.node.kind != "string":
            return self.line, self.column
        return self.node.position_of(column - 1)


@dataclass(frozen=True, slots=True)
class PostureDef:
    """A posture of the ``postures`` section. ``malformed`` when its value is not a list of conditions."""

    name: str
    line: int
    column: int
    conditions: tuple[ConditionEntry, ...] = ()
    malformed: bool = False

    @property
    def errors(self) -> tuple[ConditionEntry, ...]:
        """The conditions that could not be parsed."""
        return tuple(c for c in self.conditions if c.condition is None)


@dataclass(frozen=True, slots=True)
class PostureRef:
    """A posture named in a ``srcPosture`` or ``defaultSrcPosture`` list, and where."""

    name: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Rule:
    """A grant or acl rule: ``src_posture`` is ``None`` when it has none (then ``defaultSrcPosture`` applies)."""

    kind: RuleKind
    index: int
    line: int
    column: int
    src: tuple[str, ...]
    dst: tuple[str, ...]
    src_posture: tuple[PostureRef, ...] | None = None
    ip: tuple[str, ...] = ()
    """A grant's ``ip`` (``tcp:443``, ``*``); empty for acls, whose ports are in ``dst``."""
    app: tuple[str, ...] = ()
    """The capability names of a grant's ``app`` (``tailscale.com/cap/tsidp``)."""

    @property
    def label(self) -> str:
        """``grants[0]`` / ``acls[2]``, as the rule is addressed in the file."""
        return f"{self.kind}s[{self.index}]"


@dataclass(frozen=True, slots=True)
class Policy:
    """The posture-relevant content of one policy file."""

    source: str
    postures: dict[str, PostureDef] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    default_src_posture: tuple[PostureRef, ...] | None = None
    problems: tuple[Problem, ...] = ()
    syntax_error: HuJSONError | None = None

    @property
    def grants(self) -> tuple[Rule, ...]:
        """The ``grants`` rules in file order."""
        return tuple(r for r in self.rules if r.kind == "grant")

    @property
    def acls(self) -> tuple[Rule, ...]:
        """The ``acls`` rules in file order."""
        return tuple(r for r in self.rules if r.kind == "acl")

    def references(self) -> list[PostureRef]:
        """Every posture named by a rule or by ``defaultSrcPosture``, in file order."""
        refs = [ref for rule in self.rules for ref in rule.src_posture or ()]
        refs.extend(self.default_src_posture or ())
        return sorted(refs, key=lambda r: (r.line, r.column))


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, node: Node | tuple[int, int], message: str, level: Level = "error") -> None:
        line, column = (node.line, node.column) if isinstance(node, Node) else node
        self.problems.append(Problem(level, line, column, message))

    def strings(self, node: Node, what: str) -> tuple[str, ...]:
        """The string items of an array node (others are reported)."""
        if node.kind != "array":
            self.problem(node, f"{what} must be a list of strings, not {_kind(node)}")
            return ()
        out: list[str] = []
        for item in node.items:
            if item.kind == "string":
                out.append(item.value)
            else:
                self.problem(item, f"{what} must hold strings, not {_kind(item)}")
        return tuple(out)

    def posture_refs(self, node: Node, what: str) -> tuple[PostureRef, ...]:
        if node.kind != "array":
            self.problem(node, f"{what} must be a list of posture names, not {_kind(node)}")
            return ()
        refs: list[PostureRef] = []
        for item in node.items:
            if item.kind != "string":
                self.problem(item, f"{what} must hold posture names, not {_kind(item)}")
            elif not POSTURE_NAME.fullmatch(item.value):
                self.problem(item, f"{what}: {item.value!r} is not a posture name (posture:name)")
            else:
                refs.append(PostureRef(item.value, item.line, item.column))
        return tuple(refs)

    def postures(self, section: Node) -> dict[str, PostureDef]:
        if section.kind != "object":
            self.problem(section, f"postures must be an object of posture names, not {_kind(section)}")
            return {}
        out: dict[str, PostureDef] = {}
        for name, node in section.members.items():
            where = section.keys[name]
            if not POSTURE_NAME.fullmatch(name):
                self.problem((where.line, where.column), f"posture name {name!r} must look like posture:name")
            if node.kind != "array":
                self.problem(node, f"{name} must be a list of condition strings, not {_kind(node)}")
                out[name] = PostureDef(name, where.line, where.column, malformed=True)
                continue
            out[name] = PostureDef(name, where.line, where.column, tuple(self.condition(item) for item in node.items))
        return out

    def condition(self, node: Node) -> ConditionEntry:
        if node.kind != "string":
            message = f"a condition must be a string, not {_kind(node)}"
            return ConditionEntry(
                str(node.value), node.line, node.column, None, message, node.line, node.column, node=node
            )
        text = node.value
        try:
            condition = parse_condition(text)
        except ConditionSyntaxError as exc:
            line, column = node.position_of(exc.column - 1)
            message = f"expected {exc.expected}, found {exc.found}"
            return ConditionEntry(text, node.line, node.column, None, message, line, column, exc, node)
        return ConditionEntry(text, node.line, node.column, condition, node=node)

    def rules(self, section: Node, kind: RuleKind) -> list[Rule]:
        name = f"{kind}s"
        if section.kind != "array":
            self.problem(section, f"{name} must be a list of rules, not {_kind(section)}")
            return []
        out: list[Rule] = []
        for index, node in enumerate(section.items):
            if node.kind != "object":
                self.problem(node, f"{name}[{index}] must be an object, not {_kind(node)}")
                continue
            src_node = node.get("src") or (node.get("users") if kind == "acl" else None)
            dst_node = node.get("dst") or (node.get("ports") if kind == "acl" else None)
            src = self.strings(src_node, f"{name}[{index}].src") if src_node else ()
            dst = self.strings(dst_node, f"{name}[{index}].dst") if dst_node else ()
            posture_node = node.get("srcPosture")
            refs = self.posture_refs(posture_node, f"{name}[{index}].srcPosture") if posture_node else None
            ip_node = node.get("ip") if kind == "grant" else None
            ip = self.strings(ip_node, f"{name}[{index}].ip") if ip_node else ()
            app_node = node.get("app") if kind == "grant" else None
            app = tuple(app_node.members) if app_node is not None and app_node.kind == "object" else ()
            out.append(Rule(kind, index, node.line, node.column, src, dst, refs or None, ip, app))
        return out

    def duplicates(self, root: Node) -> None:
        for node in root.walk():
            for key in node.duplicates:
                self.problem((key.line, key.column), f"duplicate key {key.key!r}: only the last one counts", "warning")


def _kind(node: Node) -> str:
    return {"object": "an object", "array": "a list", "string": "a string", "number": "a number"}.get(
        node.kind, "null" if node.kind == "null" else "a boolean"
    )


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """The posture-relevant content of a policy file's text; never raises for bad content.

    Malformed HuJSON gives a ``Policy`` with ``syntax_error`` set (and that error as its only problem).
    """
    reader = _Reader()
    try:
        root = parse(text)
    except HuJSONError as exc:
        return Policy(source, problems=(Problem("error", exc.line, exc.column, exc.message),), syntax_error=exc)
    if root.kind != "object":
        reader.problem(root, f"the policy file must be an object, not {_kind(root)}")
        return Policy(source, problems=tuple(reader.problems))
    reader.duplicates(root)
    postures = reader.postures(root.members["postures"]) if "postures" in root.members else {}
    rules: list[Rule] = []
    kinds: tuple[tuple[RuleKind, str], ...] = (("grant", "grants"), ("acl", "acls"))
    for kind, key in kinds:
        if key in root.members:
            rules.extend(reader.rules(root.members[key], kind))
    default_node = root.get("defaultSrcPosture")
    default = reader.posture_refs(default_node, "defaultSrcPosture") if default_node else None
    return Policy(source, postures, tuple(rules), default or None, tuple(reader.problems))


def load_policy(path: Path | str) -> Policy:
    """Read and parse a policy file; ``PolicyError`` if it cannot be read or is not valid HuJSON."""
    text = read_policy_text(path)
    policy = parse_policy(text, str(path))
    if policy.syntax_error is not None:
        raise PolicyError(f"{path}: {policy.syntax_error}")
    return policy


def read_policy_text(path: Path | str) -> str:
    """The text of a policy file; ``PolicyError`` naming the file if it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: the policy file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
