//! A lean HTTP/1.1 client for the scenarios of one request: each worker keeps its
//! own connection, and the request (path, headers, body) is prepared once.
//!
//! The load generator shares the two cores with the server it measures. reqwest
//! parses the URL, builds the headers and the form, and checks a connection out of
//! a shared pool for every request: CPU that the server, not the reference (one
//! Node.js thread, one core whatever else runs), goes without. Tools built for load
//! (wrk, h2load) prepare their requests once for the same reason. The login and
//! sign-up journeys keep reqwest: they need cookies and follow pages.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// One request, sent again and again, each worker on its own kept-alive connection.
pub(crate) struct Prepared {
    addr: SocketAddr,
    method: Method,
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// One connection slot per worker; a slot is reopened after an error.
    connections: Vec<Mutex<Option<SendRequest<Full<Bytes>>>>>,
}

impl Prepared {
    /// `GET url`.
    ///
    /// # Errors
    /// When `url` is not `http://<ip>:<port>/…`.
    pub(crate) fn get(url: &str, workers: usize) -> anyhow::Result<Self> {
        Self::new(Method::GET, url, Vec::new(), Bytes::new(), workers)
    }

    /// `POST url` with a form body and HTTP Basic authentication.
    ///
    /// # Errors
    /// When `url` is not `http://<ip>:<port>/…`.
    pub(crate) fn post_form(
        url: &str,
        basic: (&str, &str),
        form: &[(&str, &str)],
        workers: usize,
    ) -> anyhow::Result<Self> {
        use base64::Engine as _;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", basic.0, basic.1));
        let headers = vec![
            (
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Basic {credentials}"))?,
            ),
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            ),
        ];
        let body = serde_urlencoded::to_string(form)?;
        Self::new(Method::POST, url, headers, Bytes::from(body), workers)
    }

    fn new(
        method: Method,
        url: &str,
        extra: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
        workers: usize,
    ) -> anyhow::Result<Self> {
        let uri: Uri = url.parse()?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "{url}: only http:// on loopback is loaded"
        );
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("{url}: no host"))?;
        let addr: SocketAddr = authority
            .as_str()
            .parse()
            .map_err(|e| anyhow::anyhow!("{url}: the host must be an IP address and port: {e}"))?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .parse()?;
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        for (name, value) in extra {
            headers.insert(name, value);
        }
        Ok(Self {
            addr,
            method,
            path,
            headers,
            body,
            connections: (0..workers.max(1)).map(|_| Mutex::new(None)).collect(),
        })
    }

    /// Sends the request on `worker`'s connection (opened on first use, and again
    /// after an error) and reads the whole answer.
    ///
    /// # Errors
    /// Connection or protocol errors, as text.
    pub(crate) async fn send(&self, worker: usize) -> Result<(StatusCode, Bytes), String> {
        let mut slot = self.connections[worker % self.connections.len()]
            .lock()
            .await;
        let sender = match slot.as_mut() {
            Some(sender) if !sender.is_closed() => sender,
            _ => slot.insert(self.connect().await?),
        };
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        let answer = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        answer.map_err(|e| {
            *slot = None;
            e.to_string()
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_prepared_once_with_its_host_and_credentials() {
        let p = Prepared::post_form(
            "http://127.0.0.1:8080/token",
            ("svc", "s3cret"),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "authz:check"),
            ],
            4,
        )
        .unwrap();
        assert_eq!(p.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.path, "/token");
        assert_eq!(p.headers[HOST], "127.0.0.1:8080");
        assert_eq!(
            p.headers[http::header::AUTHORIZATION],
            "Basic c3ZjOnMzY3JldA=="
        );
        assert_eq!(
            &p.body[..],
            b"grant_type=client_credentials&scope=authz%3Acheck"
        );
        assert_eq!(p.connections.len(), 4);
        let g = Prepared::get("http://127.0.0.1:9/.well-known/openid-configuration", 1).unwrap();
        assert_eq!(g.path, "/.well-known/openid-configuration");
        assert!(Prepared::get("https://127.0.0.1:9/", 1).is_err());
        assert!(Prepared::get("http://localhost:9/", 1).is_err());
    }

    #[tokio::test]
    async fn it_keeps_one_connection_per_worker_and_reopens_a_closed_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers two requests per connection, then closes it.
        let accepted = tokio::spawn(async move {
            let mut connections = 0;
            while connections < 2 {
                let (mut socket, _) = listener.accept().await.unwrap();
                connections += 1;
                for _ in 0..2 {
                    let mut buf = [0u8; 1024];
                    let n = socket.read(&mut buf).await.unwrap();
                    assert!(buf[..n].starts_with(b"GET /x HTTP/1.1\r\n"));
                    socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                }
            }
            connections
        });
        let p = Prepared::get(&format!("http://{addr}/x"), 1).unwrap();
        for _ in 0..2 {
            assert_eq!(
                p.send(0).await.unwrap(),
                (StatusCode::OK, Bytes::from("ok"))
            );
        }
        // The server closed the first connection: the next request opens another,
        // after at most one error.
        let third = p.send(0).await;
        let third = match third {
            Ok(answer) => answer,
            Err(_) => p.send(0).await.unwrap(),
        };
        assert_eq!(third, (StatusCode::OK, Bytes::from("ok")));
        p.send(0).await.unwrap();
        assert_eq!(accepted.await.unwrap(), 2);
    }
}
