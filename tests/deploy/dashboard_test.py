"""The Grafana dashboard (deploy/grafana/dashboards/sluice.json) and the Prometheus rules against a
real sluice-server: the JSON and its datasource references, PromQL syntax (promtool), every metric
name a query selects is one the server exports (after streaming frames so every histogram has
samples), and a real Prometheus, loaded with deploy/prometheus/prometheus.yml pointed at the server,
returns data for every panel query and recording rule."""

import glob
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import numpy as np
import yaml

import deploy_common as common

HERE = os.path.dirname(os.path.abspath(__file__))
# Streamed models: (name, input shape in the model's offline layout [batch rows = sessions]).
STREAMS = (("tick_lstm", (2, 30, 8)), ("kws_cnn", (2, 40, 30)), ("cnn_tiny", (1, 128, 10)))
# The live queries' $__rate_interval: long enough to hold the scrape before the traffic however
# slowly the tests run.
RATE_WINDOW = "5m"
# Series Prometheus itself makes for every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Metrics each required dashboard panel is built from.
REQUIRED = {
    "sessions active": {"sluice_sessions_active"},
    "frames/s": {"sluice_frames_total"},
    "batch size mean": {"sluice_batch_size_sum", "sluice_batch_size_count"},
    "queue delay": {"sluice_queue_delay_seconds_bucket"},
    "frame latency": {"sluice_frame_latency_seconds_bucket"},
    "fallbacks": {"sluice_backend_fallbacks_total"},
    "errors": {"sluice_errors_total"},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(what, predicate, timeout, proc=None, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}:\n{log and log()}")
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}:\n{log and log()}")


