"""promtool on deploy/prometheus: the config, every rule file, and the rule unit tests
(sluice_rules_test.yml)."""

import glob
import os
import re
import shutil
import subprocess
import unittest

import deploy_common as common

HERE = os.path.dirname(os.path.abspath(__file__))


class Promtool(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.promtool = shutil.which("promtool")
        if cls.promtool is None:
            raise RuntimeError("promtool not found (Debian package prometheus; scripts/setup.sh)")
        cls.config = common.deploy_path("prometheus", "prometheus.yml")

    def run_promtool(self, *args):
        result = subprocess.run([self.promtool, *args], capture_output=True, text=True,
                                timeout=120)
        return result, result.stdout + result.stderr

    def rule_files(self):
        """The rule files prometheus.yml loads (its globs, relative to the config file)."""
        config = common.load_yaml(self.config)
        files = []
        for pattern in config.get("rule_files", []):
            files += glob.glob(os.path.join(os.path.dirname(self.config), pattern))
        return sorted(files)

    def test_check_config(self):
        result, out = self.run_promtool("check", "config", self.config)
        self.assertEqual(result.returncode, 0, out)
        # Every rule file the config names is found and checked with it.
        m = re.search(r"SUCCESS: (\d+) rule files found", out)
        self.assertIsNotNone(m, out)
        self.assertEqual(int(m.group(1)), len(self.rule_files()), out)

    def test_config_scrapes_sluice_admin_port(self):
        config = common.load_yaml(self.config)
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        self.assertIn("sluice", jobs)
        job = jobs["sluice"]
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        self.assertEqual(targets, ["sluice:8000"])  # the compose service and its HTTP port

    def test_check_rules(self):
        files = glob.glob(common.deploy_path("prometheus", "**", "*.yml"), recursive=True)
        files = [f for f in files if os.path.abspath(f) != os.path.abspath(self.config)]
        self.assertTrue(files, "no rule files under deploy/prometheus")
        self.assertEqual(sorted(files), self.rule_files(),
                         "a rule file exists that prometheus.yml does not load")
        for path in files:
            result, out = self.run_promtool("check", "rules", path)
            self.assertEqual(result.returncode, 0, f"{path}:\n{out}")

    def test_rule_unit_tests(self):
        result, out = self.run_promtool("test", "rules", os.path.join(HERE, "sluice_rules_test.yml"))
        self.assertEqual(result.returncode, 0, out)
        self.assertIn("SUCCESS", out)


if __name__ == "__main__":
    common.parse_args(__doc__)
    unittest.main()
