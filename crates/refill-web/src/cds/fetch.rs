//! Fetching what the EHR did not prefetch from its `fhirServer`, with the bearer token of
//! `fhirAuthorization`: the declared prefetch queries, one GET each, over HTTPS (plain HTTP only to a
//! loopback server, for tests and local EHR sandboxes). A minimal HTTP/1.1 client on the TLS stack the
//! tree already has (tokio-rustls with the webpki roots), so no HTTP client crate is added.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest FHIR response read (the service's own request limit is far smaller).
const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// The prefetch filled from `fhirServer`, `None` when the request gives no server and token to ask.
///
/// # Errors
/// Why the fetch failed (the caller answers 412 and logs it).
pub async fn fill_prefetch(request: &Value, timeout: Duration) -> Result<Option<Value>, String> {
    let (Some(server), Some(token)) =
        (request["fhirServer"].as_str(), request["fhirAuthorization"]["access_token"].as_str())
    else {
        return Ok(None);
    };
    let patient = request["context"]["patientId"].as_str().unwrap_or("");
    let patient = patient.strip_prefix("Patient/").unwrap_or(patient);
    if patient.is_empty() || !patient.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err("context.patientId is not a FHIR id".into());
    }
    let mut prefetch = match request["prefetch"].as_object() {
        Some(given) => given.clone(),
        None => Map::new(),
    };
    for (key, template) in super::PREFETCH {
        if prefetch.contains_key(key) {
            continue;
        }
        let query = template.replace("{{context.patientId}}", patient);
        let url = format!("{}/{query}", server.trim_end_matches('/'));
        let value = tokio::time::timeout(timeout, get_json(&url, token))
            .await
            .map_err(|_| format!("{key}: no answer within {} ms", timeout.as_millis()))??;
        prefetch.insert(key.to_string(), value);
    }
    Ok(Some(Value::Object(prefetch)))
}

/// GET `url` as FHIR JSON: the resource, or `null` for 404 (no data).
async fn get_json(url: &str, token: &str) -> Result<Value, String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => return Err("fhirServer must be an https URL".into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| "fhirServer port is not a number")?),
        None => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((host, port)).await.map_err(|e| format!("connecting to the FHIR server: {e}"))?;
    if !tls {
        let loopback = stream.peer_addr().map(|a| a.ip().is_loopback()).unwrap_or(false);
        if !loopback {
            return Err("fhirServer must be https (plain http only to a loopback server)".into());
        }
        return exchange(stream, authority, path, token).await;
    }
    let roots = rustls_roots();
    let config = tokio_rustls::rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| "fhirServer host is not a valid name")?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS with the FHIR server: {e}"))?;
    exchange(stream, authority, path, token).await
}

fn rustls_roots() -> tokio_rustls::rustls::RootCertStore {
    tokio_rustls::rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    authority: &str,
    path: &str,
    token: &str,
) -> Result<Value, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/fhir+json\r\nAuthorization: Bearer \
         {token}\r\nConnection: close\r\nUser-Agent: refill-clinic-cds\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("sending to the FHIR server: {e}"))?;
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(MAX_RESPONSE_BYTES as u64 + 1);
    limited.read_to_end(&mut raw).await.map_err(|e| format!("reading the FHIR server: {e}"))?;
    if raw.len() > MAX_RESPONSE_BYTES {
        return Err("the FHIR server's answer is too large".into());
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the FHIR server's answer is not HTTP")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("the FHIR server's status line is unreadable")?;
    if status == 404 {
        return Ok(Value::Null);
    }
    if status != 200 {
        return Err(format!("the FHIR server answered {status}"));
    }
    let chunked = head.lines().any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    serde_json::from_slice(&body).map_err(|e| format!("the FHIR server's answer is not JSON: {e}"))
}

/// Undo `Transfer-Encoding: chunked`.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or("chunked body: no size line")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "chunked body: bad size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("chunked body: truncated".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n").unwrap(), b"{\"a\":1}");
        assert!(dechunk(b"9\r\nabc").is_err());
    }
}
