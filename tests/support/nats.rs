//! A real `nats-server -js` for the cross-host tests and bench: a private port and store
//! directory, restartable in place (the Debian package `nats-server`; `.ci/run` installs it).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;

use super::checks::check;

/// A `nats-server -js` on a private port and store directory, restartable in place.
pub struct Nats {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

/// Why a test that needs a server cannot run.
pub const NO_BINARY: &str = "no nats-server binary (apt install nats-server; .ci/run does)";

impl Nats {
    /// Starts a server (a test that needs one is reported ignored when there is no binary).
    pub fn start(extra: &[&str]) -> Result<Self, Failed> {
        let binary = nats_binary().ok_or(NO_BINARY)?;
        let port = free_port()?;
        let mut nats = Self {
            binary,
            port,
            store: tempfile::tempdir()?,
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        nats.spawn()?;
        Ok(nats)
    }

    fn spawn(&mut self) -> Result<(), Failed> {
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            check(Instant::now() < deadline, || {
                "nats-server did not listen within 20 s".into()
            })?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// kill -9 and start again on the same port and store.
    pub fn restart(&mut self, down_for: Duration) -> Result<(), Failed> {
        self.kill();
        std::thread::sleep(down_for);
        self.spawn()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn nats_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

pub fn free_port() -> Result<u16, Failed> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A 3-node JetStream cluster on loopback (routes between the nodes), each node with its own
/// client, route and monitoring ports and store; nodes can be killed and restarted in place.
pub struct Cluster {
    binary: PathBuf,
    nodes: Vec<Node>,
}

struct Node {
    name: String,
    port: u16,
    route_port: u16,
    monitor_port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl Cluster {
    /// Starts three nodes and waits until they answer and JetStream has a meta leader.
    pub fn start() -> Result<Self, Failed> {
        let binary = nats_binary().ok_or(NO_BINARY)?;
        let mut nodes = Vec::new();
        for i in 1..=3 {
            nodes.push(Node {
                name: format!("n{i}"),
                port: free_port()?,
                route_port: free_port()?,
                monitor_port: free_port()?,
                store: tempfile::tempdir()?,
                child: None,
            });
        }
        let mut cluster = Self { binary, nodes };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        cluster.wait_for_meta_leader()?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), Failed> {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.route_port))
            .collect();
        let node = &self.nodes[i];
        let child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-n",
                &node.name,
                "--cluster_name",
                "sk",
            ])
            .args([
                "-p",
                &node.port.to_string(),
                "-m",
                &node.monitor_port.to_string(),
            ])
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", node.route_port))
            .arg("--routes")
            .arg(routes.join(","))
            .arg("-sd")
            .arg(node.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.nodes[i].child = Some(child);
        let port = self.nodes[i].port;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            check(Instant::now() < deadline, || {
                "a cluster node did not listen within 20 s".into()
            })?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Every node's client URL, comma separated (the seed list a client is given).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A node's `/jsz` monitoring answer (accounts and streams), as JSON.
    fn jsz(&self, i: usize) -> Option<serde_json::Value> {
        jsz_at(self.nodes[i].monitor_port)
    }

    fn wait_for_meta_leader(&self) -> Result<(), Failed> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = (0..3).find_map(|i| {
                let jsz = self.jsz(i)?;
                jsz["meta_cluster"]["leader"].as_str().map(str::to_string)
            });
            if leader.is_some_and(|l| !l.is_empty()) {
                return Ok(());
            }
            check(Instant::now() < deadline, || {
                "the cluster elected no JetStream meta leader within 30 s".into()
            })?;
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The stream `name`'s leader node (index) and its replica count, as a live node reports
    /// them.
    pub fn stream_leader(&self, name: &str) -> Option<(usize, u64)> {
        (0..3)
            .filter(|i| self.nodes[*i].child.is_some())
            .find_map(|i| {
                let jsz = self.jsz(i)?;
                let accounts = jsz["account_details"].as_array()?;
                accounts.iter().find_map(|account| {
                    let stream = account["stream_detail"]
                        .as_array()?
                        .iter()
                        .find(|s| s["name"] == name)?;
                    let leader = stream["cluster"]["leader"].as_str()?;
                    let replicas = stream["config"]["num_replicas"].as_u64().unwrap_or(0);
                    let index = self.nodes.iter().position(|n| n.name == leader)?;
                    Some((index, replicas))
                })
            })
    }

    /// Some live node knows stream `name` (with or without a leader).
    pub fn has_stream(&self, name: &str) -> bool {
        (0..3)
            .filter(|i| self.nodes[*i].child.is_some())
            .filter_map(|i| self.jsz(i))
            .any(|jsz| {
                jsz["account_details"].as_array().is_some_and(|accounts| {
                    accounts.iter().any(|account| {
                        account["stream_detail"]
                            .as_array()
                            .is_some_and(|streams| streams.iter().any(|s| s["name"] == name))
                    })
                })
            })
    }

    /// kill -9 of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// `/jsz` (accounts, streams, configs) of the server whose monitoring port is `port`.
fn jsz_at(port: u16) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = "GET /jsz?accounts=true&streams=true&config=true HTTP/1.0\r\n\r\n";
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.")
        .then_some(())
        .filter(|()| head.split_whitespace().nth(1) == Some("200"))?;
    serde_json::from_str(body).ok()
}

/// The names of the streams the server whose monitoring port is `port` holds (empty when it
/// does not answer).
pub fn stream_names(port: u16) -> Vec<String> {
    let Some(jsz) = jsz_at(port) else {
        return Vec::new();
    };
    let accounts = jsz["account_details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    accounts
        .iter()
        .filter_map(|account| account["stream_detail"].as_array())
        .flatten()
        .filter_map(|stream| stream["name"].as_str().map(str::to_string))
        .collect()
}
