//! Request ids on HTTP and gRPC: a proxy's `x-request-id` is kept only when it is
//! plausible (short, of a safe character set); anything else is replaced by a fresh
//! UUID before it is logged or echoed, so that a client cannot forge log lines or
//! make the server repeat kilobytes of its own choosing.

use std::task::{Context, Poll};

use tower::layer::util::{Identity, Stack};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// The header that carries request ids.
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The longest request id kept from outside.
pub const MAX_LEN: usize = 64;

/// Whether a request id from outside may be kept: 1 to [`MAX_LEN`] characters among
/// ASCII letters, digits, `-`, `_` and `.`.
#[must_use]
pub fn plausible(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Removes an implausible `x-request-id` (or a repeated one), so that the next layer
/// generates a fresh id.
#[derive(Debug, Clone, Copy, Default)]
pub struct SanitizeRequestIdLayer;

impl<S> tower::Layer<S> for SanitizeRequestIdLayer {
    type Service = SanitizeRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SanitizeRequestId { inner }
    }
}

/// See [`SanitizeRequestIdLayer`].
#[derive(Debug, Clone)]
pub struct SanitizeRequestId<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for SanitizeRequestId<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let values = request.headers().get_all(REQUEST_ID);
        let mut iter = values.iter();
        let keep = match (iter.next(), iter.next()) {
            (Some(one), None) => plausible(one.as_bytes()),
            _ => false,
        };
        if !keep {
            request.headers_mut().remove(REQUEST_ID);
        }
        self.inner.call(request)
    }
}

/// The three request-id layers stacked, outermost first.
pub type RequestIdLayers = Stack<
    PropagateRequestIdLayer,
    Stack<SetRequestIdLayer<MakeRequestUuid>, Stack<SanitizeRequestIdLayer, Identity>>,
>;

/// The three layers, outermost first: sanitise, set (a UUID when absent), echo back.
#[must_use]
pub fn layers() -> tower::ServiceBuilder<RequestIdLayers> {
    tower::ServiceBuilder::new()
        .layer(SanitizeRequestIdLayer)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
}

#[cfg(test)]
mod tests {
    use super::plausible;

    #[test]
    fn only_short_safe_ids_are_plausible() {
        assert!(plausible(b"3f2a-9c.b_1"));
        assert!(plausible(&[b'a'; 64]));
        for bad in [
            &b""[..],
            &[b'a'; 65],
            b"id with space",
            b"id\tx",
            b"line\x7f",
            "é".as_bytes(),
            b"a;b",
            b"<script>",
        ] {
            assert!(!plausible(bad), "{bad:?}");
        }
    }
}
