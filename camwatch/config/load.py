"""From a YAML file to a validated Config: the steps run in order, problems gathered per step.

Also here: the checks that span sections (and the notify URLs, apprise_urls.py), and the API
key, which may come from outside the file. pydantic's errors become `field.path: message` lines
in messages.py.

The file may be hostile or broken (the daemon reloads it on SIGHUP, check-config runs in CI on
files from pull requests): whatever it holds, loading ends in a Config or a ConfigError, never in
another exception, and never reads or builds more than a bounded amount. See `_ConfigLoader`.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from camwatch.config.apprise_urls import apprise_url_problems
from camwatch.config.environment import interpolate, join_path
from camwatch.config.messages import validation_problems
from camwatch.config.models import CaptionConfig, Config, ProviderConfig
from camwatch.config.values import shown
from camwatch.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/camwatch/config.yaml"

# Bounds on what a file may make us do. A real configuration is a few kilobytes, a few hundred
# values, six levels deep; these are far above that and far below a problem.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 32  # PyYAML composes recursively: [[[[... 400 deep is a RecursionError
MAX_NODES = 100_000
MAX_PROBLEMS = 50  # a list of 100 000 bad cameras is one mistake, not 100 000 lines

MIN_SECRET_LENGTH = 16
_PLACEHOLDER_SECRET = "change-me"  # what config.example.yaml once had as its fallback


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader (no Python objects), refusing aliases and bounding depth and size.

    Aliases are refused outright rather than counted. A "billion laughs" document of 650 bytes is
    a hundred nodes that PyYAML builds as shared Python objects in no time; the blow-up (to
    gigabytes) comes later, when interpolation and validation walk the tree as if it were
    written out. Bounding that means counting the expanded size of every alias, which is
    exactly the walk to avoid. A camwatch configuration has no use for aliases that writing
    the value out would not serve, and the error points at the alias, with line and column.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                f"YAML aliases (*{event.anchor}) are not supported; write the value out",
                event.start_mark,
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_NODES} values", event.start_mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # The scalar constructors raise what Python raises (`!!timestamp x` an AttributeError,
        # `2020-13-45` a ValueError, an int of 5000 digits a ValueError): turned into a YAML
        # error at that node, so that it is reported with its line and column.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError, KeyError) as exc:
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            value = f": {shown(node.value)}" if isinstance(node, yaml.ScalarNode) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid value for {tag}{value}", node.start_mark
            ) from exc


def _line_column(text: str, index: int) -> str:
    """Return `line:column` (both from 1) of the character at `index` in `text`."""
    line = text.count("\n", 0, index) + 1
    return f"{line}:{index - (text.rfind(chr(10), 0, index) + 1) + 1}"


def _read_text(path: str | os.PathLike[str]) -> str:
    """Return the file's text. Raise ConfigError if it cannot be read, is larger than
    MAX_CONFIG_BYTES, or is not UTF-8."""
    try:
        with open(path, "rb") as file:
            # Read one byte more than allowed, not the whole file: `-c /dev/zero` ends here too.
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except ValueError as exc:  # a NUL in the path
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than 1 MiB; this is not a camwatch configuration"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(
            [
                f"{path}:{line}:{column}: not UTF-8 text (byte 0x{data[exc.start]:02x});"
                " save the file as UTF-8"
            ]
        ) from None


def parse_yaml(text: str, name: str | os.PathLike[str]) -> Any:
    """Given the text of a YAML file and its name, return the parsed tree (plain dicts, lists
    and scalars). Raise ConfigError naming `name:line:column` for anything else."""
    loader: _ConfigLoader | None = None
    try:
        loader = _ConfigLoader(text)  # its reader checks every character here
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else str(name)
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.reader.ReaderError as exc:
        # Its str() is two lines and names the position by character index.
        where = f"{name}:{_line_column(text, exc.position)}"
        char = exc.character if isinstance(exc.character, int) else 0
        raise ConfigError([f"{where}: invalid YAML: {exc.reason} (#x{char:04x})"]) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError([f"{name}: invalid YAML: {first}"]) from None
    finally:
        if loader is not None:
            loader.dispose()


def read_config_tree(path: str | os.PathLike[str]) -> Any:
    """Given a YAML file, return its parsed tree, before interpolation and validation. Raise
    ConfigError as load_config does."""
    return parse_yaml(_read_text(path), path)


def _cross_checks(config: Config) -> list[str]:
    """Return the problems that only show across sections: names, references, paths."""
    problems: list[str] = []
    for section, items in (
        ("cameras", config.cameras),
        ("rules", config.rules),
        ("webhooks", config.webhooks),
        ("notify", config.notify),
    ):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                problems.append(f"{section}[{i}].name: duplicate name {item.name!r}")
            seen.add(item.name)
    cameras = {c.name for c in config.cameras}
    webhooks = {w.name for w in config.webhooks}
    notifies = {n.name for n in config.notify}
    for i, rule in enumerate(config.rules):
        for key, known, what in (
            ("cameras", cameras, "camera"),
            ("webhooks", webhooks, "webhook"),
            ("notify", notifies, "notify target"),
        ):
            for j, name in enumerate(getattr(rule, key) or []):
                if name not in known:
                    problems.append(f"rules[{i}].{key}[{j}]: unknown {what} {name!r}")
    for i, cam in enumerate(config.cameras):
        for j, other in enumerate(config.cameras[:i]):
            if cam.path == other.path or other.path in cam.path.parents:
                problems.append(
                    f"cameras[{i}].path: inside cameras[{j}].path ({str(other.path)!r});"
                    " a file would belong to two cameras"
                )
            elif cam.path in other.path.parents:
                problems.append(
                    f"cameras[{j}].path: inside cameras[{i}].path ({str(cam.path)!r});"
                    " a file would belong to two cameras"
                )
    if config.after == "move":
        if config.archive_dir is None:
            problems.append("archive_dir: required when after is 'move'")
        else:
            archive = Path(os.path.realpath(config.archive_dir))
            for i, cam in enumerate(config.cameras):
                if archive == cam.path or cam.path in archive.parents:
                    problems.append(
                        f"archive_dir: inside cameras[{i}].path; moved files would be seen again"
                    )
    return problems


def _secret_problems(config: Config) -> list[str]:
    """Return the webhook secrets that would sign nothing, or nothing worth signing with."""
    problems: list[str] = []
    for i, hook in enumerate(config.webhooks):
        if hook.secret is None:
            continue  # no `secret` key (or `secret: null`): unsigned, and says so
        secret = hook.secret.get_secret_value()
        field = f"webhooks[{i}].secret"
        if not secret.strip():
            # `${UNSET:-}` gives "": the sender then signs nothing, while the file looks signed.
            problems.append(
                f"{field}: empty; it would sign nothing (remove the key for unsigned webhooks)"
            )
        elif secret.strip().lower() == _PLACEHOLDER_SECRET:
            problems.append(
                f"{field}: {_PLACEHOLDER_SECRET!r} is the example's placeholder; set a long"
                " random secret (e.g. openssl rand -hex 32)"
            )
        elif _key_length(secret) < MIN_SECRET_LENGTH:
            # Anyone who sees one signed alert (a receiver's log, a proxy) can try short
            # secrets offline against its signature until one matches, then forge alerts.
            problems.append(
                f"{field}: shorter than {MIN_SECRET_LENGTH} characters; a short secret can be"
                " guessed from one signed alert (e.g. openssl rand -hex 32)"
            )
    return problems


def _key_length(secret: str) -> int:
    """Return the length of the key a secret signs with: a Standard Webhooks `whsec_` secret
    signs with its base64-decoded bytes (as senders/webhook.py does), any other with itself."""
    if secret.startswith("whsec_"):
        try:
            return len(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
        except (binascii.Error, ValueError):
            pass
    return len(secret)


def _tree_problems(data: Any) -> list[str]:
    """Return what no setting can hold, found in one walk of a parsed tree: text that is not
    valid Unicode (a lone surrogate, from a YAML escape such as "\\ud800": it cannot be
    printed, logged or used as a path), nesting deeper than MAX_DEPTH, more than MAX_NODES
    values. The walk is iterative, so that a tree built in Python (parse_config's callers)
    cannot exhaust the stack either."""
    problems: list[str] = []
    stack: list[tuple[str, Any, int]] = [("", data, 1)]
    nodes = 0
    while stack:
        path, value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return [*problems, f"<root>: more than {MAX_NODES} values"]
        if depth > MAX_DEPTH:  # counted as the YAML loader counts: the root is level 1
            return [*problems, f"{path}: nested deeper than {MAX_DEPTH} levels"]
        if isinstance(value, str) and not _is_unicode(value):
            problems.append(f"{path or '<root>'}: not valid Unicode text (a lone surrogate)")
        elif isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            children = []
            for key, child in items:
                if isinstance(value, list):
                    child_path = f"{path}[{key}]"
                else:
                    # join_path quotes a key that is not printable: a surrogate shows escaped.
                    child_path = join_path(path, str(key))
                    if isinstance(key, str) and not _is_unicode(key):
                        problems.append(f"{child_path}: not valid Unicode text (a lone surrogate)")
                children.append((child_path, child, depth + 1))
            stack.extend(reversed(children))  # popped in document order
    return problems


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bounded(problems: list[str]) -> list[str]:
    """Return at most MAX_PROBLEMS problems, and a line saying how many more there were."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    hidden = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], f"<root>: {hidden} more problem(s) not shown"]


def parse_config(data: Any, environ: dict[str, str] | os._Environ[str] | None = None) -> Config:
    """Given a parsed YAML tree, return the validated Config. Raise ConfigError otherwise."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["<root>: expected a mapping of settings"])
    problems = _tree_problems(data)
    if problems:
        raise ConfigError(_bounded(problems))
    try:
        data = interpolate(data, os.environ if environ is None else environ)
    except ConfigError as exc:
        raise ConfigError(_bounded(exc.problems)) from None
    # Interpolation may have made what the raw tree did not hold (a variable's value).
    problems = _tree_problems(data)
    if problems:
        raise ConfigError(_bounded(problems))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_bounded(validation_problems(exc, Config))) from None
    problems = _cross_checks(config) + _secret_problems(config) + apprise_url_problems(config)
    if problems:
        raise ConfigError(_bounded(problems))
    return config


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Config:
    """Given a YAML file, return the validated Config. Raise ConfigError, naming the file and
    line:column for a problem in the file as a file (not UTF-8, invalid YAML, an alias, too
    large or too deep) and the field path for every other problem."""
    return parse_config(read_config_tree(path), environ)


def resolve_api_key(
    caption: CaptionConfig | ProviderConfig, environ: Any = None, field: str = "caption"
) -> str:
    """Return the API key from `api_key`, `api_key_file`, or `$CREDENTIALS_DIRECTORY/api_key`
    (systemd's LoadCredential=). Raise ConfigError if there is none. `caption` is the caption
    section or a provider block of it (`caption.fallback`, named by `field` in messages)."""
    environ = os.environ if environ is None else environ
    if caption.api_key is not None and caption.api_key.get_secret_value().strip():
        return caption.api_key.get_secret_value().strip()
    candidates: list[tuple[str, Path]] = []
    if caption.api_key_file is not None:
        candidates.append((f"{field}.api_key_file", caption.api_key_file))
    elif environ.get("CREDENTIALS_DIRECTORY"):
        candidates.append(
            (f"{field}.api_key_file", Path(environ["CREDENTIALS_DIRECTORY"]) / "api_key")
        )
    for where, path in candidates:
        try:
            with path.open("rb") as file:
                data = file.read(MAX_CONFIG_BYTES + 1)  # a key is short; /dev/zero is not
            key = data.decode("utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"{where}: cannot read {str(path)!r}: {exc.strerror}"]) from None
        except UnicodeDecodeError:
            raise ConfigError([f"{where}: {str(path)!r} is not UTF-8 text"]) from None
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError([f"{where}: {str(path)!r} is larger than 1 MiB; not a key"])
        if not key:
            raise ConfigError([f"{where}: {str(path)!r} is empty"])
        return key
    raise ConfigError(
        [
            "caption.api_key: no API key: export CAMWATCH_API_KEY (read by"
            " `api_key: ${CAMWATCH_API_KEY:-}`), or set caption.api_key_file to a file holding"
            " it, or under systemd give the credential api_key"
            " (LoadCredential=api_key:/etc/camwatch/api_key; see docs/systemd.md)"
        ]
    )
