# Canonical JSON, byte-identical to protocol/canonical.py: sorted keys, no whitespace,
# integers only, ASCII with lower-case \uXXXX escapes (surrogate pairs above the BMP).


class CanonicalError(ValueError):
    pass


def _string(s, out):
    out.append('"')
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif 0x20 <= c <= 0x7E:
            out.append(ch)
        elif c > 0xFFFF:
            c -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF)))
        else:
            # MicroPython's json decodes a surrogate pair as two code points: each is
            # written back as its own escape, which gives the same text as the pair.
            out.append("\\u%04x" % c)
    out.append('"')


def _value(v, out, depth):
    if depth > 16:
        raise CanonicalError("nesting deeper than 16")
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, str):
        _string(v, out)
    elif isinstance(v, (list, tuple)):
        out.append("[")
        first = True
        for item in v:
            if not first:
                out.append(",")
            first = False
            _value(item, out, depth + 1)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        first = True
        for key in sorted(v):
            if not isinstance(key, str):
                raise CanonicalError("object key is not a string")
            if not first:
                out.append(",")
            first = False
            _string(key, out)
            out.append(":")
            _value(v[key], out, depth + 1)
        out.append("}")
    else:
        raise CanonicalError("%s is not allowed in canonical JSON" % type(v).__name__)


def dumps(value):
    """Canonical JSON text of value."""
    out = []
    _value(value, out, 0)
    return "".join(out)
