"""MkDocs hook: the configuration reference, generated from harl/config.py at build time.

`docs/configuration.md` holds the marker `<!-- harl-config-reference -->`; `on_page_markdown`
replaces it with one section per config schema: every field of every dataclass that
`harl.config` registers with Hydra (TrainConfig, LoggerConfig, the algorithm schemas of
`ALGO_SCHEMAS` and their base classes, the env schemas of `ENV_SCHEMAS`), each as a table row
with its command-line key, type, default, valid values and description; then one section per
Hydra launcher config of conf/hydra/launcher/ (`hydra.launcher.*` keys, from the YAML and its
comments).

Where the text comes from:

- description: the comment on the field's line in harl/config.py (continued on the next
  comment lines while its parentheses are open); a field that redeclares an inherited one
  without a comment of its own keeps the base class's. Comment lines directly above a field
  are a note on the fields that follow, shown as a row of their own above them, as in the
  source. A class docstring introduces its section.
- valid values: `harl.config_checks.RANGES` (numbers) and `CHOICES` (strings), the same
  tables `python -m harl.train` validates against; the `algo` and `env` groups list
  `ALGO_SCHEMAS` and `ENV_SCHEMAS`.
- defaults: the dataclass defaults (conf/algo/*.yaml and conf/env/*.yaml only extend the
  schemas; tests/test_docs.py checks that they change no value), and conf/config.yaml's
  default `algo` and `env`.

`collect()` and `collect_launchers()` return the sections as data and `render()` the Markdown;
tests/test_docs.py checks that every field of every schema, and every launcher key, has a
described row.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import inspect
import io
import re
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _importable() -> None:
    """Put the repository on sys.path: `mkdocs build` does not (and plugins may reset it
    between loading this hook and building the pages), and harl is not installed."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


MARKER = "<!-- harl-config-reference -->"
COLUMNS = ("key", "type", "default", "valid values", "description")


# ---------------------------------------------------------------- data
@dataclass
class Row:
    """One field: `key` as written on the command line (`seed`, `algo.lr`, `env.scenario`)."""

    name: str
    key: str
    type: str
    default: str
    valid: str
    doc: str  # its own description ('' if the source has none)
    note: str = ""  # the source note above the run of fields it is in


@dataclass
class Note:
    """Comment lines above a field in the source: a note on the fields that follow."""

    text: str


@dataclass
class Section:
    """One schema class and the fields its own body declares (inherited ones are in the
    sections of its bases, listed in `bases`)."""

    cls: type
    group: str  # "top level", "logger", "algo" or "env"
    prefix: str  # "", "logger.", "algo." or "env."
    doc: str
    bases: list[type]
    registered_as: list[str]  # `algo=<name>` / `env=<name>` values using this class
    items: list[Row | Note] = field(default_factory=list)

    @property
    def rows(self) -> list[Row]:
        return [item for item in self.items if isinstance(item, Row)]


# ---------------------------------------------------------------- source comments
@dataclass
class _FieldSource:
    trailing: str  # the comment on the field's line(s), with continuations
    note: str  # comment lines directly above the field ('' if none)
    # the note of the run of fields it belongs to ('' if none): a note applies to the fields
    # below it until a blank line or the next note
    group_note: str


def _comments(source: str) -> tuple[dict[int, str], set[int]]:
    """Comment text by line number, and the lines that hold nothing but a comment."""
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    return comments, {line for line in comments if line not in code_lines}


def _open_parens(text: str) -> int:
    return text.count("(") + text.count("[") - text.count(")") - text.count("]")


