"""yamllint --strict on every YAML file under deploy/ (and the rule tests here), with
deploy/.yamllint."""

import os
import shutil
import subprocess
import unittest

import deploy_common as common

HERE = os.path.dirname(os.path.abspath(__file__))


class YamlLint(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.yamllint = shutil.which("yamllint")
        if cls.yamllint is None:
            raise RuntimeError("yamllint not found (Debian package yamllint; scripts/setup.sh)")
        cls.config = common.deploy_path(".yamllint")

    def lint(self, paths, stdin=None):
        return subprocess.run([self.yamllint, "--strict", "-f", "parsable", "-c", self.config]
                              + paths, input=stdin, capture_output=True, text=True, timeout=120)

    def test_every_deploy_yaml_is_clean(self):
        files = [f for f in common.yaml_files(common.deploy_path())
                 if os.path.basename(f) != ".yamllint"]
        files += common.yaml_files(HERE)
        # compose, prometheus (config + rules), grafana (2), k8s (6), fpga overlay (2), rule tests.
        self.assertGreaterEqual(len(files), 12, files)
        result = self.lint(files)
        self.assertEqual(result.returncode, 0,
                         f"yamllint found problems:\n{result.stdout}{result.stderr}")

    def test_config_still_catches_problems(self):
        # The relaxed config must keep real errors: a duplicated key and trailing spaces.
        result = self.lint(["-"], stdin="a: 1\na: 2  \n")
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertIn("key-duplicates", result.stdout)
        self.assertIn("trailing-spaces", result.stdout)


if __name__ == "__main__":
    common.parse_args(__doc__)
    unittest.main()
