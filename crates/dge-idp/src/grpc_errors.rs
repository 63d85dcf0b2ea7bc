//! Malformed requests get `INVALID_ARGUMENT`, not `INTERNAL`.
//!
//! tonic answers a request body that does not decode as the method's protobuf message
//! with `INTERNAL` ("failed to decode Protobuf message: …"), which reads as a fault of
//! the server and pages whoever watches its error rate. The caller sent it: this layer
//! turns that answer into `INVALID_ARGUMENT`, keeping tonic's message (it names the
//! field). Such an answer is sent at once, its status in the response headers
//! ("trailers-only"), which is where this layer looks.
//!
//! Missing: a message that fails to decode in the middle of a client stream reports its
//! status in the trailers and stays `INTERNAL`; every method of ours is unary.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;

/// The layer: see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeErrorsLayer;

impl<S> tower::Layer<S> for DecodeErrorsLayer {
    type Service = DecodeErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DecodeErrors { inner }
    }
}

/// See [`DecodeErrorsLayer`].
#[derive(Debug, Clone)]
pub struct DecodeErrors<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// `INTERNAL` answers that mean the request did not decode: prost's message, and a body
/// that ends inside a message. `grpc-message` is percent-encoded.
fn is_decode_failure(message: &[u8]) -> bool {
    const DECODE: &[&[u8]] = &[
        b"failed to decode Protobuf message",
        b"failed%20to%20decode%20Protobuf%20message",
        b"Unexpected EOF decoding stream",
        b"Unexpected%20EOF%20decoding%20stream",
    ];
    DECODE.iter().any(|prefix| message.starts_with(prefix))
}

/// Rewrites the status of a decode failure in `headers`.
fn remap(headers: &mut http::HeaderMap) {
    let internal = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"13");
    let decode = headers
        .get("grpc-message")
        .is_some_and(|v| is_decode_failure(v.as_bytes()));
    if internal && decode {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for DecodeErrors<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            remap(response.headers_mut());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &'static str, message: &'static str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static(status));
        h.insert("grpc-message", HeaderValue::from_static(message));
        h
    }

    #[test]
    fn only_internal_decode_failures_become_invalid_argument() {
        let mut h = headers(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20invalid%20wire%20type",
        );
        remap(&mut h);
        assert_eq!(h["grpc-status"], "3");
        let mut h = headers("13", "database%20down");
        remap(&mut h);
        assert_eq!(h["grpc-status"], "13");
        let mut h = headers("5", "failed%20to%20decode%20Protobuf%20message");
        remap(&mut h);
        assert_eq!(h["grpc-status"], "5");
    }
}
