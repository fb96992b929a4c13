"""YAML with line numbers: a safe loader whose mappings and lists remember the line of each key and item,
so config and inventory errors can say where they are."""
from __future__ import annotations

from typing import Any

from lbgen import grammar
from lbgen.errors import ConfigError

__all__ = ["LineDict", "LineList", "load_yaml"]


class LineDict(dict):  # type: ignore[type-arg]  # holds any YAML mapping
    """A YAML mapping that remembers the line of each key (1-based)."""

    lines: dict[Any, int]
    line: int = 0


class LineList(list):  # type: ignore[type-arg]  # holds any YAML sequence
    lines: list[int]
    line: int = 0


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely; mappings and lists remember their lines for error messages."""
    import yaml

    fast = getattr(yaml, "CSafeLoader", None)  # libyaml's parser: several times faster on 1,000 services
    if fast is not None:
        try:
            return _load(text, source, fast)
        except ConfigError:
            pass  # read again with PyYAML's own parser, for its clearer messages (only when invalid)
    return _load(text, source, yaml.SafeLoader)


def _load(text: str, source: str, base: Any) -> Any:
    import yaml

    class Loader(base):  # type: ignore[misc]  # PyYAML's safe constructors over either parser
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            # PyYAML's constructors raise plain ValueError, KeyError, ... for values their resolver
            # matched or a tag forced (`2001-13-45`, `!!int abc`, `!!bool x`, `!!map [1]`).
            try:
                return super().construct_object(node, deep)
            except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError):
                what = f" {grammar._show(node.value)}" if isinstance(node.value, str) else ""
                raise yaml.constructor.ConstructorError(
                    None, None, f"invalid {node.tag.rsplit(':', 1)[-1]} value{what}", node.start_mark) from None

    def mapping(loader: Loader, node: Any) -> LineDict:
        result = LineDict()
        result.lines = {}
        result.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: mapping keys must be strings")
            if key in result:
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            result[key] = loader.construct_object(value_node, deep=True)
            result.lines[key] = key_node.start_mark.line + 1
        return result

    def sequence(loader: Loader, node: Any) -> LineList:
        result = LineList(loader.construct_object(child, deep=True) for child in node.value)
        result.lines = [child.start_mark.line + 1 for child in node.value]
        result.line = node.start_mark.line + 1
        return result

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{where}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:  # ReaderError (a NUL, a control character): its text has a second line
        position = getattr(e, "position", None)
        where = f":{text[:position].count(chr(10)) + 1}" if isinstance(position, int) else ""
        raise ConfigError(f"{source}{where}: invalid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
