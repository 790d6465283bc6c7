"""Offline checks of deploy/: every Kubernetes manifest against the Kubernetes API's JSON
schemas (kubernetes-validate, strict: unknown fields fail), the ServiceMonitor against the
schema in deploy/kubernetes/schemas, the kustomization rendered (by this script, and by
`kubectl kustomize` too where kubectl is installed), the references between the resources,
the image name, the termination grace period against meshscope's shutdown, the Istio
settings in all their forms against each other and against the Envoy config the Istio test
runs, and the VM sidecar's Envoy config with `envoy --mode validate`.

Run from the repository root: python3 scripts/ci/check_deploy.py
"""

import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy/kubernetes"
ISTIO = ROOT / "deploy/istio"
KUBERNETES_VERSION = "1.33.0"

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}")


def ok(message):
    print(f"ok: {message}")


def load_all(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def cargo_version():
    text = (ROOT / "Cargo.toml").read_text()
    match = re.search(r'^\[package\][^\[]*?^version = "([^"]+)"', text, re.M | re.S)
    return match.group(1)


# --- Kubernetes -------------------------------------------------------------------------

def render_kustomization(base=KUBE):
    """The kustomization in `base` as kubectl would apply it: namespace set, common
    labels added, the ConfigMap generated, the image replaced. The generated name's hash
    suffix is left out (kubectl kustomize's output is checked separately)."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        path = base / name
        if not path.is_file():
            fail(f"kustomization.yaml lists {name}, which does not exist")
            continue
        for doc in load_all(path):
            docs.append((name, doc))
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for file in generator["files"]:
            path = base / file
            if not path.is_file():
                fail(f"configMapGenerator names {file}, which does not exist")
                continue
            data[path.name] = path.read_text()
        docs.append(("configMapGenerator", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": generator["name"]}, "data": data,
        }))
    namespace = kustomization.get("namespace")
    labels = {}
    for entry in kustomization.get("labels", []):
        labels.update(entry["pairs"])
    images = {i["name"]: i for i in kustomization.get("images", [])}
    rendered = []
    for source, doc in docs:
        doc = copy.deepcopy(doc)
        meta = doc.setdefault("metadata", {})
        if doc["kind"] != "Namespace" and namespace:
            meta["namespace"] = namespace
        meta.setdefault("labels", {}).update(labels)
        for container in pod_containers(doc):
            name, _, tag = container["image"].partition(":")
            if name in images:
                image = images[name]
                container["image"] = f'{image.get("newName", name)}:{image.get("newTag", tag)}'
        rendered.append((source, doc))
    return kustomization, rendered


def pod_containers(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def validate_kubernetes(docs, where):
    schema = json.loads((KUBE / "schemas/servicemonitor.schema.json").read_text())
    for source, doc in docs:
        kind = doc.get("kind")
        label = f'{where}: {kind}/{doc.get("metadata", {}).get("name")} ({source})'
        try:
            if kind == "ServiceMonitor":
                jsonschema.validate(doc, schema)
            else:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as error:
            fail(f"{label}: {getattr(error, 'message', error)}")
        except kubernetes_validate.utils.SchemaNotFoundError as error:
            fail(f"{label}: no schema ({error})")
        else:
            ok(f"{label} is valid")


def check_references(docs):
    by_kind = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    sets = by_kind.get("StatefulSet", [])
    if len(sets) != 1:
        fail(f"expected one StatefulSet, found {len(sets)}")
        return
    statefulset = sets[0]
    pod = statefulset["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}

    def selects(selector, labels):
        return all(labels.get(k) == v for k, v in selector.items())

    if not selects(statefulset["spec"]["selector"]["matchLabels"], pod_labels):
        fail("the StatefulSet's selector does not select its own pods")
    services = by_kind.get("Service", [])
    names = {s["metadata"]["name"] for s in services}
    if statefulset["spec"]["serviceName"] not in names:
        fail(f'serviceName {statefulset["spec"]["serviceName"]} is no Service')
    for service in services:
        if not selects(service["spec"]["selector"], pod_labels):
            fail(f'Service {service["metadata"]["name"]} selects no meshscope pod')
        for port in service["spec"]["ports"]:
            if port["targetPort"] not in port_names:
                fail(f'Service {service["metadata"]["name"]} targets port {port["targetPort"]}, '
                     "which the container does not name")
    main = next((s for s in services if s["metadata"]["name"] == "meshscope"), None)
    if main is None:
        fail("no Service named meshscope (the Istio settings send to meshscope.meshscope)")
    else:
        ports = {p["port"]: p for p in main["spec"]["ports"]}
        if ports.get(11800, {}).get("appProtocol") != "grpc":
            fail("Service meshscope: port 11800 must have appProtocol grpc")
        if 12800 not in ports:
            fail("Service meshscope: no port 12800")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        got = container.get(probe, {}).get("httpGet", {})
        if got.get("path") != "/healthz" or got.get("port") not in port_names:
            fail(f"{probe} must GET /healthz on a named container port, not {got}")
    monitors = by_kind.get("ServiceMonitor", [])
    for monitor in monitors:
        selected = [s for s in services
                    if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        if len(selected) != 1:
            fail(f"the ServiceMonitor selects {len(selected)} Services, not 1: each pod would be "
                 "scraped that many times")
        else:
            service_ports = {p["name"] for p in selected[0]["spec"]["ports"]}
            for endpoint in monitor["spec"]["endpoints"]:
                if endpoint["port"] not in service_ports:
                    fail(f'the ServiceMonitor scrapes port {endpoint["port"]}, which '
                         f'{selected[0]["metadata"]["name"]} does not name')
    annotations = pod["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true" or \
            int(annotations.get("prometheus.io/port", 0)) != port_names.get("http"):
        fail("the pod's prometheus.io annotations must point at the http port")
    for policy in by_kind.get("NetworkPolicy", []):
        if not selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels):
            fail("the NetworkPolicy selects no meshscope pod")
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if port["port"] not in port_names and port["port"] not in port_names.values():
                    fail(f'the NetworkPolicy opens port {port["port"]}, which the container '
                         "does not name")
    config_maps = {c["metadata"]["name"] for c in by_kind.get("ConfigMap", [])}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in pod["spec"]["volumes"]:
        if "configMap" in volume and volume["configMap"]["name"] not in config_maps:
            fail(f'volume {volume["name"]} mounts ConfigMap {volume["configMap"]["name"]}, '
                 "which the kustomization does not make")
    args = container.get("args", [])
    if "--config" in args:
        config_path = args[args.index("--config") + 1]
        mount = mounts.get("config")
        if mount is None or pathlib.PurePath(config_path).parent != pathlib.PurePath(mount):
            fail(f"--config {config_path} is not in the config volume's mount ({mount})")
        if pathlib.PurePath(config_path).name not in \
                next(iter(by_kind.get("ConfigMap", [{}]))).get("data", {}):
            fail(f"--config {config_path}: the ConfigMap has no such key")
    security = container.get("securityContext", {})
    pod_security = pod["spec"].get("securityContext", {})
    if not (security.get("readOnlyRootFilesystem") and pod_security.get("runAsNonRoot")
            and security.get("allowPrivilegeEscalation") is False):
        fail("the container must run as non-root, read-only, without privilege escalation")
    if "/data" not in mounts.values():
        fail("nothing is mounted at /data, where meshscope writes")
    for claim in statefulset["spec"].get("volumeClaimTemplates", []):
        if claim["metadata"]["name"] not in mounts:
            fail(f'volume claim {claim["metadata"]["name"]} is mounted nowhere')
    if not any(r.get("limits", {}).get("memory") for r in [container.get("resources", {})]):
        fail("the container has no memory limit")
    ok("references between the resources hold")
    return statefulset, container


def check_grace_period(statefulset):
    serve = (ROOT / "src/serve.rs").read_text()
    found = {name: int(secs) for name, secs in re.findall(
        r"const (GRPC_DRAIN|FLUSH_DEADLINE|HTTP_DRAIN): Duration = Duration::from_secs\((\d+)\)",
        serve)}
    if set(found) != {"GRPC_DRAIN", "FLUSH_DEADLINE", "HTTP_DRAIN"}:
        fail(f"cannot read meshscope's shutdown deadlines from src/serve.rs (found {found})")
        return
    # The demo, when on, is given one more GRPC_DRAIN before the rest.
    shutdown = found["GRPC_DRAIN"] * 2 + found["FLUSH_DEADLINE"] + found["HTTP_DRAIN"]
    grace = statefulset["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if grace <= shutdown:
        fail(f"terminationGracePeriodSeconds {grace} is not longer than meshscope's "
             f"shutdown, {shutdown} s at most")
    else:
        ok(f"terminationGracePeriodSeconds {grace} > shutdown {shutdown} s")
    unit = (ROOT / "deploy/vm/meshscope.service").read_text()
    stop = re.search(r"^TimeoutStopSec=(\d+)", unit, re.M)
    if not stop or int(stop.group(1)) <= shutdown:
        fail(f"meshscope.service's TimeoutStopSec must be longer than {shutdown} s")
    else:
        ok(f"meshscope.service TimeoutStopSec {stop.group(1)} > shutdown {shutdown} s")


def check_image_name(container, kustomization):
    version = cargo_version()
    want = f"meshscope:{version}"
    if container["image"] != want:
        fail(f"the rendered image is {container['image']}, not {want}, the one the Dockerfile "
             "and scripts/image document")
    dockerfile = (ROOT / "Dockerfile").read_text()
    if f"-t {want}" not in dockerfile:
        fail(f"the Dockerfile does not document `-t {want}`")
    if want not in (ROOT / "README.md").read_text():
        fail(f"the README does not show {want}")
    ok(f"image {want} in the manifests, the Dockerfile and the README")


def kubectl_kustomize(base=KUBE):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("note: kubectl is not installed: the kustomization was rendered by this script "
              "only, not by kubectl kustomize")
        return None
    out = subprocess.run([kubectl, "kustomize", str(base)], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"kubectl kustomize {base.relative_to(ROOT)} failed: {out.stderr}")
        return None
    docs = [("kubectl kustomize", d) for d in yaml.safe_load_all(out.stdout) if d]
    ok(f"kubectl kustomize rendered {len(docs)} resources")
    return docs


# --- Istio ------------------------------------------------------------------------------

def istio_settings(mesh):
    default = mesh.get("defaultConfig", {})
    return {
        "accessLogService": default.get("envoyAccessLogService"),
        "metricsService": default.get("envoyMetricsService"),
        "inclusionRegexps": default.get("proxyStatsMatcher", {}).get("inclusionRegexps"),
        "enableEnvoyAccessLogService": mesh.get("enableEnvoyAccessLogService"),
    }


def check_istio():
    mesh = yaml.safe_load((ISTIO / "meshconfig.yaml").read_text())
    operator = yaml.safe_load((ISTIO / "istio-operator.yaml").read_text())
    helm = yaml.safe_load((ISTIO / "helm-values.yaml").read_text())
    providers = yaml.safe_load((ISTIO / "telemetry-providers.yaml").read_text())
    telemetry = yaml.safe_load((ISTIO / "telemetry.yaml").read_text())
    want = istio_settings(mesh)
    address = "meshscope.meshscope.svc.cluster.local:11800"
    if want["accessLogService"] != {"address": address} or \
            want["metricsService"] != {"address": address} or \
            want["enableEnvoyAccessLogService"] is not True:
        fail(f"meshconfig.yaml must send access logs and statistics to {address}: {want}")
    if operator.get("kind") != "IstioOperator" or \
            operator.get("apiVersion") != "install.istio.io/v1alpha1":
        fail("istio-operator.yaml is not an IstioOperator")
    for name, form in [("istio-operator.yaml", operator["spec"]["meshConfig"]),
                       ("helm-values.yaml", helm["meshConfig"])]:
        if istio_settings(form) != want:
            fail(f"{name} differs from meshconfig.yaml: {istio_settings(form)}")
    got = istio_settings(providers)
    if got["metricsService"] != want["metricsService"] or \
            got["inclusionRegexps"] != want["inclusionRegexps"]:
        fail("telemetry-providers.yaml's metrics service or stats matcher differs from "
             "meshconfig.yaml")
    provider_names = {p["name"] for p in providers["extensionProviders"]}
    for provider in providers["extensionProviders"]:
        kind = next(k for k in provider if k != "name")
        if kind not in ("envoyHttpAls", "envoyTcpAls") or \
                f'{provider[kind]["service"]}:{provider[kind]["port"]}' != address:
            fail(f"extension provider {provider['name']} must be an ALS to {address}")
    if telemetry.get("apiVersion") != "telemetry.istio.io/v1" or telemetry.get("kind") != "Telemetry":
        fail("telemetry.yaml is not a Telemetry resource")
    used = {p["name"] for rule in telemetry["spec"]["accessLogging"] for p in rule["providers"]}
    if used != provider_names:
        fail(f"telemetry.yaml uses providers {used}, telemetry-providers.yaml defines {provider_names}")
    ok("the Istio settings agree in meshconfig, IstioOperator, Helm values and Telemetry forms")

    # The allow-list meshscope keeps (collector/src/proxy_stats.rs) must pass the matcher.
    (regex,) = want["inclusionRegexps"]
    source = (ROOT / "collector/src/proxy_stats.rs").read_text()
    block = re.search(r"cluster_stats: strings\(&\[(.*?)\]\)", source, re.S)
    if not block:
        fail("cannot read the default cluster_stats from collector/src/proxy_stats.rs")
    else:
        stats = re.findall(r'"([a-z0-9_.]+)"', block.group(1))
        cluster = "outbound|9080||reviews.bookinfo.svc.cluster.local"
        missed = [s for s in stats if not re.fullmatch(regex, f"cluster.{cluster}.{s}")]
        if missed:
            fail(f"proxyStatsMatcher drops statistics meshscope reads: {missed}")
        else:
            ok(f"proxyStatsMatcher keeps all {len(stats)} per-cluster statistics meshscope reads")
        if re.fullmatch(regex, f"cluster.{cluster}.upstream_cx_total"):
            fail("proxyStatsMatcher keeps statistics meshscope does not read")

    # The Istio test's Envoy: the matcher exactly as Istio's bootstrap builds it.
    template = (ROOT / "tests/envoy/istio_sidecar.yaml").read_text()
    # Unquoted placeholders stand for port numbers.
    sidecar = yaml.safe_load(re.sub(r'(?<!")\{\{[A-Z_]+\}\}(?!")', "1", template))
    patterns = sidecar["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
    istio_prefixes = ["cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm"]
    istio_suffixes = ["rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied",
                      "downstream_cx_active"]
    expected = ([{"prefix": "reporter="}] + [{"prefix": p} for p in istio_prefixes]
                + [{"suffix": s} for s in istio_suffixes]
                + [{"safe_regex": {"regex": r}} for r in want["inclusionRegexps"]]
                + [{"prefix": "component"}, {"prefix": "istio"}])
    if patterns != expected:
        fail(f"tests/envoy/istio_sidecar.yaml's stats matcher is not Istio's for this mesh "
             f"config:\n got {patterns}\nwant {expected}")
    sink = sidecar["stats_sinks"][0]["typed_config"]
    if sink.get("transport_api_version") != "V3" or "report_counters_as_deltas" in sink or \
            "emit_tags_as_labels" in sink:
        fail("tests/envoy/istio_sidecar.yaml's metrics sink is not Istio's")
    ok("the Istio test's Envoy config carries the mesh config's settings as Istio writes them")


# --- VMs --------------------------------------------------------------------------------

def check_vm_envoy():
    envoy = shutil.which("envoy")
    if envoy is None:
        fail("envoy is not installed: cannot validate deploy/vm/envoy-sidecar.yaml")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        # The config names certificate files that exist only on a configured host.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=test",
                        "-days", "1", "-keyout", str(tmp / "proxy.key"),
                        "-out", str(tmp / "proxy.crt")], check=True, capture_output=True)
        shutil.copy(tmp / "proxy.crt", tmp / "meshscope-ca.crt")
        config = (ROOT / "deploy/vm/envoy-sidecar.yaml").read_text()
        config = config.replace("/etc/envoy/tls/", f"{tmp}/")
        (tmp / "sidecar.yaml").write_text(config)
        unit = (ROOT / "deploy/vm/envoy-sidecar.service").read_text()
        if "-c /etc/envoy/sidecar.yaml" not in unit:
            fail("envoy-sidecar.service does not run /etc/envoy/sidecar.yaml")
        out = subprocess.run([envoy, "--mode", "validate", "-c", str(tmp / "sidecar.yaml"),
                              "--service-cluster", "billing", "--service-node", "vm-1"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"envoy --mode validate deploy/vm/envoy-sidecar.yaml:\n{out.stdout}{out.stderr}")
        else:
            ok("envoy --mode validate accepts deploy/vm/envoy-sidecar.yaml")
    check_units()
    unit = (ROOT / "deploy/vm/meshscope.service").read_text()
    config_arg = re.search(r"^ExecStart=.*--config (\S+)", unit, re.M)
    header = (ROOT / "deploy/vm/meshscope.toml").read_text().splitlines()[0]
    if not config_arg or config_arg.group(1) not in header:
        fail("meshscope.service's --config path is not the one deploy/vm/meshscope.toml names")
    vm_readme = (ROOT / "deploy/vm/README.md").read_text()
    if not config_arg or config_arg.group(1) not in vm_readme:
        fail("deploy/vm/README.md does not tell where meshscope.service reads its config")
    else:
        ok(f"the VM config path {config_arg.group(1)} agrees in the unit, the toml and the docs")


def check_units():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("note: systemd-analyze is not installed: the systemd units were not verified")
        return
    units = [ROOT / "deploy/vm/meshscope.service", ROOT / "deploy/vm/envoy-sidecar.service"]
    out = subprocess.run([analyze, "verify", "--man=no", *map(str, units)],
                         capture_output=True, text=True)
    # The binaries are installed only on a configured host.
    complaints = [line for line in (out.stdout + out.stderr).splitlines()
                  if line.strip() and "is not executable" not in line]
    if complaints:
        fail("systemd-analyze verify:\n" + "\n".join(complaints))
    else:
        ok("systemd-analyze verify accepts meshscope.service and envoy-sidecar.service")


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def check_scale_out():
    """The split form (deploy/kubernetes/scale-out): collectors, the one upkeep writer and
    the query nodes, each with the role, writer id and upkeep docs/scale-out.md asks for,
    behind the Services the proxies and the readers use, all on the bucket the config
    names."""
    base = KUBE / "scale-out"
    _, rendered = render_kustomization(base)
    validate_kubernetes(rendered, "scale-out")
    by_kubectl = kubectl_kustomize(base)
    if by_kubectl is not None:
        validate_kubernetes(by_kubectl, "scale-out, kubectl kustomize")
        if sorted(d["kind"] for _, d in by_kubectl) != sorted(d["kind"] for _, d in rendered):
            fail("scale-out: kubectl kustomize renders other resources than this script")
    docs = [doc for _, doc in rendered]
    workloads = [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    config_maps = [d for d in docs if d["kind"] == "ConfigMap"]
    roles = {}
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]
        labels = pod["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in workload["spec"]["selector"]["matchLabels"].items()):
            fail(f"scale-out: {name}'s selector does not select its own pods")
        container = pod["spec"]["containers"][0]
        env = env_of(container)
        role = env.get("MESHSCOPE_ROLE")
        roles.setdefault(role, []).append((workload, labels, env, container))
        security = container.get("securityContext", {})
        if not (security.get("readOnlyRootFilesystem") and
                pod["spec"].get("securityContext", {}).get("runAsNonRoot")):
            fail(f"scale-out: {name} must run as non-root with a read-only root filesystem")
        if not container.get("resources", {}).get("limits", {}).get("memory"):
            fail(f"scale-out: {name} has no memory limit")
        if "/data" not in {m["mountPath"] for m in container["volumeMounts"]}:
            fail(f"scale-out: {name} mounts nothing at /data")
        args = container.get("args", [])
        config_path = args[args.index("--config") + 1] if "--config" in args else None
        if config_path is None or not any(pathlib.PurePath(config_path).name in c["data"]
                                          for c in config_maps):
            fail(f"scale-out: {name} does not read the generated config")
    if set(roles) != {"collector", "query"}:
        fail(f"scale-out: roles {sorted(map(str, roles))}, not collector and query")
        return
    upkeep = [w for w, _, env, _ in roles["collector"] if env.get("MESHSCOPE_UPKEEP") == "true"]
    if len(upkeep) != 1 or upkeep[0]["spec"]["replicas"] != 1:
        fail("scale-out: exactly one collector pod must run upkeep (one workload, one replica)")
    for workload, _, env, _ in roles["collector"]:
        if workload["kind"] != "StatefulSet":
            fail(f'scale-out: collector {workload["metadata"]["name"]} needs a volume of its '
                 "own for its log: a StatefulSet")
        writer = env.get("MESHSCOPE_WRITER_ID")
        if not (isinstance(writer, dict) and
                writer.get("fieldRef", {}).get("fieldPath") == "metadata.name"):
            fail(f'scale-out: {workload["metadata"]["name"]}\'s writer id must be its pod name')
        # Collectors that take streams pass entries to each other at their stable names; the
        # upkeep writer takes none and stays out of the ring.
        advertise = env.get("MESHSCOPE_ADVERTISE_GRPC")
        takes_streams = env.get("MESHSCOPE_UPKEEP") != "true"
        governing = workload["spec"].get("serviceName")
        want = f"$(MESHSCOPE_WRITER_ID).{governing}:11800"
        if takes_streams and advertise != want:
            fail(f'scale-out: {workload["metadata"]["name"]} must advertise {want!r} to the '
                 f"other collectors, not {advertise!r}")
        if not takes_streams and advertise is not None:
            fail("scale-out: the upkeep collector takes no streams and must not join the ring")
        if takes_streams and governing not in services:
            fail(f"scale-out: {workload['metadata']['name']}'s governing Service {governing!r} "
                 "is missing")
    for workload, _, env, _ in roles["query"]:
        if env.get("MESHSCOPE_UPKEEP") not in (None, "false"):
            fail("scale-out: a query node never runs upkeep")

    def selected(service):
        selector = service["spec"]["selector"]
        return [w["metadata"]["name"] for role in roles.values() for w, labels, _, _ in role
                if all(labels.get(k) == v for k, v in selector.items())]

    proxies = services.get("meshscope")
    traffic = [w["metadata"]["name"] for w, _, env, _ in roles["collector"]
               if env.get("MESHSCOPE_UPKEEP") != "true"]
    if proxies is None or sorted(selected(proxies)) != sorted(traffic):
        fail("scale-out: the Service meshscope must send the proxies to the collectors that "
             "take streams, and only to them")
    elif {p["port"]: p.get("appProtocol") for p in proxies["spec"]["ports"]}.get(11800) != "grpc":
        fail("scale-out: Service meshscope needs port 11800 with appProtocol grpc")
    readers = services.get("meshscope-query")
    if readers is None or sorted(selected(readers)) != \
            sorted(w["metadata"]["name"] for w, _, _, _ in roles["query"]):
        fail("scale-out: the Service meshscope-query must select the query nodes only")
    store = None
    for config_map in config_maps:
        for text in config_map["data"].values():
            store = (tomllib.loads(text).get("storage") or {}).get("store")
    if not (store or "").startswith(("s3://", "gs://", "az://")):
        fail(f"scale-out: the config's [storage] store is {store!r}, not a bucket")
    if not failures:
        ok(f"scale-out: {len(roles['collector'])} collector workloads (one with upkeep), "
           f"{len(roles['query'])} query workload, on {store}")


def main():
    kustomization, rendered = render_kustomization()
    validate_kubernetes(rendered, "rendered")
    result = check_references(rendered)
    if result:
        statefulset, container = result
        check_grace_period(statefulset)
        check_image_name(container, kustomization)
    by_kubectl = kubectl_kustomize()
    if by_kubectl is not None:
        validate_kubernetes(by_kubectl, "kubectl kustomize")
        check_references(by_kubectl)
        if sorted(d["kind"] for _, d in by_kubectl) != sorted(d["kind"] for _, d in rendered):
            fail("kubectl kustomize renders other resources than this script")
    check_scale_out()
    check_istio()
    check_vm_envoy()
    if failures:
        print(f"\n{len(failures)} deploy check(s) failed")
        sys.exit(1)
    print("\ndeploy checks: all passed")


if __name__ == "__main__":
    main()
