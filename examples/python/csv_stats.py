"""Column statistics of CSV text: a hanzo-node Python tool (no dependencies).

    hanzo-node run python examples/python/csv_stats.py \
        --params '{"csv": "city,temp\\nOslo,3.5\\nRome,14\\nCairo,22.5"}'

`run` summarises every numeric column (count, mean, median, standard deviation, min,
max); `columns` lists the header with the type each column holds.
"""

import csv
import io
import statistics


def _rows(params):
    text = params.get("csv")
    if not isinstance(text, str):
        raise ValueError("params.csv must be a string of CSV text")
    reader = csv.reader(io.StringIO(text), delimiter=params.get("delimiter", ","))
    rows = [r for r in reader if r]
    if not rows:
        raise ValueError("the CSV text has no header row")
    return rows[0], rows[1:]


def _number(cell):
    try:
        return float(cell)
    except ValueError:
        return None


def run(params):
    header, rows = _rows(params)
    stats = {}
    for i, name in enumerate(header):
        values = [_number(r[i]) for r in rows if i < len(r) and r[i].strip()]
        if not values or any(v is None for v in values):
            continue
        stats[name] = {
            "count": len(values),
            "mean": statistics.fmean(values),
            "median": statistics.median(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
        }
    return {"rows": len(rows), "columns": stats}


def columns(params):
    header, rows = _rows(params)
    out = []
    for i, name in enumerate(header):
        cells = [r[i] for r in rows if i < len(r) and r[i].strip()]
        numeric = bool(cells) and all(_number(c) is not None for c in cells)
        out.append({"name": name, "type": "number" if numeric else "text"})
    return out
