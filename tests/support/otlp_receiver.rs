//! A real OTLP trace receiver for tests and benches: tonic's generated gRPC server, or a
//! tiny_http `/v1/traces` endpoint decoding protobuf, both on 127.0.0.1 with a free port.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;

#[derive(Clone, Copy, Debug)]
pub enum Protocol {
    Grpc,
    Http,
}

#[derive(Default, Clone)]
struct Received(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Log records received over gRPC (the logs service of the same server).
#[derive(Default, Clone)]
pub struct ReceivedLogs(Arc<Mutex<Vec<ExportLogsServiceRequest>>>);

#[tonic::async_trait]
impl LogsService for ReceivedLogs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

/// One received log record: body text, attributes, resource attributes.
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    pub body: String,
    pub severity: String,
    pub attributes: BTreeMap<String, String>,
    /// Keys of the attributes sent as integers.
    pub int_attributes: Vec<String>,
    pub resource: BTreeMap<String, String>,
}

/// A receiver running until dropped; `endpoint` is what an exporter is pointed at.
pub struct Receiver {
    pub endpoint: String,
    received: Received,
    logs: ReceivedLogs,
    _runtime: Option<tokio::runtime::Runtime>,
    _http: Option<Arc<tiny_http::Server>>,
}

/// A server certificate and key (PEM) for a TLS receiver.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Receiver {
    pub fn start(protocol: Protocol) -> Result<Self, Failed> {
        Self::start_with(protocol, None)
    }

    /// A receiver serving TLS with `tls` (endpoint `https://localhost:PORT`).
    pub fn start_tls(protocol: Protocol, tls: &ServerCert) -> Result<Self, Failed> {
        Self::start_with(protocol, Some(tls))
    }

    fn start_with(protocol: Protocol, tls: Option<&ServerCert>) -> Result<Self, Failed> {
        let received = Received::default();
        let scheme = if tls.is_some() { "https" } else { "http" };
        match protocol {
            Protocol::Grpc => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?;
                let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
                let addr = listener.local_addr()?;
                let service = TraceServiceServer::new(received.clone());
                let logs = ReceivedLogs::default();
                let mut server = tonic::transport::Server::builder();
                if let Some(tls) = tls {
                    let identity =
                        tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
                    server = server
                        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
                }
                runtime.spawn(
                    server
                        .add_service(service)
                        .add_service(LogsServiceServer::new(logs.clone()))
                        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
                );
                Ok(Self {
                    endpoint: match tls {
                        Some(_) => format!("{scheme}://localhost:{}", addr.port()),
                        None => format!("http://{addr}"),
                    },
                    received,
                    logs,
                    _runtime: Some(runtime),
                    _http: None,
                })
            }
            Protocol::Http => {
                let server = match tls {
                    Some(tls) => tiny_http::Server::https(
                        "127.0.0.1:0",
                        tiny_http::SslConfig {
                            certificate: tls.cert_pem.clone().into_bytes(),
                            private_key: tls.key_pem.clone().into_bytes(),
                        },
                    ),
                    None => tiny_http::Server::http("127.0.0.1:0"),
                };
                let server = Arc::new(server.map_err(|e| e.to_string())?);
                let addr = server.server_addr().to_ip().ok_or("no ip address")?;
                let (thread_server, sink) = (Arc::clone(&server), received.clone());
                std::thread::spawn(move || {
                    for mut request in thread_server.incoming_requests() {
                        let mut body = Vec::new();
                        let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
                        let ok = request.url() == "/v1/traces";
                        let decoded = ok
                            .then(|| {
                                <ExportTraceServiceRequest as prost::Message>::decode(
                                    body.as_slice(),
                                )
                                .ok()
                            })
                            .flatten();
                        if let (Some(decoded), Ok(mut all)) = (decoded, sink.0.lock()) {
                            all.push(decoded);
                        }
                        let reply = prost::Message::encode_to_vec(&ExportTraceServiceResponse {
                            partial_success: None,
                        });
                        let header =
                            tiny_http::Header::from_bytes("Content-Type", "application/x-protobuf")
                                .unwrap_or_else(|()| unreachable!("static header"));
                        let _ = request.respond(
                            tiny_http::Response::from_data(reply)
                                .with_status_code(if ok { 200 } else { 404 })
                                .with_header(header),
                        );
                    }
                });
                Ok(Self {
                    endpoint: match tls {
                        Some(_) => format!("{scheme}://localhost:{}/v1/traces", addr.port()),
                        None => format!("http://{addr}/v1/traces"),
                    },
                    received,
                    logs: ReceivedLogs::default(),
                    _runtime: None,
                    _http: Some(server),
                })
            }
        }
    }

    /// Log records received (gRPC receivers only).
    pub fn logs(&self) -> Vec<ReceivedLog> {
        let requests = self.logs.0.lock().map(|r| r.clone()).unwrap_or_default();
        let mut logs = Vec::new();
        for request in requests {
            for resource_logs in request.resource_logs {
                let resource = attributes(
                    &resource_logs
                        .resource
                        .map(|r| r.attributes)
                        .unwrap_or_default(),
                );
                for scope in resource_logs.scope_logs {
                    for record in scope.log_records {
                        let body = match record.body.and_then(|b| b.value) {
                            Some(AnyValue::StringValue(s)) => s,
                            other => format!("{other:?}"),
                        };
                        logs.push(ReceivedLog {
                            body,
                            severity: record.severity_text.clone(),
                            attributes: attributes(&record.attributes),
                            int_attributes: record
                                .attributes
                                .iter()
                                .filter(|kv| {
                                    matches!(
                                        kv.value.as_ref().and_then(|v| v.value.as_ref()),
                                        Some(AnyValue::IntValue(_))
                                    )
                                })
                                .map(|kv| kv.key.clone())
                                .collect(),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        logs
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let requests = self
            .received
            .0
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let mut spans = Vec::new();
        for request in requests {
            for resource_spans in request.resource_spans {
                let resource = attributes(
                    &resource_spans
                        .resource
                        .map(|r| r.attributes)
                        .unwrap_or_default(),
                );
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        spans.push(ReceivedSpan {
                            trace_id: span.trace_id.clone(),
                            span_id: span.span_id.clone(),
                            parent: span.parent_span_id.clone(),
                            name: span.name.clone(),
                            kind: span.kind,
                            attributes: attributes(&span.attributes),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        spans
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = &self._http {
            server.unblock();
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent: Vec<u8>,
    pub name: String,
    /// The OTLP span kind (1 internal, 5 consumer, ...).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
}

fn attributes(values: &[KeyValue]) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// Waits (bounded) until the receiver holds `n` spans.
pub fn wait_for_spans(receiver: &Receiver, n: usize) -> Vec<ReceivedSpan> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = receiver.spans();
        if spans.len() >= n || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
