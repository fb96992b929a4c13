"""The grammar of every untrusted value (labels, inventory, lbgen.yaml) that may reach a rendered config.

Each check returns the clean value or raises ValueError with a short reason; callers add the context
(container, label, key path). Nothing reaches a template except through one of these.
"""
from __future__ import annotations

import ipaddress
import re

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
CONTAINER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
CONTAINER_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_RE = re.compile(rf"(?:\*\.)?{HOST_LABEL}(?:\.{HOST_LABEL})*")
PATH_RE = re.compile(r"/[A-Za-z0-9._~/%?=&+-]{0,255}")
ROUTE_PATH_RE = re.compile(r"/|(?:/[A-Za-z0-9._~-]{1,255}){1,32}")
# Keywords that open a HAProxy section: a snippet line starting with one would end the backend it is in.
HAPROXY_SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist",
                    "mailers", "program", "http-errors", "ring", "cache", "crt-store", "traces")
LABEL_PREFIX_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# The hash keys lbgen knows how to express in both nginx and HAProxy.
HASH_KEY_RE = re.compile(r"\$(request_uri|uri|remote_addr|(http|cookie|arg)_([a-z0-9_]{1,64}))")
# An HTTP header name (RFC 9110 token).
HEADER_NAME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
# A header value: printable ASCII, no leading or trailing space (no control character, so no CR/LF).
HEADER_VALUE_RE = re.compile(r"[!-~](?:[ -~]{0,1022}[!-~])?")
# Headers a check may not set through `health.headers`: Host has `health.host`; the others frame the
# request or the connection, which the checker and the proxy own.
RESERVED_HEADERS = ("host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
                    "keep-alive", "proxy-connection", "expect")
ALGORITHMS = ("round_robin", "least_conn", "ip_hash", "hash", "random")
# A dotted-quad IPv4 address already in the form `ipaddress` prints (no leading zeros): the common case,
# accepted without building an address object (50,000 of them in an inventory).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
CANONICAL_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def name(value: str) -> str:
    """A service or env name: `[a-z0-9][a-z0-9_-]{0,62}`."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a valid name (expected [a-z0-9][a-z0-9_-]{{0,62}})")
    return value


def container_name(value: str) -> str:
    if not isinstance(value, str) or not CONTAINER_NAME_RE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a valid container name (expected [A-Za-z0-9][A-Za-z0-9_.-]*)")
    return value


def container_id(value: str) -> str:
    if not isinstance(value, str) or not CONTAINER_ID_RE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a valid container id")
    return value


def port(value: object) -> int:
    """1-65535, given as an int or a string of digits."""
    if isinstance(value, bool):
        raise ValueError(f"{_show(value)} is not a port (expected 1-65535)")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,5}", value):
            raise ValueError(f"{_show(value)} is not a port (expected 1-65535)")
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{_show(value)} is not a port (expected 1-65535)")
    return value


def weight(value: object) -> int:
    """1-256, given as an int or a string of digits."""
    if isinstance(value, bool):
        raise ValueError(f"{_show(value)} is not a weight (expected an integer 1-256)")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,3}", value):
            raise ValueError(f"{_show(value)} is not a weight (expected an integer 1-256)")
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= 256:
        raise ValueError(f"{_show(value)} is not a weight (expected an integer 1-256)")
    return value


def boolean(value: object) -> bool:
    """`true`/`false` (labels are strings; YAML/JSON may give real booleans)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"{_show(value)} is not a boolean (expected true or false)")


def address(value: object) -> str:
    """An IPv4 or IPv6 address, normalised. No IPv6 zone: `ipaddress` takes any text after `%`
    (`fe80::1%x;}`), and a zone names an interface of the host, never a backend on a Docker network."""
    text = str(value)
    if CANONICAL_IPV4_RE.fullmatch(text):
        return text
    try:
        if "%" in text:
            raise ValueError(text)
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{_show(value)} is not an IP address") from None


def host(value: object) -> str:
    """A DNS host name, lower case, optionally with a leading `*.` wildcard."""
    if not isinstance(value, str) or len(value) > 253 or not HOST_RE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a host name (lower-case DNS name, optionally *.example.com)")
    return value


def host_header(value: object) -> str:
    """The Host a health check sends: a DNS name (no wildcard), optionally with `:port`."""
    text = value if isinstance(value, str) else None
    name_part, _, port_part = (text or "").partition(":")
    try:
        if text is None or name_part.startswith("*.") or len(name_part) > 253 or not HOST_RE.fullmatch(name_part):
            raise ValueError
        if port_part or text.endswith(":"):
            port(port_part)
    except ValueError:
        raise ValueError(f"{_show(value)} is not a Host header (lower-case DNS name, optionally with :port)") from None
    return text


