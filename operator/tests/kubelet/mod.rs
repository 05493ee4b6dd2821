//! A kubelet on this machine, for the rendered objects: starts a pod template's containers as
//! the real binaries with the rendered command, args and env (`valueFrom` resolved from the
//! rendered Secrets and ConfigMaps), its volumes materialised with the rendered modes and
//! ownership (projected Secrets `root:<fsGroup>` with `defaultMode`), as the pod's
//! `runAsUser`/`runAsGroup` with `fsGroup` as a supplementary group (`setpriv`, when run as
//! root), and probes it as the rendered readiness probe says.
//!
//! What no single machine can give is translated, and only that: every pod has its own IP in
//! a cluster, so each container port gets a free loopback port: Service addresses
//! (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc[.cluster.local]`) in args, env values and mounted
//! files keep their names with that port, and the names resolve to 127.0.0.1 through a hosts
//! file (Debian's `libnss-wrapper`, preloaded) as cluster DNS would answer them — so a TLS
//! client still checks the name it was given. Mount paths become directories under the pod's
//! own folder.
//! A CloudNativePG `Cluster` is started by a stand-in for CNPG (`cnpg.rs`); an
//! `ObjectBucketClaim` is fulfilled by a stand-in for its provisioner (`buckets.rs`).
// Each test binary uses a different subset.
#![allow(dead_code)]

pub mod barman;
mod buckets;
mod cnpg;
mod image;
mod pods;
pub mod probe;
mod values;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use image::Image;
use pods::{container_port, containers, is_workload};
use values::{expand, local_path, mode};

/// The rendered objects (and the generated Secrets) of one namespace, and what runs of them.
pub struct Kubelet {
    pub namespace: String,
    objects: Vec<Value>,
    root: PathBuf,
    /// Workload name → container port → local port.
    pods: HashMap<String, HashMap<u16, u16>>,
    /// Service name → service port → local port.
    services: HashMap<String, HashMap<u16, u16>>,
    children: Vec<(String, Child)>,
    postgres: Option<pg_cluster::PgCluster>,
    /// What EKS's pod identity webhook adds to pods whose ServiceAccount names an IAM role
    /// (`eks.amazonaws.com/role-arn`): here, the emulator's endpoint and credentials.
    irsa_env: Vec<(String, String)>,
    /// The API server pods with a service account token reach (`KUBECONFIG`; in a cluster,
    /// the mounted token and `KUBERNETES_SERVICE_HOST`).
    kubeconfig: Option<PathBuf>,
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

impl Kubelet {
    /// Lays out ports for every workload in `objects` and the Services in front of them.
    pub fn new(namespace: &str, objects: Vec<Value>) -> Self {
        let root = std::env::temp_dir().join(format!("mrbill-kubelet-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).expect("kubelet root");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut pods = HashMap::new();
        for w in objects.iter().filter(|o| is_workload(o)) {
            let mut ports = HashMap::new();
            for c in containers(w) {
                for p in c["ports"].as_array().into_iter().flatten() {
                    let port = p["containerPort"].as_u64().expect("containerPort") as u16;
                    ports.insert(port, pg_cluster::free_port().expect("free port"));
                }
            }
            pods.insert(str_of(&w["metadata"]["name"]).to_owned(), ports);
        }
        let mut services = HashMap::new();
        for s in objects.iter().filter(|o| o["kind"] == "Service") {
            let selector = s["spec"]["selector"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let Some(w) = objects.iter().filter(|o| is_workload(o)).find(|w| {
                let labels = &w["spec"]["template"]["metadata"]["labels"];
                selector.iter().all(|(k, v)| &labels[k] == v)
            }) else {
                continue;
            };
            let workload_ports = &pods[str_of(&w["metadata"]["name"])];
            let mut map = HashMap::new();
            for p in s["spec"]["ports"].as_array().into_iter().flatten() {
                let port = p["port"].as_u64().expect("port") as u16;
                let target = container_port(w, &p["targetPort"]).unwrap_or(port);
                if let Some(local) = workload_ports.get(&target) {
                    map.insert(port, *local);
                }
            }
            services.insert(str_of(&s["metadata"]["name"]).to_owned(), map);
        }
        // A CNPG Cluster's Services (`cnpg.rs`), all in front of its one instance here.
        for c in objects.iter().filter(|o| o["kind"] == "Cluster") {
            let local = pg_cluster::free_port().expect("free port");
            for suffix in cnpg::SERVICE_SUFFIXES {
                let name = format!("{}-{suffix}", str_of(&c["metadata"]["name"]));
                services.insert(name, HashMap::from([(5432, local)]));
            }
        }
        Self {
            namespace: namespace.to_owned(),
            objects,
            root,
            pods,
            services,
            children: Vec::new(),
            postgres: None,
            irsa_env: Vec::new(),
            kubeconfig: None,
        }
    }

    /// The local port behind `service`'s `port`.
    pub fn port(&self, service: &str, port: u16) -> u16 {
        self.services[service][&port]
    }

    /// Makes `host:port` (a server outside this namespace, e.g. another cluster's) reach
    /// `127.0.0.1:local`, as the network would.
    pub fn with_external(mut self, host: &str, port: u16, local: u16) -> Self {
        self.services
            .insert(host.to_owned(), HashMap::from([(port, local)]));
        self
    }

    /// Gives pods that mount a service account token this API server (a kubeconfig).
    pub fn with_api_server(mut self, kubeconfig: &str) -> Self {
        let path = self.root.join("kubeconfig");
        std::fs::write(&path, kubeconfig).expect("kubeconfig");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        self.kubeconfig = Some(path);
        self
    }

    /// Sets what pods with an IAM role get from the pod identity webhook.
    pub fn with_irsa_env(mut self, env: Vec<(String, String)>) -> Self {
        self.irsa_env = env;
        self
    }

    pub fn workload(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} rendered"))
    }

    fn data(&self, kind: &str, name: &str, key: &str) -> String {
        let o = self.workload(kind, name);
        if let Some(v) = o["stringData"][key].as_str() {
            return v.to_owned();
        }
        let v = o["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{kind}/{name} has no key {key}"));
        if kind == "Secret" {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v)
                .unwrap_or_else(|e| panic!("{kind}/{name}: {key} is not base64: {e}"));
            return String::from_utf8(bytes).expect("UTF-8 secret");
        }
        v.to_owned()
    }

