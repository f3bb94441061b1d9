//! TLS for the OTLP exporters, as the OpenTelemetry environment specification describes it:
//! `https://` endpoints are verified against the system's roots plus the CA in
//! `OTEL_EXPORTER_OTLP_{TRACES_,LOGS_,}CERTIFICATE`, and a client certificate is presented when
//! `..._CLIENT_CERTIFICATE` and `..._CLIENT_KEY` name one (PEM files; the signal's own variable
//! wins over the general one). gRPC goes through tonic's rustls, HTTP through a reqwest client
//! built here so that it trusts the same CA.

use std::path::PathBuf;
use std::time::Duration;

use super::otel_env::{Lookup, Signal};

/// A certificate and its key, PEM.
type PemPair = (Vec<u8>, Vec<u8>);

/// The PEM files the environment names for one signal's exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate that signs the receiver's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    pub client_certificate: Option<PathBuf>,
    /// Client private key for mutual TLS.
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the variables (the signal's own first).
    pub fn from_env(signal: Signal, lookup: Lookup<'_>) -> Self {
        let specific = match signal {
            Signal::Traces => "TRACES_",
            Signal::Logs => "LOGS_",
        };
        let read = |name: &str| {
            lookup(&format!("OTEL_EXPORTER_OTLP_{specific}{name}"))
                .or_else(|| lookup(&format!("OTEL_EXPORTER_OTLP_{name}")))
                .map(PathBuf::from)
        };
        Self {
            ca: read("CERTIFICATE"),
            client_certificate: read("CLIENT_CERTIFICATE"),
            client_key: read("CLIENT_KEY"),
        }
    }

    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client_certificate.is_none() && self.client_key.is_none()
    }

    /// The client certificate and key (PEM bytes), both or neither.
    fn identity(&self) -> Result<Option<PemPair>, String> {
        match (&self.client_certificate, &self.client_key) {
            (Some(cert), Some(key)) => Ok(Some((read(cert)?, read(key)?))),
            (None, None) => Ok(None),
            _ => Err(
                "a client certificate needs both ..._CLIENT_CERTIFICATE and ..._CLIENT_KEY".into(),
            ),
        }
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The gRPC exporter's TLS settings: `None` for a plain-text endpoint with no TLS variables.
pub fn grpc(
    endpoint: &str,
    files: &TlsFiles,
) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
    if !endpoint.starts_with("https://") && files.is_empty() {
        return Ok(None);
    }
    let mut config = tonic::transport::ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &files.ca {
        config = config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = files.identity()? {
        config = config.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    Ok(Some(config))
}

/// The HTTP exporter's client, trusting the system roots and the configured CA.
pub fn http_client(
    files: &TlsFiles,
    timeout: Duration,
) -> Result<reqwest::blocking::Client, String> {
    let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
    if let Some(ca) = &files.ca {
        let certificate = reqwest::Certificate::from_pem(&read(ca)?).map_err(|e| e.to_string())?;
        builder = builder.add_root_certificate(certificate);
    }
    if let Some((mut cert, key)) = files.identity()? {
        cert.extend_from_slice(&key);
        builder = builder.identity(reqwest::Identity::from_pem(&cert).map_err(|e| e.to_string())?);
    }
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signals_own_variables_win() {
        let env = |name: &str| match name {
            "OTEL_EXPORTER_OTLP_CERTIFICATE" => Some("/general.pem".to_string()),
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE" => Some("/traces.pem".to_string()),
            "OTEL_EXPORTER_OTLP_CLIENT_KEY" => Some("/key.pem".to_string()),
            _ => None,
        };
        let traces = TlsFiles::from_env(Signal::Traces, &env);
        assert_eq!(traces.ca, Some(PathBuf::from("/traces.pem")));
        let logs = TlsFiles::from_env(Signal::Logs, &env);
        assert_eq!(logs.ca, Some(PathBuf::from("/general.pem")));
        assert!(
            logs.identity().is_err(),
            "a key without a certificate is an error"
        );
        assert!(grpc("http://x:4317", &TlsFiles::default()).is_ok_and(|c| c.is_none()));
        assert!(grpc("https://x:4317", &TlsFiles::default()).is_ok_and(|c| c.is_some()));
    }
}