def dashboard_queries(dashboard):
    """[(panel title, refId, expr)] of every panel target."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["refId"], target["expr"]))
    return out


def rule_exprs():
    """[(rule name, expr)] and the recording rule names of deploy/prometheus/rules."""
    exprs, recorded = [], set()
    for path in glob.glob(common.deploy_path("prometheus", "rules", "*.yml")):
        for group in common.load_yaml(path)["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule.get("alert")
                exprs.append((name, rule["expr"]))
                if "record" in rule:
                    recorded.add(rule["record"])
    return exprs, recorded


class Static(unittest.TestCase):
    """The dashboard file alone."""

    @classmethod
    def setUpClass(cls):
        with open(common.deploy_path("grafana", "dashboards", "sluice.json")) as f:
            cls.dashboard = json.load(f)
        cls.datasources = []
        for path in common.yaml_files(common.deploy_path("grafana", "provisioning", "datasources")):
            cls.datasources += common.load_yaml(path)["datasources"]

    def test_panels_have_unique_ids_and_ref_ids(self):
        panels = self.dashboard["panels"]
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)), f"duplicate panel ids: {ids}")
        for panel in panels:
            ref_ids = [t["refId"] for t in panel.get("targets", [])]
            self.assertTrue(ref_ids, f"panel {panel['title']} has no query")
            self.assertEqual(len(ref_ids), len(set(ref_ids)), panel["title"])
            self.assertTrue({"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"])
        self.assertTrue(self.dashboard["uid"])

    def test_every_datasource_is_the_provisioned_one(self):
        self.assertEqual(len(self.datasources), 1)
        (provisioned,) = self.datasources
        found = []

        def walk(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "datasource":
                        found.append(value)
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(self.dashboard)
        # Every panel, every target and the model variable name a datasource.
        expected = (len(self.dashboard["panels"]) + len(dashboard_queries(self.dashboard))
                    + len(self.dashboard["templating"]["list"]))
        self.assertEqual(len(found), expected)
        for ds in found:
            self.assertIsInstance(ds, dict, "refer to the datasource by {type, uid}")
            self.assertEqual(ds.get("uid"), provisioned["uid"])
            self.assertEqual(ds.get("type"), provisioned["type"])

    def test_required_panels(self):
        selected = {}
        for title, _, expr in dashboard_queries(self.dashboard):
            selected[title] = (selected.get(title, set())
                               | common.promql_metric_names(common.grafana_to_promql(expr)))
        for what, metrics in REQUIRED.items():
            self.assertTrue(any(metrics <= names for names in selected.values()),
                            f"no panel for {what} ({sorted(metrics)})")
        exprs = " ".join(e for _, _, e in dashboard_queries(self.dashboard))
        for histogram in ("sluice_queue_delay_seconds", "sluice_frame_latency_seconds"):
            for q in ("0.5", "0.99"):
                self.assertRegex(exprs, rf"histogram_quantile\({q}, sum by \([^)]*\ble\b[^)]*\) "
                                        rf"\(rate\({histogram}_bucket")
        self.assertRegex(exprs, r"sum by \(code\) \(rate\(sluice_errors_total")

    def test_promql_parses(self):
        # promtool parses every query as a recording rule (Grafana variables substituted).
        rules = [{"record": f"dashboard:q{i}", "expr": common.grafana_to_promql(expr)}
                 for i, (_, _, expr) in enumerate(dashboard_queries(self.dashboard))]
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            f.flush()
            result = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True,
                                    text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_metric_name_extraction(self):
        # The name check below relies on this; it must see through functions, labels, by().
        names = common.promql_metric_names(
            'histogram_quantile(0.99, sum by (model, le) (rate(a_bucket{model=~".*", x="y z"}'
            '[5m]))) / ignoring(le) sum without (code) (b_total offset 5m) > bool 1e3 and on() c')
        self.assertEqual(names, {"a_bucket", "b_total", "c"})


class AgainstServer(unittest.TestCase):
    """A sluice-server with the bundled models, frames streamed through it, and a Prometheus."""

    @classmethod
    def setUpClass(cls):
        with open(common.deploy_path("grafana", "dashboards", "sluice.json")) as f:
            cls.dashboard = json.load(f)
        cls.temporary = common.ARGS.work is None
        cls.work = common.ARGS.work or tempfile.mkdtemp(prefix="sluice-deploy-")
        shutil.rmtree(cls.work, ignore_errors=True)
        os.makedirs(cls.work)
        cls.server = cls.prometheus = None
        cls.logs = []
        try:
            cls.start_server()
            cls.start_prometheus()
            cls.stream_frames()
            cls.metrics_text = http_get(f"{cls.http_url}/metrics")
            cls.wait_for_rates()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for proc in (cls.prometheus, cls.server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in cls.logs:
            log.close()
        if cls.temporary:
            shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def log(cls, name):
        with open(os.path.join(cls.work, name)) as f:
            return f.read()[-4000:]

    @classmethod
    def start_server(cls):
        env = dict(os.environ)
        env.setdefault("POCL_CACHE_DIR", os.path.join(cls.work, "pocl"))
        log = open(os.path.join(cls.work, "server.log"), "w")
        cls.logs.append(log)
        cls.server = subprocess.Popen(
            [common.ARGS.server, "--model_repository", os.path.join(common.root(), "models"),
             "--grpc_port", "0", "--http_port", "0", "--host", "127.0.0.1", "--backend", "cpu"],
            stdout=log, stderr=subprocess.STDOUT, env=env)

        def ports():
            text = cls.log("server.log")
            grpc = re.search(r"gRPC listening on [^\s]*:(\d+)", text)
            http = re.search(r"admin HTTP server listening on [^\s]*:(\d+)", text)
            return grpc and http and (int(grpc.group(1)), int(http.group(1)))

        grpc, http = wait_for("sluice-server ports", ports, 60, cls.server,
                              lambda: cls.log("server.log"))
        cls.grpc_address = f"127.0.0.1:{grpc}"
        cls.http_url = f"http://127.0.0.1:{http}"
        cls.http_target = f"127.0.0.1:{http}"
        wait_for("/readyz", lambda: "ready" in http_get(f"{cls.http_url}/readyz"), 60,
                 cls.server, lambda: cls.log("server.log"))

    @classmethod
    def start_prometheus(cls):
        """Prometheus with deploy/prometheus/prometheus.yml, the target set to the test server
        and 1 s intervals; the rule files are the same ones."""
        source = common.deploy_path("prometheus", "prometheus.yml")
        config = common.load_yaml(source)
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [os.path.join(os.path.dirname(source), p)
                                for p in config["rule_files"]]
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "sluice"]
        job["static_configs"] = [{"targets": [cls.http_target]}]
        path = os.path.join(cls.work, "prometheus.yml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found (Debian package prometheus; scripts/setup.sh)")
        port = free_port()
        cls.prometheus_url = f"http://127.0.0.1:{port}"
        log = open(os.path.join(cls.work, "prometheus.log"), "w")
        cls.logs.append(log)
        cls.prometheus = subprocess.Popen(
            [binary, f"--config.file={path}", f"--storage.tsdb.path={cls.work}/tsdb",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)
        logs = lambda: cls.log("prometheus.log")  # noqa: E731
        wait_for("Prometheus ready", lambda: http_get(f"{cls.prometheus_url}/-/ready"), 60,
                 cls.prometheus, logs)
        # A first scrape before any frame, so rates see the traffic as an increase.
        wait_for("first scrape", lambda: cls.query('up{job="sluice"} == 1'), 30, cls.prometheus,
                 logs)

    @classmethod
    def stream_frames(cls):
        rng = np.random.default_rng(7)
        for model, shape in STREAMS:
            x = os.path.join(cls.work, f"{model}.npy")
            np.save(x, rng.standard_normal(shape).astype(np.float32))
            result = subprocess.run(
                [common.ARGS.client, "stream", "--server", cls.grpc_address, "--model", model,
                 "--input", x, "--output", os.path.join(cls.work, f"{model}_out.npy"),
                 "--chunk", "3"], capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise RuntimeError(f"sluice-client stream {model} failed:\n{result.stderr}")

    @classmethod
    def wait_for_rates(cls):
        # Frames are counted once Prometheus has scraped after the traffic.
        expr = f'sum(rate(sluice_frames_total{{direction="out"}}[{RATE_WINDOW}])) > 0'
        wait_for("a scrape after the traffic", lambda: cls.query(expr), 30, cls.prometheus,
                 lambda: cls.log("prometheus.log"))
        # And the recording rules have evaluated on it.
        wait_for("recording rules", lambda: cls.query("sluice:frames_in:rate1m > 0"), 30,
                 cls.prometheus, lambda: cls.log("prometheus.log"))

    @classmethod
    def query(cls, expr):
        url = f"{cls.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        reply = json.loads(http_get(url))
        if reply["status"] != "success":
            raise AssertionError(f"{expr}: {reply}")
        return reply["data"]["result"]

    def test_every_selected_metric_is_exported(self):
        exported = common.exposition_names(self.metrics_text)
        # Histograms have samples only after traffic: the streams above made them.
        for family in ("sluice_batch_size", "sluice_queue_delay_seconds",
                       "sluice_frame_latency_seconds", "sluice_step_seconds"):
            self.assertIn(f"{family}_bucket", exported)
        for title, ref, expr in dashboard_queries(self.dashboard):
            names = common.promql_metric_names(common.grafana_to_promql(expr))
            self.assertTrue(names, f"{title}/{ref}: no metric in {expr}")
            missing = names - exported
            self.assertFalse(missing, f"panel {title!r} ({ref}) queries {sorted(missing)}, "
                                      f"which sluice-server does not export")
        exprs, recorded = rule_exprs()
        for name, expr in exprs:
            missing = common.promql_metric_names(expr) - exported - recorded - PROMETHEUS_SERIES
            self.assertFalse(missing, f"rule {name} queries {sorted(missing)}, "
                                      f"which sluice-server does not export")
        # The model variable's label_values() source.
        for variable in self.dashboard["templating"]["list"]:
            m = re.match(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"])
            self.assertIsNotNone(m, variable)
            self.assertIn(m.group(1), exported)
            self.assertIn(f'{m.group(2)}="', self.metrics_text)

    def test_every_panel_query_returns_data(self):
        for title, ref, expr in dashboard_queries(self.dashboard):
            with self.subTest(panel=title, ref=ref):
                result = self.query(common.grafana_to_promql(expr, RATE_WINDOW))
                self.assertTrue(result, f"{title} ({ref}): no series for {expr}")

    def test_panels_show_the_streamed_traffic(self):
        values = {}
        for title, ref, expr in dashboard_queries(self.dashboard):
            for series in self.query(common.grafana_to_promql(expr, RATE_WINDOW)):
                key = (title, ref, series["metric"].get("model"),
                       series["metric"].get("direction"))
                values[key] = float(series["value"][1])
        frames = [v for (t, _, m, d), v in values.items()
                  if t == "Frames / s" and m == "tick_lstm" and d == "in"]
        self.assertEqual(len(frames), 1, values)
        self.assertGreater(frames[0], 0)
        for title in ("End-to-end frame latency p50 / p99", "Queue delay p50 / p99",
                      "Batch size (mean)"):
            got = [v for (t, _, m, _), v in values.items() if t == title and m == "tick_lstm"]
            self.assertTrue(got, f"{title}: no tick_lstm series")
            for v in got:
                self.assertTrue(math.isfinite(v) and v >= 0, f"{title}: {v}")
        batch = [v for (t, _, m, _), v in values.items()
                 if t == "Batch size (mean)" and m == "tick_lstm"]
        self.assertGreaterEqual(batch[0], 1.0)

    def test_rules_evaluate(self):
        exprs, recorded = rule_exprs()
        for name in sorted(recorded):
            with self.subTest(rule=name):
                self.assertTrue(self.query(name), f"recording rule {name} has no series")
        reply = json.loads(http_get(f"{self.prometheus_url}/api/v1/rules"))
        health = {r["name"]: r["health"] for g in reply["data"]["groups"] for r in g["rules"]}
        self.assertEqual(set(health), {n for n, _ in exprs})
        self.assertEqual({n for n, h in health.items() if h != "ok"}, set(), health)
        # Nothing is wrong with this server: no alert fires.
        alerts = json.loads(http_get(f"{self.prometheus_url}/api/v1/alerts"))["data"]["alerts"]
        self.assertEqual([a for a in alerts if a["state"] == "firing"], [])


if __name__ == "__main__":
    common.parse_args(__doc__, need_server=True, need_client=True)
    unittest.main()
