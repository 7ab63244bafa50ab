"""Structural checks of deploy/compose.yaml (no `docker compose config` here): the services, their
ports, the files they mount, and that sluice, Prometheus and Grafana point at each other."""

import os
import re
import unittest

import deploy_common as common


def seconds(duration):
    """Compose durations such as '30s', '1m30s', '500ms'."""
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration)):
        total += float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


class Compose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.folder = common.deploy_path()
        cls.compose = common.load_yaml(common.deploy_path("compose.yaml"))
        cls.services = cls.compose["services"]
        cls.flags = common.server_flags(common.ARGS.server) if common.ARGS.server else None

    def mounts(self, service):
        """[(source, target)] of a service's short-syntax volumes."""
        out = []
        for volume in self.services[service].get("volumes", []):
            parts = volume.split(":")
            self.assertGreaterEqual(len(parts), 2, volume)
            out.append((parts[0], parts[1]))
        return out

    def host_path(self, source):
        return os.path.normpath(os.path.join(self.folder, source))

    def target_of(self, service, source):
        for src, target in self.mounts(service):
            if os.path.normpath(src) == os.path.normpath(source):
                return target
        self.fail(f"{service} does not mount {source}")

    def test_services(self):
        self.assertEqual(set(self.services), {"sluice", "prometheus", "grafana"})

    def test_sluice_builds_from_the_root_dockerfile(self):
        sluice = self.services["sluice"]
        self.assertEqual(sluice["image"], "sluice:latest")
        context = self.host_path(sluice["build"]["context"])
        self.assertEqual(context, os.path.normpath(common.root()))
        self.assertTrue(os.path.isfile(os.path.join(context, sluice["build"].get(
            "dockerfile", "Dockerfile"))), "no Dockerfile at the build context")

    def sluice_args(self):
        sluice = self.services["sluice"]
        argv = list(sluice.get("entrypoint", [])) + list(sluice.get("command", []))
        return common.flag_values(argv)

    def test_sluice_ports_flags_and_health(self):
        sluice = self.services["sluice"]
        args = self.sluice_args()
        if self.flags is not None:
            unknown = set(args) - self.flags
            self.assertFalse(unknown, f"sluice-server has no flags {sorted(unknown)}")
        grpc, http = int(args.get("grpc_port", 8001)), int(args.get("http_port", 8000))
        published = {str(p).rsplit(":", 1)[-1] for p in sluice["ports"]}
        self.assertEqual(published, {str(grpc), str(http)})
        self.assertEqual((grpc, http), (8001, 8000))
        test = " ".join(sluice["healthcheck"]["test"])
        self.assertIn(f":{http}/healthz", test)
        # The model repository flag names a mounted folder that exists in the repository.
        repository = args["model_repository"]
        (source,) = [s for s, t in self.mounts("sluice") if t == repository]
        self.assertTrue(os.path.isdir(self.host_path(source)))
        self.assertTrue(any(os.path.isfile(os.path.join(self.host_path(source), m, "model.onnx"))
                            for m in os.listdir(self.host_path(source))))
        # The drain fits in the stop grace period (SIGKILL after it).
        self.assertGreater(seconds(sluice["stop_grace_period"]), int(args["drain_timeout_s"]))

    def test_bind_mounts_exist_and_named_volumes_are_declared(self):
        declared = set(self.compose.get("volumes", {}) or {})
        for service in self.services:
            for source, _ in self.mounts(service):
                with self.subTest(service=service, source=source):
                    if source.startswith((".", "/")):
                        self.assertTrue(os.path.exists(self.host_path(source)), source)
                    else:
                        self.assertIn(source, declared)

    def test_prometheus_reads_the_config_and_rules_and_scrapes_sluice(self):
        prometheus = self.services["prometheus"]
        args = common.flag_values(prometheus["command"])
        config_target = self.target_of("prometheus", "./prometheus/prometheus.yml")
        self.assertEqual(args["config.file"], config_target)
        config = common.load_yaml(common.deploy_path("prometheus", "prometheus.yml"))
        # Rule globs resolve next to the config inside the container: that folder is mounted.
        rules_target = self.target_of("prometheus", "./prometheus/rules")
        for pattern in config["rule_files"]:
            path = os.path.normpath(os.path.join(os.path.dirname(config_target), pattern))
            self.assertEqual(os.path.dirname(path), rules_target, pattern)
        # The scrape target is the sluice service on its HTTP port.
        http = self.sluice_args().get("http_port", "8000")
        targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", [])
                   for t in sc["targets"]]
        self.assertIn(f"sluice:{http}", targets)
        self.assertIn("9090", {str(p).rsplit(":", 1)[-1] for p in prometheus["ports"]})

    def test_grafana_provisioning(self):
        grafana = self.services["grafana"]
        provisioning = self.target_of("grafana", "./grafana/provisioning")
        self.assertEqual(provisioning, "/etc/grafana/provisioning")
        dashboards = self.target_of("grafana", "./grafana/dashboards")
        (provider,) = common.load_yaml(
            common.deploy_path("grafana", "provisioning", "dashboards", "sluice.yaml"))["providers"]
        self.assertEqual(provider["options"]["path"], dashboards)
        home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        self.assertEqual(os.path.dirname(home), dashboards)
        self.assertTrue(os.path.isfile(common.deploy_path("grafana", "dashboards",
                                                          os.path.basename(home))))
        # The datasource is the prometheus service on its published port.
        for path in common.yaml_files(common.deploy_path("grafana", "provisioning", "datasources")):
            for ds in common.load_yaml(path)["datasources"]:
                self.assertEqual(ds["url"], "http://prometheus:9090")
        self.assertIn("prometheus", grafana.get("depends_on", []))


if __name__ == "__main__":
    common.parse_args(__doc__)
    unittest.main()
