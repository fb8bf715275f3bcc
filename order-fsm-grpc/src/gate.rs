//! The service both intake gates share ([`crate::access::AccessLayer`],
//! [`crate::rate::RateLimitLayer`]): a check that may answer a request itself, before the
//! inner service sees it, or let it through (possibly with extensions added).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

/// A gate's decision about one request.
pub(crate) trait Check<R>: Clone {
    /// `Some(answer)` to refuse `request` with `answer`; `None` to let it through.
    fn check<B>(&self, request: &mut Request<B>) -> Option<Response<R>>;
}

/// `inner` behind the check `C`.
#[derive(Clone, Debug)]
pub struct Gate<S, C> {
    pub(crate) inner: S,
    pub(crate) check: C,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, C, B, R> Service<Request<B>> for Gate<S, C>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    C: Check<R>,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match self.check.check(&mut request) {
            Some(answer) => Box::pin(async move { Ok(answer) }),
            None => Box::pin(self.inner.call(request)),
        }
    }
}
