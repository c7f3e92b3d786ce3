"""Offline checks of the Helm chart helm/clipd: no helm binary, docker or cluster.

Run with scripts/test-chart.sh (which makes the .venv-tools virtualenv). It lints the chart and
renders it with helm-python-sdk (Helm 4's library) for several value sets, checks what each
rendering must hold, checks that values.schema.json rejects typos, and validates every rendered
manifest with `kubernetes-validate --strict` against Kubernetes 1.31's schemas.

    python tests/helm/test_chart.py             # every test
    python tests/helm/test_chart.py -k tls      # tests whose name contains "tls"
"""

import base64
import copy
import json
import os
import subprocess
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "clipd"
KUBE_VERSION = "1.31.0"
RELEASE, NAMESPACE = "demo", "ml"
FULLNAME = f"{RELEASE}-clipd"

# clipd's settings sections (src/config.rs; auth and tls for the security settings).
KNOWN_SECTIONS = {
    "server", "model", "batching", "limits", "classify", "classifiers", "index", "metrics",
    "auth", "tls",
}
# Custom resources: kubernetes-validate bundles only Kubernetes' own schemas.
NO_BUNDLED_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor")}

FAKE_CERT = "-----BEGIN CERTIFICATE-----\nMIIBfakeServerCert\n-----END CERTIFICATE-----\n"
FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIBfakeServerKey\n-----END PRIVATE KEY-----\n"
FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfakeClientCA\n-----END CERTIFICATE-----\n"
READ_KEY, WRITE_KEY, HF_TOKEN = "read-key-0123456789", "write-key-9876543210", "hf_faketoken42"
MILVUS_TOKEN = "root:fake-milvus-password"
MILVUS_URL = "https://milvus.vector-db.svc:19530"

VALUE_SETS = {
    "defaults": {},
    # A GPU node pool, a hub model with a persistent cache, a hub token from values.
    "gpu_hub": {
        "image": {"tag": "0.1.0-cuda"},
        "gpu": {"enabled": True, "count": 1},
        "model": {
            "source": "openai/clip-vit-base-patch32",
            "device": "cuda",
            "dtype": "f16",
            "hub": {"endpoint": "https://hf-mirror.example.com", "token": {"value": HF_TOKEN}},
        },
        "cache": {"persistence": {"enabled": True, "size": "20Gi", "storageClass": "fast"}},
        "updateStrategy": {"type": "Recreate"},  # a ReadWriteOnce cache claim
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}},
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "config": {"batching": {"max_batch_size": 64, "max_delay_ms": 10}},
    },
    # Everything on: persistent collections, API keys, mutual TLS, monitoring, scaling, policies.
    "full": {
        "replicaCount": 2,
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}},
        "persistence": {"enabled": True, "size": "50Gi", "storageClass": "ssd"},
        "auth": {"enabled": True, "readKeys": [READ_KEY], "writeKeys": [WRITE_KEY]},
        "tls": {"enabled": True, "clientAuth": True, "cert": FAKE_CERT, "key": FAKE_KEY,
                "clientCA": FAKE_CA},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                    "dashboard": {"enabled": True, "namespace": "monitoring"}},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6,
                        "targetMemoryUtilizationPercentage": 80},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
        "networkPolicy": {
            "enabled": True,
            "grpcFrom": [{"namespaceSelector": {"matchLabels": {"team": "search"}}}],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        },
        "tests": {"clientCertSecret": "clipd-test-client"},
        "config": {
            "classify": {"cache_bytes": 67108864},
            "index": {"snapshot_interval_s": 60},
            "auth": {"reload_interval_ms": 10000},
            "classifiers": {"moderation": {
                "labels": ["a safe, everyday photo", "nudity", "graphic violence"],
                "template_set": "imagenet",
                "thresholds": {"nudity": 0.5, "graphic violence": 0.5},
            }},
        },
    },
    # A checkpoint directory on an existing claim; no network needed.
    "pvc_model": {
        "model": {"existingClaim": "clip-models", "subPath": "clip-vit-large-patch14",
                  "hub": {"offline": True}},
    },
    # Secrets that exist already (e.g. from cert-manager or an operator): the chart makes none.
    "existing_secrets": {
        "auth": {"enabled": True, "existingSecret": "clipd-keys"},
        "tls": {"enabled": True, "existingSecret": "clipd-cert"},
        "model": {"source": "openai/clip-vit-base-patch32",
                  "hub": {"token": {"existingSecret": "hf", "key": "HF_TOKEN"}}},
        "cache": {"persistence": {"enabled": True, "existingClaim": "hf-cache"}},
        "probes": {"mode": "http"},
    },
    # Collections in Milvus, production-style: the token and CA from existing objects, scaled by
    # an HPA (every RPC, Search and Collections included).
    "milvus": {
        "config": {"index": {"backend": "milvus", "milvus": {
            "url": MILVUS_URL, "database": "search", "collection_prefix": "prod_",
            "consistency": "strong", "request_timeout_ms": 5000, "health_interval_ms": 1000}}},
        "milvus": {"token": {"existingSecret": "milvus-clipd", "key": "password"},
                   "ca": {"existingConfigMap": "milvus-ca"}},
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 10},
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    },
    # Collections in a development Milvus: a plain-text URL, the token from values.
    "milvus_dev": {
        "replicaCount": 2,
        "config": {"index": {"backend": "milvus",
                             "milvus": {"url": "http://milvus.dev.svc:19530"}}},
        "milvus": {"token": {"value": MILVUS_TOKEN}},
    },
}