def _class_fields(source: str) -> dict[str, dict[str, _FieldSource]]:
    """{class name: {field name: its comments}} for every class of a module's source."""
    comments, comment_only = _comments(source)
    result: dict[str, dict[str, _FieldSource]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        fields: dict[str, _FieldSource] = {}
        absorbed: set[int] = set()  # comment lines continuing the previous field's comment
        group_note, previous_end = "", node.lineno
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                previous_end = stmt.end_lineno or stmt.lineno
                continue
            note_lines = []
            line = stmt.lineno - 1
            while line in comment_only and line not in absorbed:
                note_lines.insert(0, comments[line])
                line -= 1
            if any(n not in comments for n in range(previous_end + 1, line + 1)):
                group_note = ""  # a blank line (or other code) ends a note's run
            note = " ".join(note_lines)
            group_note = note or group_note
            trailing = " ".join(
                comments[n]
                for n in range(stmt.lineno, stmt.end_lineno + 1)
                if n in comments and n not in comment_only
            )
            line = stmt.end_lineno + 1
            while trailing and _open_parens(trailing) > 0 and line in comment_only:
                trailing = f"{trailing} {comments[line]}"
                absorbed.add(line)
                line += 1
            previous_end = line - 1
            fields[stmt.target.id] = _FieldSource(trailing, note, group_note)
        result[node.name] = fields
    return result


def _class_docstring(cls: type) -> str:
    """The docstring written in the class body (not the signature dataclasses generates when
    there is none), its paragraphs re-flowed."""
    doc = ast.get_docstring(ast.parse(inspect.getsource(cls)).body[0])
    if not doc:
        return ""
    return "\n\n".join(" ".join(par.split()) for par in doc.split("\n\n"))


# ---------------------------------------------------------------- values
def _type_name(annotation: Any) -> str:
    """A field's type as a user reads it: `int`, `list[int]`, `float or null`."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    match = re.fullmatch(r"Optional\[(.+)\]", text)
    if match:
        return f"{match.group(1)} or null"
    return text


def _value(value: Any) -> str:
    """A value as it is written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _default(f: dataclasses.Field) -> Any:
    """The field's default value, or dataclasses.MISSING / omegaconf's '???' when it has none."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# ---------------------------------------------------------------- collecting
def _schemas() -> list[tuple[type, str, str, list[str]]]:
    """(class, group, key prefix, names it is registered under), every class once, bases first."""
    from harl.config import ALGO_SCHEMAS, ENV_SCHEMAS, LoggerConfig, TrainConfig

    out: list[tuple[type, str, str, list[str]]] = [
        (TrainConfig, "top level", "", []),
        (LoggerConfig, "logger", "logger.", []),
    ]
    for group, table in (("algo", ALGO_SCHEMAS), ("env", ENV_SCHEMAS)):
        seen: list[type] = []
        for cls in table.values():
            for klass in reversed(cls.__mro__):
                if dataclasses.is_dataclass(klass) and klass not in seen:
                    seen.append(klass)
        for klass in seen:
            names = [name for name, c in table.items() if c is klass]
            out.append((klass, group, f"{group}.", names))
    return out


def _valid_values(key: str, cls: type, name: str) -> str:
    from harl.config import ALGO_SCHEMAS, ENV_SCHEMAS, TrainConfig
    from harl.config_checks import CHOICES, RANGES

    if cls is TrainConfig and name in ("algo", "env"):
        table = ALGO_SCHEMAS if name == "algo" else ENV_SCHEMAS
        return "one of " + ", ".join(f"`{n}`" for n in table)
    if key in RANGES:
        return RANGES[key].describe()
    if key in CHOICES:
        return "one of " + ", ".join(f"`{c}`" for c in CHOICES[key])
    return ""


def collect() -> list[Section]:
    """Every schema section with its rows, in the order the page shows them."""
    _importable()
    from omegaconf import MISSING

    from harl.config import TrainConfig

    schemas = _schemas()
    sources: dict[str, dict[str, _FieldSource]] = {}  # every class of the schemas' modules
    for module in dict.fromkeys(sys.modules[cls.__module__] for cls, *_ in schemas):
        sources.update(_class_fields(inspect.getsource(module)))
    composed_defaults = _top_level_group_defaults()
    sections = []
    for cls, group, prefix, names in schemas:
        own = sources[cls.__name__]
        bases = [b for b in cls.__mro__[1:] if dataclasses.is_dataclass(b)]
        section = Section(cls, group, prefix, _class_docstring(cls), bases[:1], names)
        hints = {f.name: f for f in dataclasses.fields(cls)}
        for name, src in own.items():
            if name not in hints:  # a ClassVar (e.g. a schema's UNUSED), not a config key
                continue
            f = hints[name]
            if src.note:
                section.items.append(Note(src.note))
            doc = src.trailing or _inherited_doc(sources, bases, name)
            if name == "name" and group in ("algo", "env") and not doc:
                doc = f"which {'algorithm' if group == 'algo' else 'env'} this is: `{group}=<name>` picks it"
            default = _default(f)
            if default is dataclasses.MISSING or default == MISSING:
                shown = (
                    f"`{composed_defaults[name]}` (conf/config.yaml)"
                    if name in composed_defaults
                    else "set by each subclass"
                    if name == "name"
                    else "required"
                )
            elif dataclasses.is_dataclass(default):
                shown = f"the `{name}.*` defaults"
            else:
                shown = f"`{_value(default)}`"
                overridden = _overridden_default(bases, name, default)
                if overridden is not None and name != "name":
                    doc = (
                        f"{doc} (overrides the `{overridden[0].__name__}` default, "
                        f"`{_value(overridden[1])}`)".lstrip()
                    )
            type_name = "group" if cls is TrainConfig and name in composed_defaults else _type_name(f.type)
            section.items.append(
                Row(
                    name,
                    prefix + name,
                    type_name,
                    shown,
                    _valid_values(prefix + name, cls, name),
                    doc,
                    src.group_note,
                )
            )
        sections.append(section)
    return sections


def _inherited_doc(sources: dict, bases: list[type], name: str) -> str:
    for base in bases:
        src = sources.get(base.__name__, {}).get(name)
        if src is not None and src.trailing:
            return src.trailing
    return ""


def _overridden_default(bases: list[type], name: str, default: Any) -> tuple[type, Any] | None:
    """(base class, its default) when the nearest base declaring `name` has another default."""
    from omegaconf import MISSING

    for base in bases:
        if name in vars(base).get("__annotations__", {}):
            base_default = _default(base.__dataclass_fields__[name])
            if base_default is dataclasses.MISSING or base_default == MISSING or base_default == default:
                return None
            return base, base_default
    return None


def _top_level_group_defaults() -> dict[str, str]:
    """conf/config.yaml's default choice of each group (`algo: happo`, `env: mamujoco`)."""
    import yaml

    from harl.config import CONF_DIR

    defaults = yaml.safe_load((Path(CONF_DIR) / "config.yaml").read_text())["defaults"]
    return {k: v for entry in defaults if isinstance(entry, dict) for k, v in entry.items()}


# ---------------------------------------------------------------- launchers
@dataclass
class LauncherSection:
    """One of harl's Hydra launcher configs (conf/hydra/launcher/<name>.yaml): its own keys,
    with the comments the file gives them."""

    name: str  # hydra/launcher=<name>
    extends: list[str]  # the launcher plugin's configs it builds on
    doc: str  # the file's first comment line (after `# @package`)
    items: list[Row | Note] = field(default_factory=list)

    @property
    def rows(self) -> list[Row]:
        return [item for item in self.items if isinstance(item, Row)]


# `key: value  # comment` (a line of a launcher YAML; value empty for a mapping whose keys follow)
_YAML_KEY = re.compile(
    r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*):(?P<value>[^#]*?)\s*"
    r"(?:#\s*(?P<comment>.*))?$"
)


def collect_launchers() -> list[LauncherSection]:
    """Every conf/hydra/launcher/*.yaml: a row per key (`hydra.launcher.<key>`, nested keys
    dotted), its value from the YAML, its comment; comment lines above a key become a note."""
    import yaml

    _importable()
    from harl.config import CONF_DIR

    sections = []
    for path in sorted((Path(CONF_DIR) / "hydra" / "launcher").glob("*.yaml")):
        text = path.read_text()
        data = yaml.safe_load(text) or {}
        header = [
            line.lstrip("#").strip()
            for line in text.splitlines()
            if line.startswith("#") and not line.startswith("# @package")
        ]
        section = LauncherSection(
            path.stem, [str(d) for d in data.get("defaults", [])], header[0] if header else ""
        )
        note: list[str] = []
        parents: list[str] = []
        in_header = True
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped:
                note, in_header = [], False
                continue
            if stripped.startswith("#"):
                if not in_header:
                    note.append(stripped.lstrip("#").strip())
                continue
            in_header = False
            match = _YAML_KEY.match(line)
            if match is None:  # a list item (the defaults list)
                continue
            depth = len(match["indent"]) // 2
            parents = parents[:depth]
            if match["key"] == "defaults" and depth == 0:
                parents.append("defaults")
                continue
            if not match["value"]:  # a mapping: its keys follow, indented
                parents.append(match["key"])
                continue
            if parents and parents[0] == "defaults":
                continue
            dotted = ".".join([*parents, match["key"]])
            value = data
            for part in dotted.split("."):
                value = value[part]
            if note:
                section.items.append(Note(" ".join(note)))
                note = []
            section.items.append(
                Row(
                    match["key"],
                    f"hydra.launcher.{dotted}",
                    "null" if value is None else type(value).__name__,
                    f"`{_value(value)}`",
                    "",
                    match["comment"] or "",
                )
            )
        sections.append(section)
    return sections


def _render_launcher(section: LauncherSection) -> list[str]:
    lines = [f"### `hydra/launcher={section.name}` {{#launcher-{section.name}}}", ""]
    if section.doc:
        lines += [section.doc, ""]
    if section.extends:
        lines += [
            "The file is `conf/hydra/launcher/"
            + section.name
            + ".yaml`; it extends "
            + ", ".join(f"`{e}`" for e in section.extends)
            + ", the launcher plugin's own config, whose other options are overrides too "
            "(`hydra.launcher.<option>=...`).",
            "",
        ]
    return lines + _table(section.items)


# ---------------------------------------------------------------- rendering
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    """Plain text with `code` spans, as HTML (the tables are HTML for their note rows)."""
    parts = _CODE.split(text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def anchor(cls: type) -> str:
    return cls.__name__.lower()


def _render_section(section: Section, derived: list[type]) -> list[str]:
    cls = section.cls
    lines = [f"### `{cls.__name__}` {{#{anchor(cls)}}}", ""]
    if derived:
        lines.append("Base of " + ", ".join(f"[`{d.__name__}`](#{anchor(d)})" for d in derived) + ".")
    if section.registered_as:
        lines.append(
            "Selected by " + ", ".join(f"`{section.group}={n}`" for n in section.registered_as) + "."
        )
    if section.bases:
        base = section.bases[0]
        lines.append(
            f"Extends [`{base.__name__}`](#{anchor(base)}): it has all of its keys, and "
            "the ones below are its own or change a default."
        )
    if section.doc:
        lines += ["", section.doc]
    return lines + [""] + _table(section.items)


def _table(items: list[Row | Note]) -> list[str]:
    """An HTML table (for the note rows spanning every column) of rows and notes, in order."""
    lines = [
        "<table>",
        "<thead><tr>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr></thead>",
        "<tbody>",
    ]
    for item in items:
        if isinstance(item, Note):
            lines.append(f'<tr><td colspan="{len(COLUMNS)}"><em>{_inline(item.text)}</em></td></tr>')
        else:
            cells = [
                f"<code>{html.escape(item.key)}</code>",
                html.escape(item.type),
                _inline(item.default),
                _inline(item.valid),
                _inline(item.doc),
            ]
            if item.type == "LoggerConfig":
                cells[1] = '<a href="#loggerconfig">LoggerConfig</a>'
            lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return lines + ["</tbody>", "</table>", ""]


GROUP_TITLES = {
    "top level": "Top-level keys",
    "logger": "Logging (`logger.*`)",
    "algo": "Algorithms (`algo.*`)",
    "env": "Environments (`env.*`)",
}


def render(sections: list[Section] | None = None, launchers: list[LauncherSection] | None = None) -> str:
    """The Markdown that replaces MARKER: a heading per group, a section per schema class, then
    the launcher configs."""
    sections = collect() if sections is None else sections
    launchers = collect_launchers() if launchers is None else launchers
    lines: list[str] = []
    group = None
    for section in sections:
        if section.group != group:
            group = section.group
            lines += [f"## {GROUP_TITLES[group]}", ""]
        derived = [s.cls for s in sections if section.cls in s.bases]
        lines += _render_section(section, derived)
    lines += [
        "## Launchers (`hydra.launcher.*`)",
        "",
        "Sweeps (`-m`) run through Hydra's launcher; `hydra/launcher=<name>` picks one. The "
        "joblib launcher (`hydra/launcher=joblib`) is the plugin's own config "
        "(e.g. `hydra.launcher.n_jobs`); harl's launcher configs are below. "
        "[Sweeps, stopping and resuming](runs.md#sweeps-and-launchers) and [SLURM](slurm.md) "
        "describe how they are used.",
        "",
    ]
    for launcher in launchers:
        lines += _render_launcher(launcher)
    return "\n".join(lines)


# ---------------------------------------------------------------- MkDocs hook
def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())


__all__ = [
    "MARKER",
    "LauncherSection",
    "Note",
    "Row",
    "Section",
    "collect",
    "collect_launchers",
    "on_page_markdown",
    "render",
]
