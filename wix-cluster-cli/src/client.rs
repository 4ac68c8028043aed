//! Talking to a management app: HTTP/1.1 requests with hyper's client on a
//! current-thread runtime, JSON answers, the event stream's Server-Sent Events, and
//! what went wrong in the terms of the exit codes.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::failure::Failure;

/// How long a request may take (connect, send, answer) before the cluster counts as
/// unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One management app.
pub(crate) struct Client {
    runtime: tokio::runtime::Runtime,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its mount point: `""` or `/admin`.
    pub(crate) prefix: String,
    token: Option<String>,
}

impl Client {
    /// A client of the app at `addr` under `prefix`, acting with `token`.
    pub(crate) fn new(
        addr: SocketAddr,
        prefix: String,
        token: Option<String>,
    ) -> Result<Client, Failure> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Failed(format!("cannot start the runtime: {e}")))?;
        Ok(Client {
            runtime,
            addr,
            prefix,
            token,
        })
    }

    /// `GET path` as JSON.
    pub(crate) fn get(&self, path: &str) -> Result<Value, Failure> {
        self.json("GET", path, false)
    }

    /// `POST path` with the admin token, as JSON.
    pub(crate) fn post(&self, path: &str) -> Result<Value, Failure> {
        if self.token.is_none() {
            return Err(Failure::Unauthorised(
                "this action needs the admin token: set WIX_CLUSTER_ADMIN_TOKEN or pass \
                 --token-file"
                    .into(),
            ));
        }
        self.json("POST", path, true)
    }

    fn json(&self, method: &str, path: &str, authorised: bool) -> Result<Value, Failure> {
        let (status, body) = self.runtime.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, self.request(method, path, authorised))
                .await
                .map_err(|_| self.unreachable("no answer within 10s"))?
        })?;
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            Failure::Failed(format!(
                "{method} {path}: the answer ({status}) is not JSON: {e}"
            ))
        })?;
        match status {
            200..=299 => Ok(json),
            // 503 is an answer too: health pages, stopping.
            503 if method == "GET" => Ok(json),
            401 | 403 => Err(Failure::Unauthorised(message(&json, status))),
            _ => Err(Failure::Failed(format!(
                "{method} {path}: {}",
                message(&json, status)
            ))),
        }
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        authorised: bool,
    ) -> Result<(u16, Bytes), Failure> {
        let mut sender = self.connect().await?;
        let request = self.build(method, path, authorised, None)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.unreachable(&e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(&e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, Failure> {
        let stream =
            tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(self.addr))
                .await
                .map_err(|_| self.unreachable("connect timed out"))?
                .map_err(|e| self.unreachable(&e.to_string()))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(&e.to_string()))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    fn build(
        &self,
        method: &str,
        path: &str,
        authorised: bool,
        last_id: Option<u64>,
    ) -> Result<http::Request<Empty<Bytes>>, Failure> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(http::header::HOST, self.addr.to_string());
        if authorised {
            if let Some(token) = &self.token {
                request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        if let Some(id) = last_id {
            request = request.header("last-event-id", id.to_string());
        }
        request
            .body(Empty::new())
            .map_err(|e| Failure::Failed(format!("a bad request: {e}")))
    }

    fn unreachable(&self, why: &str) -> Failure {
        Failure::Unreachable(format!(
            "cannot reach the management app at {}: {why}",
            self.addr
        ))
    }

    /// Reads `/events/stream` from after `last_id`, calling `each` with every entry
    /// (its JSON) until the stream ends (`Ok`: an upgrade's handover ends it) or
    /// cannot be read.
    pub(crate) fn stream_events(
        &self,
        last_id: Option<u64>,
        each: &mut dyn FnMut(Value),
    ) -> Result<(), Failure> {
        self.runtime.block_on(async {
            let mut sender = self.connect().await?;
            let request = self.build("GET", "/events/stream", false, last_id)?;
            let response = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(request))
                .await
                .map_err(|_| self.unreachable("no answer within 10s"))?
                .map_err(|e| self.unreachable(&e.to_string()))?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(Failure::Failed(format!(
                    "GET /events/stream answered {status}"
                )));
            }
            let mut body = response.into_body();
            let mut pending = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Ok(());
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                while let Some(end) = find_event_end(&pending) {
                    let event: Vec<u8> = pending.drain(..end).collect();
                    if let Some(json) = sse_data(&event) {
                        each(json);
                    }
                }
            }
            Ok(())
        })
    }
}

/// The end of the first whole event in `buffer` (after its blank line), if any.
fn find_event_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|at| at + 2)
}

/// The JSON of an event's `data:` lines; `None` for a comment, a `gap` or anything
/// else.
fn sse_data(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    if text.lines().any(|line| line.starts_with("event:")) {
        return None;
    }
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

/// The `error` of a JSON answer, else its status.
fn message(json: &Value, status: u16) -> String {
    json["error"]
        .as_str()
        .map_or_else(|| format!("answered {status}"), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_are_split_and_read() {
        let raw = b": keep-alive\n\nid: 7\ndata: {\"seq\": 7}\n\nevent: gap\ndata: {}\n\nid: 8";
        let end = find_event_end(raw).unwrap();
        assert_eq!(sse_data(&raw[..end]), None);
        let rest = &raw[end..];
        let end = find_event_end(rest).unwrap();
        assert_eq!(sse_data(&rest[..end]).unwrap()["seq"], 7);
        let rest = &rest[end..];
        let end = find_event_end(rest).unwrap();
        assert_eq!(sse_data(&rest[..end]), None);
        assert_eq!(find_event_end(&rest[end..]), None);
    }
}
