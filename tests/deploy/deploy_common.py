"""Shared helpers of the deploy/ checks: arguments, YAML loading, server flags, PromQL names."""

import argparse
import glob
import os
import re
import subprocess
import sys

import yaml

ARGS = None


def parse_args(doc, need_server=False, need_client=False):
    """Parses --root [--server] [--client]; the rest of argv goes to unittest."""
    global ARGS
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--root", required=True, help="repository root")
    parser.add_argument("--server", required=need_server, help="path of sluice-server")
    parser.add_argument("--client", required=need_client, help="path of sluice-client")
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    ARGS, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0]] + rest
    return ARGS


def root():
    return ARGS.root


def deploy_path(*parts):
    return os.path.join(ARGS.root, "deploy", *parts)


def yaml_files(folder):
    """Every .yaml/.yml file under `folder`, hidden files included, sorted."""
    found = []
    for pattern in ("**/*.yaml", "**/*.yml", "**/.*.yaml", "**/.*.yml"):
        found += glob.glob(os.path.join(folder, pattern), recursive=True)
    return sorted(set(found))


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def server_flags(server):
    """Names of the flags `sluice-server --helpfull` lists (without the leading --)."""
    out = subprocess.run([server, "--helpfull"], capture_output=True, text=True, timeout=60)
    names = set(re.findall(r"^\s+--([A-Za-z0-9_]+) \(", out.stdout + out.stderr, re.M))
    if "drain_timeout_s" not in names:
        raise RuntimeError("sluice-server --helpfull lists no --drain_timeout_s:\n" + out.stdout)
    return names


def flag_values(args):
    """{'name': 'value'} of `--name=value` / `--name value` / `--flag` items of an argv list."""
    values = {}
    i = 0
    while i < len(args):
        arg = str(args[i])
        if not arg.startswith("--"):
            i += 1
            continue
        if "=" in arg:
            name, value = arg[2:].split("=", 1)
        elif i + 1 < len(args) and not str(args[i + 1]).startswith("--"):
            name, value = arg[2:], str(args[i + 1])
            i += 1
        else:
            name, value = arg[2:], "true"
        values[name] = value
        i += 1
    return values


# PromQL words that look like identifiers but are not metric names.
_PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "inf", "nan", "atan2",
}


def promql_metric_names(expr):
    """Metric names an expression selects, e.g. {'x_bucket'} for
    'histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b"}[5m])))'. Grafana variables
    must already be substituted. Function and aggregation names (followed by '(') are skipped."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*", s):
        rest = s[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if m.group(0).lower() in _PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def grafana_to_promql(expr, rate_interval="15s"):
    """A Grafana panel query with its variables replaced by plain PromQL."""
    s = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    s = s.replace("$__range", "5m")
    s = re.sub(r"\$\{?model\}?", ".*", s)
    if "$" in s:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return s


def exposition_names(text):
    """Sample names of a Prometheus text exposition (x_bucket, x_sum, x_count for histograms)."""
    names = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)", line)
        if m:
            names.add(m.group(1))
    return names