def header_name(value: object) -> str:
    """An HTTP header name (RFC 9110 token, at most 64 characters), not one lbgen or the proxy owns."""
    if not isinstance(value, str) or not HEADER_NAME_RE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not an HTTP header name (expected letters, digits and !#$%&'*+.^_`|~-)")
    if value.lower() in RESERVED_HEADERS:
        hint = "; use health.host" if value.lower() == "host" else ""
        raise ValueError(f"{_show(value)} cannot be set by a health check{hint}")
    return value


def header_value(value: object) -> str:
    """An HTTP header value: printable ASCII, 1-1024 characters, no leading or trailing space."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not HEADER_VALUE_RE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not an HTTP header value (printable ASCII, 1-1024 characters, "
                         "no control characters)")
    return value


def http_path(value: object) -> str:
    if not isinstance(value, str) or not PATH_RE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a health path (expected / followed by [A-Za-z0-9._~/%?=&+-])")
    return value


def route_path(value: object) -> str:
    """A routing prefix: `/` or `/seg/seg` of [A-Za-z0-9._~-] segments (no `.` or `..` segment, no `%`, no
    empty segment); one trailing slash is dropped (`/api/` is `/api`). Matching is by whole segments."""
    text = value[:-1] if isinstance(value, str) and len(value) > 1 and value.endswith("/") else value
    if not isinstance(text, str) or not ROUTE_PATH_RE.fullmatch(text) or any(
            seg in (".", "..") for seg in text.split("/")[1:]):
        raise ValueError(f"{_show(value)} is not a path prefix (expected / or /segment/... of "
                         "[A-Za-z0-9._~-], no . or .. segments)")
    return text


def snippet(value: object, kind: str) -> str:
    """Proxy lines from lbgen.yaml (trusted), for inside one block: printable text and tabs/newlines only,
    at most 8 KiB, no line that could pass for lbgen's own markers; for nginx, braces balanced outside
    quotes and comments and the text ending a directive (`;` or `}`), so it cannot close the block it is
    put in nor run on into the next line; for HAProxy, no line opening a new section."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected proxy configuration lines as text, got {_show(value)}")
    if len(value) > 8192:
        raise ValueError("is longer than 8192 characters")
    for number, line in enumerate(value.splitlines(), start=1):
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in line):
            raise ValueError(f"line {number}: control character")
        if "lbgen-" in line and line.lstrip().startswith("#"):
            raise ValueError(f"line {number}: a comment naming lbgen- markers is reserved for lbgen")
    if kind == "nginx":
        _nginx_balanced(value)
    else:
        for number, line in enumerate(value.splitlines(), start=1):
            word = line.split("#", 1)[0].split()
            if word and word[0] in HAPROXY_SECTIONS:
                raise ValueError(f"line {number}: {word[0]!r} would open a new HAProxy section")
    return value


def _nginx_balanced(text: str) -> None:
    """Braces nest and close outside quotes and comments; the last token is `;` or `}`."""
    depth = 0
    last = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            if i < 0:
                break
        elif c in "\"'":
            end = i + 1
            while end < len(text) and text[end] != c:
                end += 2 if text[end] == "\\" else 1
            if end >= len(text):
                raise ValueError("unterminated quoted string")
            last, i = c, end
        elif c == "{":
            depth, last = depth + 1, c
        elif c == "}":
            depth, last = depth - 1, c
            if depth < 0:
                raise ValueError("a } closes a block the snippet did not open")
        elif not c.isspace():
            last = c
        i += 1
    if depth:
        raise ValueError(f"{depth} unclosed {{")
    if last not in (";", "}"):
        raise ValueError("must end with a complete directive (`;` or `}`)")


def hash_key(value: object) -> str:
    if not isinstance(value, str) or not HASH_KEY_RE.fullmatch(value):
        raise ValueError(
            f"{_show(value)} is not a supported hash key "
            "($request_uri, $uri, $remote_addr, $http_NAME, $cookie_NAME or $arg_NAME)"
        )
    return value


def label_prefix(value: object) -> str:
    if not isinstance(value, str) or not LABEL_PREFIX_RE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a valid label prefix")
    return value


def expect_status(value: object) -> str:
    """An HTTP status (200) or a class (2xx); returned as text."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not re.fullmatch(r"[1-5](?:[0-9]{2}|xx)", text):
        raise ValueError(f"{_show(value)} is not an HTTP status (expected e.g. 200 or 2xx)")
    return text


def _show(value: object) -> str:
    """A safe, short rendering of an untrusted value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
