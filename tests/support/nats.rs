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

impl Nats {
    /// Starts a server, or says why it cannot (`None`: the caller skips).
    pub fn start(extra: &[&str]) -> Result<Option<Self>, Failed> {
        let Some(binary) = nats_binary() else {
            println!("skipped: no nats-server binary (apt install nats-server; .ci/run does)");
            return Ok(None);
        };
        let port = free_port()?;
        let mut nats = Self {
            binary,
            port,
            store: tempfile::tempdir()?,
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        nats.spawn()?;
        Ok(Some(nats))
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

fn nats_binary() -> Option<PathBuf> {
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
