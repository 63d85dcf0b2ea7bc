//! Request ids on HTTP and gRPC: a proxy's `x-request-id` is kept only when it is
//! plausible (short, of a safe character set); anything else is replaced by a fresh
//! UUID before it is logged or echoed, so that a client cannot forge log lines or
//! make the server repeat kilobytes of its own choosing.

use std::task::{Context, Poll};

use tower::layer::util::{Identity, Stack};
use tower_http::request_id::{
    MakeRequestId, MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

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
        if keep {
            if let Some(id) = request.headers_mut().get_mut(REQUEST_ID) {
                id.set_sensitive(true);
            }
        } else {
            request.headers_mut().remove(REQUEST_ID);
        }
        self.inner.call(request)
    }
}

/// Fresh ids: UUIDs, as values HTTP/2 never indexes.
///
/// An id, unique to each answer, is echoed on every response. Indexed (HTTP/2's
/// default for a header it does not know), each one was added to the connection's
/// HPACK table, evicting the entries that do repeat, after a search of that table's
/// other ids value by value: 8% of the server's processor time on gRPC `Check`
/// (perf, 2026-12-05). Marked sensitive, it is sent as a never-indexed literal; the
/// mark changes nothing else here (the id is logged through `to_str`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeUnindexedUuid;

impl MakeRequestId for MakeUnindexedUuid {
    fn make_request_id<B>(&mut self, request: &http::Request<B>) -> Option<RequestId> {
        let mut id = MakeRequestUuid
            .make_request_id(request)?
            .into_header_value();
        id.set_sensitive(true);
        Some(RequestId::new(id))
    }
}

/// The three request-id layers stacked, outermost first.
pub type RequestIdLayers = Stack<
    PropagateRequestIdLayer,
    Stack<SetRequestIdLayer<MakeUnindexedUuid>, Stack<SanitizeRequestIdLayer, Identity>>,
>;

/// The three layers, outermost first: sanitise, set (a UUID when absent), echo back.
#[must_use]
pub fn layers() -> tower::ServiceBuilder<RequestIdLayers> {
    tower::ServiceBuilder::new()
        .layer(SanitizeRequestIdLayer)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeUnindexedUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{ServiceBuilder, ServiceExt as _};

    use super::{REQUEST_ID, layers, plausible};

    /// The id echoed on the response, for a request carrying `incoming` ids.
    async fn echoed(incoming: &[&str]) -> http::HeaderValue {
        let service =
            ServiceBuilder::new()
                .layer(layers())
                .service_fn(|_: http::Request<()>| async {
                    Ok::<_, Infallible>(http::Response::new(()))
                });
        let mut request = http::Request::new(());
        for id in incoming {
            request
                .headers_mut()
                .append(REQUEST_ID, http::HeaderValue::from_str(id).unwrap());
        }
        let response = service.oneshot(request).await.unwrap();
        response.headers().get(REQUEST_ID).unwrap().clone()
    }

    #[tokio::test]
    async fn ids_are_echoed_as_values_http2_never_indexes() {
        let kept = echoed(&["proxy-42"]).await;
        assert_eq!(kept, "proxy-42");
        assert!(kept.is_sensitive());
        for replaced in [&[][..], &["a b"], &["one", "two"]] {
            let fresh = echoed(replaced).await;
            let text = fresh.to_str().unwrap();
            assert_eq!((text.len(), text.matches('-').count()), (36, 4), "{text}");
            assert!(fresh.is_sensitive());
        }
    }

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