    /// `s` with Service names and own listen addresses made local, for a client outside the
    /// pods (this test): `127.0.0.1:<local port>`.
    pub fn localize(&self, s: &str, own: Option<&HashMap<u16, u16>>) -> String {
        self.translate(s, own, false)
    }

    /// The same for a container: Service names stay (they resolve to 127.0.0.1 through the
    /// pods' hosts file, as cluster DNS answers them, so TLS names still match); only the
    /// ports become local.
    fn inside(&self, s: &str, own: Option<&HashMap<u16, u16>>) -> String {
        self.translate(s, own, true)
    }

    fn translate(&self, s: &str, own: Option<&HashMap<u16, u16>>, keep_names: bool) -> String {
        let mut out = s.to_owned();
        if let Some(own) = own {
            for (port, local) in own {
                out = out.replace(&format!("0.0.0.0:{port}"), &format!("127.0.0.1:{local}"));
            }
        }
        let ns = &self.namespace;
        for (svc, ports) in &self.services {
            for (port, local) in ports {
                let to = |name: &str| match keep_names {
                    true => format!("{name}:{local}"),
                    false => format!("127.0.0.1:{local}"),
                };
                for long in [
                    format!("{svc}.{ns}.svc.cluster.local"),
                    format!("{svc}.{ns}.svc"),
                    format!("{svc}.{ns}"),
                ] {
                    out = out.replace(&format!("{long}:{port}"), &to(&long));
                }
                for sep in ["//", "@"] {
                    out = out.replace(&format!("{sep}{svc}:{port}"), &format!("{sep}{}", to(svc)));
                }
            }
        }
        out
    }

