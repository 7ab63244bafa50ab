"""Offline checks of deploy/k8s and the FPGA overlay deploy/fpga/k8s: kubernetes-validate
(schema of Kubernetes 1.31, strict) on every manifest and on the overlay's patched Deployment, and
the cross-references a schema cannot see (selectors, port names, probes, drain timing, HPA metric
served by the prometheus-adapter rule, server flags)."""

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

import deploy_common as common

K8S_VERSION = "1.31.0"
SESSIONS_METRIC = "sluice_sessions_active"


def kubernetes_validate():
    path = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} not found (pip kubernetes-validate; scripts/setup.sh)")
    return path


# Merge keys of the lists a strategic-merge patch merges by element (others are replaced).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "ports": "containerPort", "tolerations": None}


def normalized(value, key=None):
    """`value` with the lists that have a merge key sorted by it (kustomize puts patched-in
    elements first; the order of containers, volumes, mounts and env does not matter)."""
    if isinstance(value, dict):
        return {k: normalized(v, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalized(v) for v in value]
        if MERGE_KEYS.get(key):
            items.sort(key=lambda item: str(item.get(MERGE_KEYS[key])))
        return items
    return value


def strategic_merge(base, patch, key=None):
    """A strategic-merge patch as kustomize applies it for the fields deploy/fpga/k8s uses:
    maps merge, lists with a merge key merge by it, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = strategic_merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and MERGE_KEYS.get(key):
        merge_key = MERGE_KEYS[key]
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            match = [i for i, b in enumerate(out) if b.get(merge_key) == item.get(merge_key)]
            if match:
                out[match[0]] = strategic_merge(out[match[0]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


class Manifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.validator = kubernetes_validate()
        cls.folder = common.deploy_path("k8s")
        cls.kustomization = common.load_yaml(os.path.join(cls.folder, "kustomization.yaml"))
        cls.resources = {}  # (kind, name) -> document
        for name in cls.kustomization["resources"]:
            for doc in common.load_yaml_docs(os.path.join(cls.folder, name)):
                cls.resources[(doc["kind"], doc["metadata"]["name"])] = doc
        cls.flags = common.server_flags(common.ARGS.server) if common.ARGS.server else None

    def validate(self, path):
        """kubernetes-validate --strict; every document must have a schema and pass."""
        result = subprocess.run([self.validator, "-k", K8S_VERSION, "--strict", path],
                                capture_output=True, text=True, timeout=300)
        out = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, f"{path}:\n{out}")
        self.assertNotIn("Couldn't find schema", out, f"{path}:\n{out}")
        self.assertEqual(out.count(" passed for resource "), len(common.load_yaml_docs(path)),
                         f"{path}:\n{out}")

    def one(self, kind):
        docs = [d for (k, _), d in self.resources.items() if k == kind]
        self.assertEqual(len(docs), 1, f"expected one {kind}")
        return docs[0]

    # --- the files -----------------------------------------------------------------------------

    def test_kustomization_lists_every_manifest(self):
        listed = set(self.kustomization["resources"])
        present = {os.path.basename(p) for p in common.yaml_files(self.folder)}
        present.discard("kustomization.yaml")
        self.assertEqual(listed, present)

    def test_every_manifest_validates(self):
        for name in self.kustomization["resources"]:
            with self.subTest(manifest=name):
                self.validate(os.path.join(self.folder, name))

    def test_validator_rejects_a_bad_manifest(self):
        # The check can fail: an unknown field and a wrong type are errors in --strict mode.
        bad = copy.deepcopy(self.one("Deployment"))
        bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/"
        bad["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "long"
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump(bad, f)
            f.flush()
            result = subprocess.run([self.validator, "-k", K8S_VERSION, "--strict", f.name],
                                    capture_output=True, text=True, timeout=300)
        self.assertNotEqual(result.returncode, 0, result.stdout)

    # --- the Deployment ------------------------------------------------------------------------

    def check_deployment(self, deployment):
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        for k, v in spec["selector"]["matchLabels"].items():
            self.assertEqual(labels.get(k), v, "the selector does not match the pod labels")
        self.assertNotIn("replicas", spec, "the HPA owns replicas")
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(ports, {"grpc": 8001, "http": 8000})
        args = common.flag_values(container["command"][1:] + container["args"])
        self.assertEqual(container["command"][0], "sluice-server")
        self.assertEqual(int(args.get("grpc_port", 8001)), 8001)
        self.assertEqual(int(args.get("http_port", 8000)), 8000)
        if self.flags is not None:
            unknown = set(args) - self.flags
            self.assertFalse(unknown, f"sluice-server has no flags {sorted(unknown)}")
        # Probes on the admin port.
        self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/readyz")
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertIn(container[probe]["httpGet"]["port"], ("http", 8000))
        # Drain: SIGTERM comes after preStop; SIGKILL after terminationGracePeriodSeconds.
        self.assertIn("drain_timeout_s", args, "set --drain_timeout_s explicitly")
        drain = int(args["drain_timeout_s"])
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
        sleep = int(pre_stop.get("seconds", 0))
        grace = int(pod["terminationGracePeriodSeconds"])
        self.assertGreaterEqual(grace, sleep + drain + 5,
                                f"grace {grace}s < preStop {sleep}s + drain {drain}s + 5s margin")
        # Resources and a non-root, read-only container.
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                self.assertIn(resource, container["resources"][kind])
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertNotEqual(pod["securityContext"].get("runAsUser", 0), 0)
        csc = container["securityContext"]
        self.assertFalse(csc["allowPrivilegeEscalation"])
        self.assertTrue(csc["readOnlyRootFilesystem"])
        self.assertEqual(csc["capabilities"]["drop"], ["ALL"])
        # A read-only root needs a writable /tmp for the caches HOME and POCL_CACHE_DIR point to.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"] for v in pod["volumes"]}
        self.assertIn("/tmp", mounts)
        self.assertTrue(set(mounts.values()) <= volumes, "a volumeMount names no volume")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        for name in ("HOME", "POCL_CACHE_DIR"):
            self.assertTrue(env.get(name, "").startswith("/tmp"), f"{name} outside /tmp")
        return container, args

    def test_deployment(self):
        self.check_deployment(self.one("Deployment"))

    # --- Services, HPA, PDB, adapter -----------------------------------------------------------

    def test_services_select_the_pods_and_name_their_ports(self):
        deployment = self.one("Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        container_ports = {p["name"]: p["containerPort"]
                           for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
        services = [d for (k, _), d in self.resources.items() if k == "Service"]
        self.assertGreaterEqual(len(services), 1)
        grpc_seen = http_seen = False
        for service in services:
            for k, v in service["spec"]["selector"].items():
                self.assertEqual(labels.get(k), v, service["metadata"]["name"])
            for port in service["spec"]["ports"]:
                self.assertIn(port["targetPort"], container_ports, port)
                if container_ports[port["targetPort"]] == 8001:
                    self.assertEqual(port.get("appProtocol"), "grpc", port)
                    grpc_seen = True
                if container_ports[port["targetPort"]] == 8000:
                    http_seen = True
        self.assertTrue(grpc_seen and http_seen, "Services for gRPC 8001 and HTTP 8000")

    def test_hpa_scales_the_deployment_on_sessions(self):
        hpa = self.one("HorizontalPodAutoscaler")
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        deployment = self.one("Deployment")
        target = hpa["spec"]["scaleTargetRef"]
        self.assertEqual((target["kind"], target["name"]),
                         ("Deployment", deployment["metadata"]["name"]))
        metrics = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        self.assertEqual([m["pods"]["metric"]["name"] for m in metrics], [SESSIONS_METRIC])
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2, "one pod cannot be drained safely")

    def test_pdb_covers_the_pods(self):
        pdb = self.one("PodDisruptionBudget")
        labels = self.one("Deployment")["spec"]["template"]["metadata"]["labels"]
        for k, v in pdb["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(labels.get(k), v)
        self.assertTrue("maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"])

    def test_prometheus_adapter_serves_the_hpa_metric(self):
        (config_map,) = [d for (k, _), d in self.resources.items()
                         if k == "ConfigMap" and "prometheus-adapter" in d["metadata"]["name"]]
        self.assertIn("config.yaml", config_map["data"])
        config = yaml.safe_load(config_map["data"]["config.yaml"])
        served = {}
        for rule in config["rules"]:
            series = re.match(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)", rule["seriesQuery"]).group(1)
            name = series
            if "name" in rule:
                self.assertRegex(series, rule["name"]["matches"])
                name = re.sub(rule["name"]["matches"], rule["name"].get("as", ""), series)
            served[name] = rule
        self.assertIn(SESSIONS_METRIC, served)
        rule = served[SESSIONS_METRIC]
        self.assertTrue(rule["seriesQuery"].startswith(SESSIONS_METRIC))
        # Per-pod values: the series map to namespace and pod objects.
        overrides = rule["resources"]["overrides"]
        self.assertEqual(overrides["namespace"]["resource"], "namespace")
        self.assertEqual(overrides["pod"]["resource"], "pod")
        for part in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
            self.assertIn(part, rule["metricsQuery"])

    # --- the FPGA overlay ----------------------------------------------------------------------

    def overlay_deployment(self):
        folder = common.deploy_path("fpga", "k8s")
        kustomization = common.load_yaml(os.path.join(folder, "kustomization.yaml"))
        self.assertEqual(kustomization["resources"], ["../../k8s"])
        deployment = copy.deepcopy(self.one("Deployment"))
        for patch in kustomization["patches"]:
            (doc,) = common.load_yaml_docs(os.path.join(folder, patch["path"]))
            self.assertEqual((doc["kind"], doc["metadata"]["name"]),
                             ("Deployment", deployment["metadata"]["name"]))
            deployment = strategic_merge(deployment, doc)
        for image in kustomization.get("images", []):
            for c in deployment["spec"]["template"]["spec"]["containers"]:
                if c["image"].split(":")[0] == image["name"]:
                    c["image"] = f"{image.get('newName', image['name'])}:{image.get('newTag')}"
        return deployment

    def test_fpga_overlay(self):
        deployment = self.overlay_deployment()
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump(deployment, f)
            f.flush()
            self.validate(f.name)
        container, args = self.check_deployment(deployment)
        fpga = [r for r in container["resources"]["limits"] if r.startswith("fpga.intel.com/")]
        self.assertEqual(len(fpga), 1, "one Intel FPGA device plugin resource")
        self.assertEqual(int(container["resources"]["limits"][fpga[0]]), 1)
        self.assertIn(args.get("backend"), ("auto", "opencl"))
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        self.assertIn(args["model_repository"], mounts, "the FPGA model repository is mounted")
        self.assertEqual(container["image"], "sluice-fpga:latest")

    @unittest.skipIf(shutil.which("kubectl") is None, "kubectl (kustomize) not installed")
    def test_kustomize_builds(self):
        # Where kubectl is present, the real kustomize renders both trees and they validate.
        for folder in (common.deploy_path("k8s"), common.deploy_path("fpga", "k8s")):
            with self.subTest(folder=folder):
                result = subprocess.run(["kubectl", "kustomize", folder], capture_output=True,
                                        text=True, timeout=120)
                self.assertEqual(result.returncode, 0, result.stderr)
                with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                    f.write(result.stdout)
                    f.flush()
                    self.validate(f.name)
                docs = list(yaml.safe_load_all(result.stdout))
                if folder.endswith(os.path.join("fpga", "k8s")):
                    (rendered,) = [d for d in docs if d["kind"] == "Deployment"]
                    ours = self.overlay_deployment()
                    # The stand-in merge above must agree with kustomize on the pod spec.
                    self.assertEqual(normalized(rendered["spec"]["template"]["spec"]),
                                     normalized(ours["spec"]["template"]["spec"]))


if __name__ == "__main__":
    common.parse_args(__doc__)
    unittest.main()