def render(values, **kwargs):
    """The chart rendered offline: {template path: text}."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True, **kwargs)


def documents(rendered):
    """Every non-empty manifest: (template path, parsed document)."""
    out = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def find(docs, kind, name=None):
    found = [d for _, d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    return found


def one(docs, kind, name=None):
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def workload(docs):
    found = find(docs, "Deployment") + find(docs, "StatefulSet")
    assert len(found) == 1, f"expected one workload, found {[d['kind'] for d in found]}"
    return found[0]


def clipd_container(work):
    (container,) = [c for c in work["spec"]["template"]["spec"]["containers"] if c["name"] == "clipd"]
    return container


def clipd_settings(docs):
    cm = one(docs, "ConfigMap", FULLNAME)
    return yaml.safe_load(cm["data"]["clipd.yaml"]), cm


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def mounts_of(container):
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def volumes_of(work):
    return {v["name"]: v for v in work["spec"]["template"]["spec"].get("volumes", [])}


def files_of(volume):
    """The file names a Secret, ConfigMap or projected volume lays out: {path: (kind, name, key)}."""
    sources = volume["projected"]["sources"] if "projected" in volume else [volume]
    files = {}
    for source in sources:
        for kind in ("secret", "configMap"):
            if kind in source:
                name = source[kind].get("secretName", source[kind].get("name"))
                for item in source[kind]["items"]:
                    files[item["path"]] = (kind, name, item["key"])
    return files


def backend(name):
    return VALUE_SETS[name].get("config", {}).get("index", {}).get("backend", "embedded")


def with_overrides(name, extra):
    values = copy.deepcopy(VALUE_SETS[name])
    for key, value in extra.items():
        values[key] = value
    return values


class Lint(unittest.TestCase):
    def test_lint_every_value_set(self):
        for name, values in VALUE_SETS.items():
            with self.subTest(values=name):
                report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE,
                                   kube_version=f"v{KUBE_VERSION}")
                problems = [m for m in report["messages"] if m["severity"] >= 2]
                self.assertEqual(report["errors"], [], report)
                self.assertEqual(problems, [], report)

    def test_chart_metadata(self):
        chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
        self.assertEqual(chart["apiVersion"], "v2")
        self.assertEqual(chart["appVersion"], "0.1.0")


class Renders(unittest.TestCase):
    """Properties every value set's rendering must have."""

    @classmethod
    def setUpClass(cls):
        cls.rendered = {name: render(values) for name, values in VALUE_SETS.items()}
        cls.docs = {name: documents(r) for name, r in cls.rendered.items()}

    def each(self):
        for name, docs in self.docs.items():
            with self.subTest(values=name):
                yield name, docs

    def test_config_is_yaml_with_known_sections_and_computed_keys(self):
        for name, docs in self.each():
            settings, _ = clipd_settings(docs)
            self.assertIsInstance(settings, dict)
            self.assertLessEqual(set(settings), KNOWN_SECTIONS)
            self.assertEqual(settings["server"]["grpc_addr"], "0.0.0.0:50051")
            self.assertEqual(settings["metrics"], {"enabled": True, "addr": "0.0.0.0:9090"})
            if backend(name) == "embedded":
                self.assertEqual(settings["index"]["data_dir"], "/var/lib/clipd")
            else:
                self.assertNotIn("data_dir", settings["index"])

    def test_no_key_material_in_configmaps(self):
        for name, docs in self.each():
            for cm in find(docs, "ConfigMap"):
                text = yaml.safe_dump(cm)
                for secret in ("BEGIN CERTIFICATE", "PRIVATE KEY", READ_KEY, WRITE_KEY, HF_TOKEN,
                               MILVUS_TOKEN):
                    self.assertNotIn(secret, text, cm["metadata"]["name"])

    def test_settings_files_are_mounted(self):
        """Every file clipd.yaml names lies on a volume from the right place."""
        for name, docs in self.each():
            settings, _ = clipd_settings(docs)
            work = workload(docs)
            container = clipd_container(work)
            mounts = mounts_of(container)
            volumes = volumes_of(work)
            claim_templates = {t["metadata"]["name"] for t in work["spec"].get("volumeClaimTemplates", [])}
            for mount in container["volumeMounts"]:
                self.assertTrue(mount["name"] in volumes or mount["name"] in claim_templates, mount)
            self.assertEqual(mounts["/etc/clipd/clipd.yaml"]["subPath"], "clipd.yaml")
            self.assertEqual(volumes[mounts["/etc/clipd/clipd.yaml"]["name"]]["configMap"]["name"], FULLNAME)
            # The embedded store's collections; Milvus keeps them outside the pod.
            self.assertEqual("/var/lib/clipd" in mounts, backend(name) == "embedded")
            self.assertIn("/cache", mounts)
            self.assertIn("/tmp", mounts)
            sections = [settings.get("auth", {}), settings.get("tls", {}),
                        settings["index"].get("milvus", {})]
            for section in sections:
                files = {k: v for k, v in section.items() if k.endswith("_file")}
                for key, path in files.items():
                    mount = mounts[str(Path(path).parent)]
                    self.assertTrue(mount["readOnly"])
                    self.assertIn(Path(path).name, files_of(volumes[mount["name"]]), key)
            source = settings["model"].get("source", "")
            if source.startswith("/models"):
                self.assertTrue(mounts["/models"]["readOnly"])

    def test_pod_security(self):
        for name, docs in self.each():
            work = workload(docs)
            pod = work["spec"]["template"]["spec"]
            self.assertTrue(pod["securityContext"]["runAsNonRoot"])
            self.assertFalse(pod["automountServiceAccountToken"])
            sc = clipd_container(work)["securityContext"]
            self.assertTrue(sc["readOnlyRootFilesystem"])
            self.assertFalse(sc["allowPrivilegeEscalation"])
            self.assertEqual(sc["capabilities"]["drop"], ["ALL"])

    def test_graceful_shutdown(self):
        for name, docs in self.each():
            settings, _ = clipd_settings(docs)
            work = workload(docs)
            grace_ms = settings["server"].get("shutdown_grace_ms", 30000)
            pod = work["spec"]["template"]["spec"]
            pre_stop = clipd_container(work)["lifecycle"]["preStop"]["exec"]["command"]
            self.assertEqual(pre_stop[0], "sleep")
            self.assertGreater(pod["terminationGracePeriodSeconds"] * 1000,
                               grace_ms + int(pre_stop[1]) * 1000)

    def test_probes_follow_tls(self):
        for name, docs in self.each():
            settings, _ = clipd_settings(docs)
            container = clipd_container(workload(docs))
            self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/livez")
            self.assertGreaterEqual(container["startupProbe"]["failureThreshold"]
                                    * container["startupProbe"]["periodSeconds"], 300)
            if "tls" in settings:
                for probe in ("startupProbe", "readinessProbe"):
                    self.assertEqual(container[probe]["httpGet"], {"path": "/readyz", "port": "metrics"})
            elif VALUE_SETS[name].get("probes", {}).get("mode") != "http":
                for probe in ("startupProbe", "readinessProbe"):
                    self.assertEqual(container[probe]["grpc"], {"port": 50051})

    def test_service(self):
        for name, docs in self.each():
            service = one(docs, "Service", FULLNAME)
            ports = {p["name"]: p for p in service["spec"]["ports"]}
            self.assertEqual(ports["grpc"]["port"], 50051)
            self.assertEqual(ports["grpc"]["appProtocol"], "grpc")
            self.assertEqual(ports["metrics"]["port"], 9090)

    def test_selectors_match_only_server_pods(self):
        """The helm test pod is not one of the server's pods (Service, HPA, PDB, policy)."""
        for name, docs in self.each():
            selector = workload(docs)["spec"]["selector"]["matchLabels"]
            test_pod = one(docs, "Pod", f"{FULLNAME}-test-health")
            labels = test_pod["metadata"]["labels"]
            self.assertFalse(all(labels.get(k) == v for k, v in selector.items()), labels)
            self.assertEqual(one(docs, "Service", FULLNAME)["spec"]["selector"], selector)
            template_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
            self.assertTrue(all(template_labels.get(k) == v for k, v in selector.items()))

    def test_helm_test_hook_calls_health(self):
        for name, docs in self.each():
            pod = one(docs, "Pod", f"{FULLNAME}-test-health")
            self.assertEqual(pod["metadata"]["annotations"]["helm.sh/hook"], "test")
            services = []
            for container in pod["spec"]["containers"]:
                self.assertIn("grpc-health-probe", container["image"])
                args = container["args"]
                self.assertIn(f"-addr={FULLNAME}:50051", args)
                services += [a.split("=", 1)[1] for a in args if a.startswith("-service=")]
                self.assertEqual("-tls" in args, "tls" in clipd_settings(docs)[0])
            self.assertEqual(services, ["", "clipd.v1.Clip", "clipd.v1.Collections"])

    def test_defaults(self):
        docs = self.docs["defaults"]
        work = workload(docs)
        self.assertEqual(work["kind"], "Deployment")
        self.assertEqual(work["spec"]["replicas"], 1)
        self.assertEqual(volumes_of(work)["data"], {"name": "data", "emptyDir": {}})
        settings, _ = clipd_settings(docs)
        self.assertNotIn("source", settings["model"])  # the bundled demo model
        self.assertNotIn("auth", settings)
        self.assertNotIn("tls", settings)
        for kind in ("Secret", "PersistentVolumeClaim", "HorizontalPodAutoscaler", "ServiceMonitor",
                     "PodDisruptionBudget", "NetworkPolicy", "StatefulSet"):
            self.assertEqual(find(docs, kind), [], kind)
        self.assertEqual([d["metadata"]["name"] for d in find(docs, "ConfigMap")], [FULLNAME])
        annotations = work["spec"]["template"]["metadata"]["annotations"]
        self.assertRegex(annotations["checksum/config"], "^[0-9a-f]{64}$")
        env = env_of(clipd_container(work))
        self.assertEqual(env["XDG_CACHE_HOME"]["value"], "/cache")
        self.assertEqual(env["HF_HOME"]["value"], "/cache/huggingface")

    def test_gpu_hub(self):
        docs = self.docs["gpu_hub"]
        settings, _ = clipd_settings(docs)
        self.assertEqual(settings["model"], {"source": "openai/clip-vit-base-patch32",
                                             "device": "cuda", "dtype": "f16"})
        self.assertEqual(settings["batching"], {"max_batch_size": 64, "max_delay_ms": 10})
        work = workload(docs)
        self.assertEqual(work["kind"], "Deployment")
        self.assertEqual(work["spec"]["strategy"], {"type": "Recreate"})
        container = clipd_container(work)
        self.assertEqual(container["image"], "clipd:0.1.0-cuda")
        self.assertEqual(container["resources"]["limits"], {"memory": "16Gi", "nvidia.com/gpu": 1})
        pod = work["spec"]["template"]["spec"]
        self.assertEqual(pod["nodeSelector"], {"nvidia.com/gpu.present": "true"})
        self.assertEqual(pod["tolerations"][0]["key"], "nvidia.com/gpu")
        env = env_of(container)
        self.assertEqual(env["HF_ENDPOINT"]["value"], "https://hf-mirror.example.com")
        self.assertNotIn("HF_HUB_OFFLINE", env)
        token_ref = env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
        secret = one(docs, "Secret", token_ref["name"])
        self.assertIn(token_ref["key"], secret["data"])
        pvc = one(docs, "PersistentVolumeClaim", f"{FULLNAME}-cache")
        self.assertEqual(pvc["spec"]["resources"]["requests"]["storage"], "20Gi")
        self.assertEqual(pvc["spec"]["storageClassName"], "fast")
        cache = volumes_of(work)[mounts_of(container)["/cache"]["name"]]
        self.assertEqual(cache["persistentVolumeClaim"]["claimName"], f"{FULLNAME}-cache")

    def test_full(self):
        docs = self.docs["full"]
        settings, _ = clipd_settings(docs)
        self.assertEqual(settings["auth"], {"read_keys_file": "/etc/clipd/auth/read.keys",
                                            "write_keys_file": "/etc/clipd/auth/write.keys",
                                            "reload_interval_ms": 10000})
        self.assertEqual(settings["tls"], {"cert_file": "/etc/clipd/tls/tls.crt",
                                           "key_file": "/etc/clipd/tls/tls.key",
                                           "client_ca_file": "/etc/clipd/tls/ca.crt"})
        # Large integers stay integers (no 6.7108864e+07 from Helm's float64 values).
        self.assertEqual(settings["classify"]["cache_bytes"], 67108864)
        self.assertEqual(settings["classifiers"]["moderation"]["template_set"], "imagenet")

        work = workload(docs)
        self.assertEqual(work["kind"], "StatefulSet")
        self.assertNotIn("replicas", work["spec"])  # the HPA decides
        self.assertEqual(work["spec"]["serviceName"], f"{FULLNAME}-headless")
        one(docs, "Service", f"{FULLNAME}-headless")
        (claim,) = work["spec"]["volumeClaimTemplates"]
        self.assertEqual(claim["metadata"]["name"], "data")
        self.assertEqual(claim["spec"]["resources"]["requests"]["storage"], "50Gi")
        self.assertNotIn("data", volumes_of(work))

        auth = one(docs, "Secret", f"{FULLNAME}-auth")
        self.assertEqual(auth["stringData"]["read.keys"].split(), [READ_KEY])
        self.assertEqual(auth["stringData"]["write.keys"].split(), [WRITE_KEY])
        tls = one(docs, "Secret", f"{FULLNAME}-tls")
        self.assertEqual(tls["type"], "kubernetes.io/tls")
        self.assertEqual(set(tls["data"]), {"tls.crt", "tls.key", "ca.crt"})

        hpa = one(docs, "HorizontalPodAutoscaler")
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["kind"], "StatefulSet")
        self.assertEqual([m["resource"]["name"] for m in hpa["spec"]["metrics"]], ["cpu", "memory"])

        monitor = one(docs, "ServiceMonitor")
        self.assertEqual(monitor["spec"]["endpoints"][0]["port"], "metrics")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "prometheus")
        # The headless Service is not scraped twice.
        self.assertEqual(monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"], "server")

        dashboard = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
        self.assertEqual(dashboard["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(dashboard["metadata"]["namespace"], "monitoring")
        board = json.loads(dashboard["data"]["clipd.json"])
        exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
        for metric in ("clipd_requests_total", "clipd_request_duration_seconds_bucket",
                       "clipd_queue_wait_seconds_bucket", "clipd_model_batch_seconds_bucket",
                       "clipd_batch_size_sum", "clipd_queue_depth", "clipd_inputs_rejected_total",
                       "clipd_inputs_expired_total", "clipd_inputs_cancelled_total",
                       "clipd_classify_cache_hits_total", "clipd_classify_cache_misses_total",
                       "clipd_index_items", "clipd_search_duration_seconds_bucket",
                       "clipd_build_info"):
            self.assertIn(metric, exprs)
        self.assert_promql_parses([t["expr"] for p in board["panels"]
                                   for t in p.get("targets", [])])

        self.assertEqual(one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"], 1)
        policy = one(docs, "NetworkPolicy")
        grpc_rule, metrics_rule = policy["spec"]["ingress"]
        self.assertEqual(grpc_rule["ports"][0]["port"], "grpc")
        self.assertEqual(len(grpc_rule["from"]), 2)  # the given peer and the helm test pod
        self.assertEqual(metrics_rule["ports"][0]["port"], "metrics")

        test_pod = one(docs, "Pod", f"{FULLNAME}-test-health")
        self.assertEqual(test_pod["spec"]["volumes"][0]["secret"]["secretName"], "clipd-test-client")
        self.assertIn("-tls-client-cert=/etc/clipd-test/tls/tls.crt", test_pod["spec"]["containers"][0]["args"])
        self.assertIn("own collections", self.rendered["full"]["clipd/templates/NOTES.txt"])

    def assert_promql_parses(self, exprs):
        """`promtool check rules` on the queries, Grafana's variables filled in."""
        fill = {"$namespace": ".*", "$job": ".*", "$__rate_interval": "1m"}
        rules = []
        for i, expr in enumerate(exprs):
            for variable, value in fill.items():
                expr = expr.replace(variable, value)
            rules.append({"record": f"clipd:dashboard_query_{i}", "expr": expr})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rules.yaml"
            path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
            checked = subprocess.run(["promtool", "check", "rules", str(path)],
                                     capture_output=True, text=True)
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)

    def test_pvc_model(self):
        docs = self.docs["pvc_model"]
        settings, _ = clipd_settings(docs)
        self.assertEqual(settings["model"]["source"], "/models/clip-vit-large-patch14")
        work = workload(docs)
        container = clipd_container(work)
        self.assertTrue(mounts_of(container)["/models"]["readOnly"])
        models = volumes_of(work)["models"]["persistentVolumeClaim"]
        self.assertEqual(models, {"claimName": "clip-models", "readOnly": True})
        self.assertEqual(env_of(container)["HF_HUB_OFFLINE"]["value"], "1")

    def test_existing_secrets(self):
        docs = self.docs["existing_secrets"]
        self.assertEqual(find(docs, "Secret"), [])
        self.assertEqual(find(docs, "PersistentVolumeClaim"), [])
        work = workload(docs)
        volumes = volumes_of(work)
        self.assertEqual(volumes["auth"]["secret"]["secretName"], "clipd-keys")
        self.assertEqual(volumes["tls"]["secret"]["secretName"], "clipd-cert")
        self.assertEqual(volumes["cache"]["persistentVolumeClaim"]["claimName"], "hf-cache")
        settings, _ = clipd_settings(docs)
        self.assertNotIn("client_ca_file", settings["tls"])
        token = env_of(clipd_container(work))["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
        self.assertEqual(token, {"name": "hf", "key": "HF_TOKEN"})

    def test_milvus(self):
        docs = self.docs["milvus"]
        settings, _ = clipd_settings(docs)
        self.assertEqual(settings["index"], {"backend": "milvus", "milvus": {
            "url": MILVUS_URL, "database": "search", "collection_prefix": "prod_",
            "consistency": "strong", "request_timeout_ms": 5000, "health_interval_ms": 1000,
            "token_file": "/etc/clipd/milvus/token", "ca_file": "/etc/clipd/milvus/ca.pem"}})

        # Stateless: a Deployment with no claim and no collections volume of any kind.
        work = workload(docs)
        self.assertEqual(work["kind"], "Deployment")
        self.assertNotIn("replicas", work["spec"])  # the HPA decides
        self.assertNotIn("volumeClaimTemplates", work["spec"])
        self.assertNotIn("data", volumes_of(work))
        self.assertEqual(find(docs, "PersistentVolumeClaim"), [])
        self.assertEqual(find(docs, "Service", f"{FULLNAME}-headless"), [])

        hpa = one(docs, "HorizontalPodAutoscaler")
        self.assertEqual(hpa["spec"]["scaleTargetRef"],
                         {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME})
        self.assertEqual((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), (2, 10))
        self.assertEqual(one(docs, "PodDisruptionBudget")["spec"]["minAvailable"], 1)

        # Existing objects: the chart makes no Secret and mounts theirs.
        self.assertEqual(find(docs, "Secret"), [])
        container = clipd_container(work)
        self.assertTrue(mounts_of(container)["/etc/clipd/milvus"]["readOnly"])
        milvus = volumes_of(work)[mounts_of(container)["/etc/clipd/milvus"]["name"]]
        self.assertEqual(files_of(milvus), {"token": ("secret", "milvus-clipd", "password"),
                                            "ca.pem": ("configMap", "milvus-ca", "ca.crt")})

        notes = self.rendered["milvus"]["clipd/templates/NOTES.txt"]
        self.assertIn(f"Collections live in Milvus at {MILVUS_URL} (database search, names prefixed prod_)",
                      notes)
        self.assertNotIn("emptyDir", notes)
        self.assertNotIn("own collections", notes)

    def test_milvus_dev(self):
        docs = self.docs["milvus_dev"]
        settings, cm = clipd_settings(docs)
        self.assertEqual(settings["index"]["milvus"], {"url": "http://milvus.dev.svc:19530",
                                                       "token_file": "/etc/clipd/milvus/token"})
        work = workload(docs)
        self.assertEqual(work["kind"], "Deployment")
        self.assertEqual(work["spec"]["replicas"], 2)
        self.assertEqual(find(docs, "HorizontalPodAutoscaler"), [])
        secret = one(docs, "Secret", f"{FULLNAME}-milvus-token")
        self.assertEqual(base64.b64decode(secret["data"]["token"]).decode(), MILVUS_TOKEN)
        milvus = volumes_of(work)[mounts_of(clipd_container(work))["/etc/clipd/milvus"]["name"]]
        self.assertEqual(files_of(milvus), {"token": ("secret", f"{FULLNAME}-milvus-token", "token")})
        self.assertNotIn(MILVUS_TOKEN, yaml.safe_dump(cm))
        notes = self.rendered["milvus_dev"]["clipd/templates/NOTES.txt"]
        self.assertIn("every pod serves the same ones", notes)
        self.assertNotIn("independent collections", notes)

    def test_milvus_without_token(self):
        """Milvus without authorization: no token file, no volume for it."""
        values = {"config": {"index": {"backend": "milvus",
                                       "milvus": {"url": "http://milvus:19530"}}}}
        docs = documents(render(values))
        settings, _ = clipd_settings(docs)
        self.assertEqual(settings["index"], {"backend": "milvus",
                                             "milvus": {"url": "http://milvus:19530"}})
        self.assertNotIn("/etc/clipd/milvus", mounts_of(clipd_container(workload(docs))))
        self.assertEqual(find(docs, "Secret"), [])

    def test_explicit_embedded_backend_renders_as_the_default(self):
        """Naming the embedded store changes clipd.yaml's index.backend, nothing else."""
        def normalised(values):
            docs = documents(render(values))
            settings, cm = clipd_settings(docs)
            settings["index"].pop("backend", None)
            cm["data"]["clipd.yaml"] = yaml.safe_dump(settings)
            workload(docs)["spec"]["template"]["metadata"]["annotations"].pop("checksum/config")
            return docs
        for name in ("defaults", "full"):
            with self.subTest(values=name):
                explicit = copy.deepcopy(VALUE_SETS[name])
                explicit.setdefault("config", {}).setdefault("index", {})["backend"] = "embedded"
                self.assertEqual(normalised(explicit), normalised(VALUE_SETS[name]))

    def test_several_replicas_without_persistence_warns(self):
        notes = render({"replicaCount": 3})["clipd/templates/NOTES.txt"]
        self.assertIn("independent collections", notes)

    def test_config_change_rolls_pods(self):
        def checksum(values):
            work = workload(documents(render(values)))
            return work["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        self.assertNotEqual(checksum({}), checksum({"config": {"batching": {"max_delay_ms": 7}}}))


class ExampleConfig(unittest.TestCase):
    def test_every_key_of_the_example_settings_file_is_accepted(self):
        """config/clipd.example.toml, as `config:`, passes the schema and reaches clipd.yaml."""
        example = tomllib.loads((ROOT / "config" / "clipd.example.toml").read_text())
        # Keys and certificates come through the chart's auth and tls values (Secrets), never
        # through config: (the chart refuses config.auth and config.tls).
        for section in ("auth", "tls"):
            example.pop(section)
        example.setdefault("classifiers", {})["moderation"] = {
            "labels": ["a safe, everyday photo", "nudity"], "template_set": "imagenet",
            "thresholds": {"nudity": 0.5}}
        with helm.Chart.load(CHART) as chart:
            chart.validate_schema({"config": example})
        settings, _ = clipd_settings(documents(render({"config": example})))
        for section, keys in example.items():
            for key, value in keys.items():
                if (section, key) in {("index", "data_dir"), ("server", "grpc_addr"),
                                      ("metrics", "addr"), ("metrics", "enabled")}:
                    continue  # computed by the chart
                self.assertEqual(settings[section][key], value, f"{section}.{key}")


class Schema(unittest.TestCase):
    TYPOS = {
        "top level": {"replicaCuont": 2},
        "image": {"image": {"tga": "1"}},
        "model": {"model": {"sorce": "openai/clip-vit-base-patch32"}},
        "model.dtype": {"model": {"dtype": "fp16"}},
        "model.device": {"model": {"device": "gpu"}},
        "persistence": {"persistence": {"enabeld": True}},
        "cache": {"cache": {"persistance": {"enabled": True}}},
        "auth": {"auth": {"readkeys": ["x"]}},
        "tls": {"tls": {"clientCa": "x"}},
        "service": {"service": {"port": 80}},
        "probes": {"probes": {"mode": "tcp"}},
        "autoscaling": {"autoscaling": {"maxReplica": 3}},
        "metrics": {"metrics": {"serviceMonitor": {"enable": True}}},
        "config section": {"config": {"serverr": {}}},
        "config key": {"config": {"batching": {"max_batch_szie": 64}}},
        "config type": {"config": {"batching": {"max_batch_size": "64"}}},
        "size": {"persistence": {"size": "ten gigs"}},
        "config.index.backend": {"config": {"index": {"backend": "milvs"}}},
        "config.index.milvus key": {"config": {"index": {"milvus": {"uri": "http://m:19530"}}}},
        "config.index.milvus.url": {"config": {"index": {"milvus": {"url": "milvus:19530"}}}},
        "config.index.milvus.health_interval_ms": {
            "config": {"index": {"milvus": {"health_interval_ms": 10}}}},
        "milvus": {"milvus": {"existingSecret": "m"}},
        "milvus.token": {"milvus": {"token": {"secret": "m"}}},
        "milvus.ca": {"milvus": {"ca": {"configMap": "m"}}},
    }

    def test_schema_rejects_typos(self):
        with helm.Chart.load(CHART) as chart:
            chart.validate_schema({})
            for what, values in self.TYPOS.items():
                with self.subTest(typo=what):
                    with self.assertRaises(helm.HelmValuesError):
                        chart.validate_schema(values)
        with self.assertRaises(helm.HelmValuesError):
            render({"replicaCuont": 2})

    def test_schema_accepts_every_value_set(self):
        with helm.Chart.load(CHART) as chart:
            for name, values in VALUE_SETS.items():
                with self.subTest(values=name):
                    chart.validate_schema(values)


class Refusals(unittest.TestCase):
    """Value combinations the templates refuse with a message."""

    CASES = {
        "auth without keys": ({"auth": {"enabled": True}}, "auth.enabled needs"),
        "tls without cert": ({"tls": {"enabled": True}}, "tls.enabled needs"),
        "mTLS without CA": ({"tls": {"enabled": True, "clientAuth": True, "cert": FAKE_CERT,
                                     "key": FAKE_KEY}}, "tls.clientAuth needs"),
        "gRPC probes on TLS": ({"tls": {"enabled": True, "existingSecret": "c"},
                                "probes": {"mode": "grpc"}}, "cannot probe a TLS port"),
        "two model sources": ({"model": {"source": "openai/clip-vit-base-patch32",
                                         "existingClaim": "m"}}, "not both"),
        "subPath without claim": ({"model": {"subPath": "x"}}, "model.subPath needs"),
        "config.auth by hand": ({"config": {"auth": {"read_keys_file": "/x"}}},
                                "config.auth.read_keys_file"),
        "config.tls by hand": ({"config": {"tls": {"cert_file": "/x"}}}, "config.tls.cert_file"),
        "CPU autoscaling without a CPU request": (
            {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": 70}},
            "resources.requests.cpu"),
        "memory autoscaling without a memory request": (
            {"autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 70},
             "resources": {"requests": {"cpu": "1"}}},
            "resources.requests.memory"),
        "Milvus without a url": ({"config": {"index": {"backend": "milvus"}}},
                                 "needs config.index.milvus.url"),
        "Milvus with persistence": (
            {"config": {"index": {"backend": "milvus", "milvus": {"url": "http://m:19530"}}},
             "persistence": {"enabled": True}},
            "leave persistence.enabled off"),
        "Milvus token_file by hand": (
            {"config": {"index": {"backend": "milvus",
                                  "milvus": {"url": "http://m:19530", "token_file": "/x"}}}},
            "config.index.milvus.token_file"),
        "Milvus ca_file by hand": (
            {"config": {"index": {"milvus": {"ca_file": "/x"}}}}, "config.index.milvus.ca_file"),
        "Milvus CA in two places": (
            {"config": {"index": {"backend": "milvus", "milvus": {"url": MILVUS_URL}}},
             "milvus": {"ca": {"existingSecret": "a", "existingConfigMap": "b"}}},
            "not both"),
        "Milvus CA on plain text": (
            {"config": {"index": {"backend": "milvus", "milvus": {"url": "http://m:19530"}}},
             "milvus": {"ca": {"existingConfigMap": "b"}}},
            "needs an https://"),
        "Milvus token on the embedded store": ({"milvus": {"token": {"value": MILVUS_TOKEN}}},
                                               "need config.index.backend=milvus"),
    }

    def test_refusals(self):
        for what, (values, message) in self.CASES.items():
            with self.subTest(case=what):
                with self.assertRaises(helm.HelmError) as caught:
                    render(values)
                self.assertIn(message, str(caught.exception))


class Disruptions(unittest.TestCase):
    def test_min_available_zero_is_kept(self):
        """0 is a value (drains never wait), not a missing one."""
        for given, rendered in ((0, 0), (None, 1), (2, 2)):
            values = {"podDisruptionBudget": {"enabled": True, "minAvailable": given}}
            pdb = one(documents(render(values)), "PodDisruptionBudget")
            self.assertEqual(pdb["spec"]["minAvailable"], rendered, given)


class KubernetesSchemas(unittest.TestCase):
    def test_kubernetes_validate_strict(self):
        """Every rendered manifest, hooks included, against Kubernetes' own schemas."""
        tool = Path(sys.executable).parent / "kubernetes-validate"
        skipped = set()
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for name, values in VALUE_SETS.items():
                for i, (path, doc) in enumerate(documents(render(values))):
                    if (doc["apiVersion"], doc["kind"]) in NO_BUNDLED_SCHEMA:
                        skipped.add(f"{doc['apiVersion']} {doc['kind']}")
                        continue
                    file = Path(tmp) / f"{name}-{i:02d}-{doc['kind']}.yaml"
                    file.write_text(yaml.safe_dump(doc))
                    files.append(str(file))
            result = subprocess.run(
                [str(tool), "--strict", "-k", KUBE_VERSION, "--quiet", *files],
                capture_output=True, text=True)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        if skipped:
            print(f"\nkubernetes-validate: {len(files)} manifests valid for Kubernetes {KUBE_VERSION}"
                  f" (strict); skipped, no bundled schema: {', '.join(sorted(skipped))}",
                  file=sys.stderr)


if __name__ == "__main__":
    os.chdir(ROOT)
    unittest.main(verbosity=2)