    /// What the pods' resolver answers for Service names: their /etc/hosts (or, not as root,
    /// `nss_wrapper`'s hosts file).
    fn hosts_file(&self) -> PathBuf {
        let path = self.root.join("hosts");
        if !path.exists() {
            let ns = &self.namespace;
            // It stands in for the pod's whole /etc/hosts: localhost first.
            let lines: String = [
                "127.0.0.1 localhost\n".to_owned(),
                "::1 localhost ip6-localhost ip6-loopback\n".to_owned(),
            ]
            .into_iter()
            .chain(self.services.keys().map(|svc| {
                format!("127.0.0.1 {svc} {svc}.{ns} {svc}.{ns}.svc {svc}.{ns}.svc.cluster.local\n")
            }))
            .collect();
            std::fs::write(&path, lines).expect("hosts file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        path
    }

    /// Starts another pod of workload `kind/name` (ports and a folder of its own, named
    /// `<name>-<replica>`), as one more replica behind the same Services; returns its
    /// container ports → local ports.
    pub fn start_replica(&mut self, kind: &str, name: &str, replica: u32) -> HashMap<u16, u16> {
        let mut w = self.workload(kind, name).clone();
        let pod = format!("{name}-{replica}");
        w["metadata"]["name"] = Value::String(pod.clone());
        let ports: HashMap<u16, u16> = self.pods[name]
            .keys()
            .map(|port| (*port, pg_cluster::free_port().expect("free port")))
            .collect();
        self.pods.insert(pod.clone(), ports.clone());
        self.objects.push(w);
        self.start(kind, &pod);
        ports
    }

    /// Starts every container of workload `kind/name` and waits for its readiness probe (a
    /// Job's, for it to succeed).
    pub fn start(&mut self, kind: &str, name: &str) {
        let w = self.workload(kind, name).clone();
        let pod = &w["spec"]["template"]["spec"];
        let security = &pod["securityContext"];
        let uid = security["runAsUser"].as_u64().map(|u| u as u32);
        let gid = security["runAsGroup"].as_u64().map(|g| g as u32);
        let fs_group = security["fsGroup"].as_u64().map(|g| g as u32);
        if security["runAsNonRoot"] == true {
            assert!(
                uid.is_some_and(|u| u != 0),
                "{name}: runAsNonRoot needs a runAsUser"
            );
        }
        let dir = self.root.join(name);
        let mut volumes = self.volumes(pod, &dir, fs_group);
        // A StatefulSet's claims: fresh volumes, made the fsGroup's as kubelet does.
        for claim in w["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = str_of(&claim["metadata"]["name"]);
            let path = dir.join("volumes").join(name);
            std::fs::create_dir_all(&path).expect("claim dir");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o2770))
                .expect("chmod");
            if is_root() {
                std::os::unix::fs::chown(&path, Some(0), fs_group).expect("chown");
            }
            volumes.insert(name.to_owned(), path);
        }
        for c in containers(&w) {
            let own = self.pods[name].clone();
            let mounts: Vec<(String, PathBuf)> = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    (
                        str_of(&m["mountPath"]).to_owned(),
                        volumes[str_of(&m["name"])].clone(),
                    )
                })
                .collect();
            let mut env = self.env(c, &own, &mounts);
            let account = str_of(&pod["serviceAccountName"]);
            let irsa = self
                .objects
                .iter()
                .find(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == account)
                .is_some_and(|sa| {
                    sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string()
                });
            if irsa {
                env.extend(self.irsa_env.iter().cloned());
            }
            if pod["automountServiceAccountToken"] != false
                && let Some(kubeconfig) = &self.kubeconfig
            {
                env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
            }
            let reference = str_of(&c["image"]);
            // `command` replaces the image's ENTRYPOINT and `args` its CMD, as in a pod.
            let strings = |v: &Value| -> Option<Vec<String>> {
                v.as_array().map(|a| {
                    a.iter()
                        .map(|s| local_path(&self.inside(str_of(s), Some(&own)), &mounts))
                        .collect()
                })
            };
            let image = Image::unpack(reference, &self.root.join("images"));
            if let Some(path) = &image.path_env {
                env.push(("PATH".into(), path.clone()));
            }
            let argv = {
                let mut argv = strings(&c["command"]).unwrap_or(image.entrypoint.clone());
                argv.extend(strings(&c["args"]).unwrap_or(image.cmd.clone()));
                argv[0] = image.path(&argv[0]);
                argv
            };
            let log = dir.join(format!("{}.log", str_of(&c["name"])));
            // A container resolves Service names as cluster DNS would: 127.0.0.1 from the pod's
            // hosts file. As root, that file is the pod's own /etc/hosts (a bind mount in a
            // mount namespace of its own, as a kubelet gives a pod its /etc/hosts), read by
            // glibc's resolver. Otherwise nss_wrapper's hosts backend serves it, which is not
            // safe under concurrent first lookups: media-service once aborted with a double
            // free inside it (nwrap_he_unload → hdestroy_r) when two threads resolved at start.
            let hosts = self.hosts_file();
            let mut cmd = if is_root() {
                let mut cmd = Command::new("/usr/bin/unshare");
                cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                    .arg(r#"/usr/bin/mount --bind "$0" /etc/hosts && exec "$@""#)
                    .arg(&hosts);
                if let Some(uid) = uid {
                    cmd.arg("setpriv")
                        .arg(format!("--reuid={uid}"))
                        .arg(format!("--regid={}", gid.unwrap_or(uid)))
                        .arg(match fs_group {
                            Some(g) => format!("--groups={g}"),
                            None => "--clear-groups".into(),
                        })
                        .arg("--inh-caps=-all")
                        .arg("--");
                }
                cmd.args(&argv);
                cmd
            } else {
                let nss =
                    pg_cluster::nss_wrapper().expect("libnss-wrapper (./x setup installs it)");
                env.push(("LD_PRELOAD".into(), nss.display().to_string()));
                env.push(("NSS_WRAPPER_HOSTS".into(), hosts.display().to_string()));
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                cmd
            };
            // A container sees only its own env (plus the image's PATH).
            if !env.iter().any(|(k, _)| k == "PATH") {
                env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
            }
            cmd.env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).expect("log"))
                .stderr(std::fs::File::create(log.with_extension("err")).expect("log"));
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
            if kind == "Job" {
                let status = child.wait().expect("job runs");
                assert!(
                    status.success(),
                    "Job {name} failed ({status}):\n{}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default(),
                    std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
                );
                continue;
            }
            self.children.push((name.to_owned(), child));
            self.wait_ready(name, c, &own, &log);
        }
    }

    /// Materialises the pod's volumes under `dir`; name → local path.
    fn volumes(&self, pod: &Value, dir: &Path, fs_group: Option<u32>) -> HashMap<String, PathBuf> {
        let mut out = HashMap::new();
        for v in pod["volumes"].as_array().into_iter().flatten() {
            let name = str_of(&v["name"]);
            let path = dir.join("volumes").join(name);
            std::fs::create_dir_all(&path).expect("volume dir");
            let mut files: Vec<(String, String, Option<u32>)> = Vec::new();
            let mut default_mode = 0o644;
            if v.get("emptyDir").is_some() {
                // kubelet makes emptyDirs world-writable; fsGroup owns them.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                    .expect("chmod");
            } else if let Some(secret) = v.get("secret") {
                default_mode = mode(&secret["defaultMode"]).unwrap_or(0o644);
                files.extend(self.items("Secret", str_of(&secret["secretName"]), &secret["items"]));
            } else if let Some(cm) = v.get("configMap") {
                default_mode = mode(&cm["defaultMode"]).unwrap_or(0o644);
                files.extend(self.items("ConfigMap", str_of(&cm["name"]), &cm["items"]));
            } else if let Some(projected) = v.get("projected") {
                default_mode = mode(&projected["defaultMode"]).unwrap_or(0o644);
                for source in projected["sources"].as_array().into_iter().flatten() {
                    if let Some(s) = source.get("secret") {
                        files.extend(self.items("Secret", str_of(&s["name"]), &s["items"]));
                    } else if let Some(cm) = source.get("configMap") {
                        files.extend(self.items("ConfigMap", str_of(&cm["name"]), &cm["items"]));
                    } else {
                        panic!("{name}: unsupported projected source {source}");
                    }
                }
            } else {
                panic!("{name}: unsupported volume {v}");
            }
            for (file, content, mode) in files {
                let target = path.join(&file);
                std::fs::write(&target, self.inside(&content, None)).expect("volume file");
                std::fs::set_permissions(
                    &target,
                    std::fs::Permissions::from_mode(mode.unwrap_or(default_mode)),
                )
                .expect("chmod");
                if is_root() {
                    std::os::unix::fs::chown(&target, Some(0), fs_group).expect("chown");
                }
            }
            if is_root() {
                std::os::unix::fs::chown(&path, Some(0), fs_group).expect("chown");
            }
            out.insert(name.to_owned(), path);
        }
        for parent in [dir.to_path_buf(), dir.join("volumes")] {
            std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        out
    }

    /// `(path, content, mode)` of a Secret's or ConfigMap's keys (all, or the listed items).
    fn items(&self, kind: &str, name: &str, items: &Value) -> Vec<(String, String, Option<u32>)> {
        let o = self.workload(kind, name);
        match items.as_array() {
            Some(items) => items
                .iter()
                .map(|i| {
                    (
                        str_of(&i["path"]).to_owned(),
                        self.data(kind, name, str_of(&i["key"])),
                        mode(&i["mode"]),
                    )
                })
                .collect(),
            None => {
                let data = o["stringData"].as_object().or(o["data"].as_object());
                data.into_iter()
                    .flatten()
                    .map(|(k, _)| (k.clone(), self.data(kind, name, k), None))
                    .collect()
            }
        }
    }

    /// The container's env: values, `valueFrom` Secrets/ConfigMaps, made local.
    fn env(
        &self,
        c: &Value,
        own: &HashMap<u16, u16>,
        mounts: &[(String, PathBuf)],
    ) -> Vec<(String, String)> {
        let mut defined: Vec<(String, String)> = Vec::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let raw = if let Some(v) = e["value"].as_str() {
                // `$(NAME)` of a variable before it, as the kubelet expands it.
                expand(v, &defined)
            } else if let Some(r) = e["valueFrom"].get("secretKeyRef") {
                self.data("Secret", str_of(&r["name"]), str_of(&r["key"]))
            } else if let Some(r) = e["valueFrom"].get("configMapKeyRef") {
                self.data("ConfigMap", str_of(&r["name"]), str_of(&r["key"]))
            } else {
                panic!("unsupported env source {e}");
            };
            defined.push((str_of(&e["name"]).to_owned(), raw));
        }
        defined
            .into_iter()
            .map(|(name, raw)| (name, local_path(&self.inside(&raw, Some(own)), mounts)))
            .collect()
    }

    fn wait_ready(&mut self, name: &str, c: &Value, own: &HashMap<u16, u16>, log: &Path) {
        let probe = &c["readinessProbe"]["httpGet"];
        assert!(probe.is_object(), "{name}: no HTTP readiness probe");
        let workload = self
            .objects
            .iter()
            .find(|o| is_workload(o) && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} rendered"))
            .clone();
        let port = container_port(&workload, &probe["port"]).expect("probe port");
        let url = format!("http://127.0.0.1:{}{}", own[&port], str_of(&probe["path"]));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(res) = probe::http_status(&url)
                && res == 200
            {
                // As root, names resolve through the pod's own /etc/hosts, without a
                // preloaded resolver shim (see `start`).
                let (_, child) = self.children.last().expect("started");
                let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id()))
                    .unwrap_or_default();
                assert!(
                    !is_root() || !maps.contains("nss_wrapper"),
                    "{name} runs with nss_wrapper preloaded"
                );
                return;
            }
            let (_, child) = self.children.last_mut().expect("started");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited ({status}) before it was ready:\n{}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default(),
                    std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "{name} not ready at {url}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pg) = self.postgres.take() {
            let _ = pg.destroy();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
