"""Grid syntax of the sweep runner: values, grids, their points, and each point's folder name and flags."""
import itertools
import math
import re

from common.errors import UsageError


def expand_values(text: str) -> list[str]:
    """`1..3,10` -> ['1', '2', '3', '10']; `5:15:5` -> ['5', '10', '15']; `a,b` -> ['a', 'b'];
    `a,b|c` -> ['a,b', 'c'] (values separated by | are taken as they are)."""
    if "|" in text:
        values = text.split("|")
        if not all(values):
            raise UsageError(f"empty value in grid values {text!r}")
        return values
    values = []
    for item in text.split(","):
        if re.fullmatch(r"-?\d+\.\.-?\d+", item):
            start, stop = (int(v) for v in item.split(".."))
            values += [str(v) for v in range(start, stop + 1)]
        elif re.fullmatch(r"[^:]+:[^:]+:[^:]+", item):
            values += _stepped(item)
        elif item:
            values.append(item)
        else:
            raise UsageError(f"empty value in grid values {text!r}")
    return values


def _stepped(item: str) -> list[str]:
    try:
        start, stop, step = (float(v) for v in item.split(":"))
    except ValueError:
        raise UsageError(f"range {item!r} must be start:stop:step numbers") from None
    if step <= 0 or stop < start:
        raise UsageError(f"range {item!r} needs step > 0 and stop >= start")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    integral = all(re.fullmatch(r"-?\d+", v) for v in item.split(":"))
    return [str(int(start + i * step)) if integral else f"{start + i * step:.10g}" for i in range(count)]


def parse_grid(specs: list[str]) -> dict[str, list[str]]:
    grid = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][\w-]*", key):
            raise UsageError(f"grid entry {spec!r} must look like name=values, e.g. width=5:75:5")
        grid[key.replace("-", "_")] = expand_values(values)
    return grid


def expand_points(grids: list[dict[str, list[str]]]) -> list[dict[str, str]]:
    """The union of the grids' cartesian products, in order, without repeats."""
    points, seen = [], set()
    for grid in grids:
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values, strict=True))
            key = tuple(sorted(point.items()))
            if key not in seen:
                seen.add(key)
                points.append(point)
    return points


def safe_value(value) -> str:
    """A grid value as it may appear in a file name: characters other than letters, digits, '.', '+' and '-'
    become '-' (no '/', no '_' or '=', which separate the key=value pairs)."""
    return re.sub(r"[^0-9A-Za-z.+-]", "-", str(value))


def point_name(point: dict[str, str]) -> str:
    """Folder name of a point: key=value pairs joined by '_'."""
    return "_".join(f"{key}={safe_value(value)}" for key, value in point.items())


def point_argv(point: dict[str, str]) -> list[str]:
    argv = []
    for key, value in point.items():
        flag = "--" + key.replace("_", "-")
        if value.lower() in ("true", "false"):
            argv.append(flag if value.lower() == "true" else "--no-" + flag[2:])
        else:
            argv += [flag, value]
    return argv
